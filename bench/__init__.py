"""Benchmarks for txlightstreamer (run with ``python -m bench``; see bench/README.md)."""
