"""A one-line progress bar for long work (the CLI's commands, quantize_model)."""
from __future__ import annotations

import sys


class Progress:
    """A one-line progress bar on a terminal's stderr; silent otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, done: int, total: int, label: str = ""):
        if not self.enabled:
            return
        width = 30
        fill = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} {label[:40]:<40}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def as_callback(progress):
    """A ``progress`` argument (quantize_model's): True for the bar
    (shown only on a terminal), False or None for nothing, or a callable
    ``(done, total, label)``."""
    if callable(progress):
        return progress
    return Progress(bool(progress))
