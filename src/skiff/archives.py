"""Unpacking tar archives safely on every Python 3.11 the platform runs on.

Python 3.11.4 added extraction filters; Debian 12's Python (the images') is 3.11.2.
Where the filter is missing, :func:`extract` does what the ``data`` filter does for
the cases that matter: members must be plain files or folders inside ``dest``.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

_HAS_FILTERS = hasattr(tarfile, "data_filter")


def extract(tar: tarfile.TarFile, dest: Path, *, trusted: bool = False) -> None:
    """Extract every member under ``dest``, refusing links, devices and paths out of it.

    ``trusted``: an archive checked against its publisher's digest (a component from
    Maven Central), whose links are kept as the ``tar`` filter keeps them.
    """
    if _HAS_FILTERS:
        tar.extractall(dest, filter="tar" if trusted else "data")
        return
    if trusted:
        tar.extractall(dest)  # checked against the publisher's digest
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
            raise tarfile.TarError(f"refused archive member {member.name!r}")
    tar.extractall(root)  # every member was checked above
