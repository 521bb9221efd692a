"""Helpers for the tests, the benchmarks and a developer's workstation; not part of the installed package (run them
from the repository root, e.g. `python -m devtools.tracking_server`)."""
