"""Example models written by ``python -m runtimes.examples OUT_DIR`` (no downloads)."""
