"""Downloads checked against their registry's own checksum: Go's checksum database, npm's integrity."""

from __future__ import annotations

import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.native import installing, system

pytestmark = pytest.mark.unit


def test_a_module_zip_hashes_as_go_records_it(tmp_path: Path) -> None:
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("example.com/m@v1.0.0/go.mod", "module example.com/m\n")
        zf.writestr("example.com/m@v1.0.0/a.go", "package m\n")
    # What golang.org/x/mod/sumdb/dirhash.HashZip(..., dirhash.Hash1) gives for this zip.
    assert system.go_zip_hash(archive) == "h1:SXy42eQ/QbleX7vtuAPFnaM3tNuQnfeo7rulG/p7iOw="


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server for files under tmp_path/www."""
    (tmp_path / "www").mkdir()
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_download_that_fails_its_check_is_not_kept(tmp_path: Path, served: str) -> None:
    (tmp_path / "www" / "tool.tgz").write_bytes(b"not what was published")
    dest = tmp_path / "cache" / "tool.tgz"
    with pytest.raises(installing.InstallError, match=r"tool\.tgz: sha512 abc, the registry says def"):
        installing.download("tool", f"{served}/tool.tgz", dest,
                            verify=lambda f: "sha512 abc, the registry says def")
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_a_download_that_passes_its_check_is_kept(tmp_path: Path, served: str) -> None:
    (tmp_path / "www" / "tool.tgz").write_bytes(b"published")
    seen: list[bytes] = []
    dest = installing.download("tool", f"{served}/tool.tgz", tmp_path / "cache" / "tool.tgz",
                               verify=lambda f: seen.append(f.read_bytes()))
    assert dest.read_bytes() == b"published" and seen == [b"published"]
