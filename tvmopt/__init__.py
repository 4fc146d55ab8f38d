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


class _TvmWithoutTorch:
    """Import hook, one shot: TVM imports torch when it loads (its FFI package and
    ``tvm.relax.base_py_module``, to convert torch tensors, dtypes and streams, which tvmopt
    never hands it). That is 3 of the 4.2 s an ``import tvm`` takes, paid by every ``tvmopt``
    command and every measuring worker. Where torch is not imported yet, the ``tvm`` package
    loads with torch hidden (each of those ``import torch`` raises ImportError, which TVM
    handles); torch is unhidden right after, so ``import torch`` later works as usual.
    ``TVMOPT_TVM_WITH_TORCH=1`` turns this off."""

    def find_spec(self, name, path=None, target=None):
        import importlib.util
        import sys

        if name != "tvm":
            return None
        sys.meta_path.remove(self)
        if "torch" in sys.modules or _os.environ.get("TVMOPT_TVM_WITH_TORCH", "") not in ("", "0"):
            return None
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            sys.modules["torch"] = None          # type: ignore[assignment]
            try:
                load(module)
            finally:
                if "torch" in sys.modules and sys.modules["torch"] is None:
                    del sys.modules["torch"]

        spec.loader.exec_module = exec_module
        return spec


def _install_tvm_hook() -> None:
    import sys

    if "tvm" not in sys.modules and not any(isinstance(f, _TvmWithoutTorch) for f in sys.meta_path):
        sys.meta_path.insert(0, _TvmWithoutTorch())


_install_tvm_hook()


def load(path):
    """Load a module written by ``tvmopt build``: returns a callable taking numpy arrays."""
    from tvmopt.build.deploy import load as _load

    return _load(path)
