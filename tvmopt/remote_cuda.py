"""Compatibility alias: ``python3 -m tvmopt.remote_cuda DIR`` (the command of tvmopt 0.1's
README) runs :mod:`tvmopt.measure.remote_cuda`, where the standalone GPU-host runner lives now."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("tvmopt.measure.remote_cuda", run_name="__main__", alter_sys=True)
