"""Benchmarks: skipped by the default run (pyproject's addopts has --benchmark-skip and every test
here uses the ``benchmark`` fixture; expensive setup happens inside the tests, never at collection).

Run them with ``python -m pytest tests/benchmarks --benchmark-only``; the results are printed as
markdown tables at the end (and written to $NASHLAB_BENCH_MD if set).
"""
import os

from .common import TABLES, all_tables, load_note


def pytest_terminal_summary(terminalreporter):
    if not TABLES:
        return
    text = all_tables() + "\n\n" + load_note() + "."
    terminalreporter.write_sep("=", "nashlab benchmark tables (markdown)")
    terminalreporter.write_line(text)
    path = os.environ.get("NASHLAB_BENCH_MD")
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
