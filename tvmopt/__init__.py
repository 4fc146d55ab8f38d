"""tvmopt: compile and autotune compressed neural networks with Apache TVM."""

__version__ = "0.1.0"


def load(path):
    """Load a module written by ``tvmopt build``: returns a callable taking numpy arrays."""
    from .deploy import load as _load

    return _load(path)
