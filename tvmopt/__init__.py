"""tvmopt: compile and autotune compressed neural networks with Apache TVM."""

__version__ = "0.1.0"
