"""The host name an Airflow worker records on the task instances it runs (``[core] hostname_callable``).

Natively both Celery workers (the default queue's and the gpu queue's) share one
machine, so the machine's name alone would not say which ran a task. Each worker
gets ``SKIFF_WORKER_NAME`` and records ``<worker>@<fqdn>``, the same form as its
Celery node name; the API server's log fetch still reaches the machine (a URL's
``name@`` is user info). In Compose each worker is a container of its own: the
same program name, a host name of its own.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    fqdn = socket.getfqdn()
    worker = os.environ.get("SKIFF_WORKER_NAME")
    return f"{worker}@{fqdn}" if worker else fqdn
