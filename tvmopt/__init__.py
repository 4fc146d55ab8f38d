"""tvmopt: compile and autotune compressed neural networks with Apache TVM."""

import os as _os

__version__ = "0.1.0"


def _default_threads() -> None:
    """TVM's CPU thread pool assumes x86 cores are hyper-threaded and starts half as many
    threads as the process may use: on a 2-core machine, one. Kernels are tuned with one thread
    per core (the target's ``-num-cores``), so run them that way too. The pool reads
    ``TVM_NUM_THREADS`` when it first starts; a value the user set is kept."""
    from .target import host_cores

    _os.environ.setdefault("TVM_NUM_THREADS", str(host_cores()))


_default_threads()


def load(path):
    """Load a module written by ``tvmopt build``: returns a callable taking numpy arrays."""
    from tvmopt.build.deploy import load as _load

    return _load(path)
