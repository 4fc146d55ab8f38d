"""Test and benchmark support; production code never imports it.

- ``faults``: the ``fault:N`` workload whose candidates crash, hang or compute garbage on purpose.
  It is an op-family plugin: a process (or measuring worker) sees it once ``TVMOPT_PLUGINS``
  names ``tvmopt.testing.faults`` (``tests/conftest.py`` and ``reliability.cli_env`` set it).
- ``reliability``: probes that drive the CLI in subprocesses (bad inputs, fuzzing, kills).
- ``zoo``: the onnx model-zoo test networks with random weights, and their PyTorch runner.
- ``digits``: the bundled digits models (training, loading) used by tests, benchmarks and examples.
"""
