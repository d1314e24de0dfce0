"""Tests of the Compose stack itself: collected only against Compose (make test-compose)."""

from skiff import compose

# The native suite has no Compose stack to test: leave these out rather than skip them.
collect_ignore_glob = [] if compose.running_in_compose_mode() else ["test_*.py"]
