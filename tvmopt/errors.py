"""Errors a user can cause. The CLI prints their message on one line and exits 2."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import traceback


class UserError(Exception):
    """A mistake in what the user asked for; the message names the input and the fix."""


class TargetError(UserError):
    """An unknown or malformed target."""


class WorkloadError(UserError):
    """An unknown or malformed workload key."""


class RecordsError(UserError):
    """A records directory or file that cannot be used."""


class ConfigError(UserError):
    """A configuration that does not belong to its schedule space."""


class CudaError(UserError):
    """A CUDA candidate or batch that cannot be used (no CUDA space, bad config, failed nvcc, bad batch)."""


class ModelError(UserError):
    """The model file is missing, unreadable, inconsistent or cannot be compiled."""


def debugging() -> bool:
    """``TVMOPT_DEBUG=1``: let unexpected exceptions through with their traceback."""
    return os.environ.get("TVMOPT_DEBUG", "") not in ("", "0")


def one_line(exc: BaseException) -> str:
    """One informative line out of a (often multi-line, TVM-decorated) exception message."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("File ", "|", "-->", "^", "note:", "Traceback"))
             and not re.match(r"^\d+ \|", ln)]
    errorish = [ln for ln in lines if "rror" in ln]
    text = (errorish or lines or ["unknown error"])[0 if errorish else -1]
    name = type(exc).__name__
    return (text if text.startswith(name) else f"{name}: {text}")[:300]


@contextlib.contextmanager
def model_stage(what: str):
    """Turn any failure inside ``what`` (importing, lowering or compiling a model) into one
    ModelError line. A model that makes TVM's importer or our pass fail is a model we cannot
    compile, whatever the Python exception; ``TVMOPT_DEBUG=1`` shows the original traceback.
    TVM's known C++ log noise inside is dropped (:func:`tvmopt.native.quiet_native_logs`)."""
    from .native import quiet_native_logs

    error = None
    with quiet_native_logs():          # TVM's C++ noise while importing, lowering, compiling
        try:
            yield
        except UserError as exc:
            traceback.clear_frames(exc.__traceback__)
            error = exc.with_traceback(None)
            error.__context__ = None
        except AssertionError:
            raise              # a broken invariant of ours or TVM's is a bug, not the model's fault: exit 1
        except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
            if debugging():
                raise
            traceback.clear_frames(exc.__traceback__)
            error = ModelError(f"{what} failed ({one_line(exc)}); set TVMOPT_DEBUG=1 for the traceback")
        if error is not None:
            # with the failing frames cleared, the failed importer's reference cycles (importer
            # <-> block builder) are collectable: free them while their C++ destructors' log
            # lines are still captured
            gc.collect()
    if error is not None:
        raise error
