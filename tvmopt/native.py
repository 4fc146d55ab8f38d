"""Quieting TVM's C++ log lines that are not addressed to the user.

TVM's C++ side writes ``LOG(WARNING)`` lines straight to file descriptor 2: one per constant
scope when a Relax executable is saved or loaded ("Scope Saving:", "Scope Loaded:"), one per
``take`` op the ONNX importer creates ("Fast mode segfaults..."), one when an import that
failed drops its half-built graph ("BlockBuilder destroyed with remaining blocks"). A model with a few layers
prints dozens of them around every ``build`` and ``run``. They say nothing a user can act on,
so the calls that emit them run with descriptor 2 redirected to a temporary file, and lines
other than those known ones are written back to stderr afterwards: real warnings still show.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

#: C++ log lines that are dropped (anything else captured is passed on)
NOISE = re.compile(r"Warning: (Scope Saving:|Scope Loaded:|Fast mode segfaults when there are out-of-bounds"
                   r"|BlockBuilder destroyed with remaining blocks)")


@contextlib.contextmanager
def quiet_native_logs():
    """Run the body with fd 2 captured; pass on every captured line but the known noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):          # no real stderr (embedded interpreters): do nothing
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines() if line.strip() and not NOISE.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
