"""``python -m tvmopt.measure.popen_worker READ_FD WRITE_FD``: the process a measurer builds
and times candidates in. It is TVM's popen worker (``tvm.exec.popen_worker``, same protocol),
started through the ``tvmopt`` package so that TVM loads without torch (tvmopt/__init__.py):
about 1 s per worker instead of 4."""

import tvmopt  # noqa: F401  - installs the import hook before TVM loads

from tvm.exec.popen_worker import main

if __name__ == "__main__":
    main()
