"""TVM's popen worker (``tvm.exec.popen_worker``, same protocol), started through the
``tvmopt`` package so that TVM loads without torch (tvmopt/__init__.py): about 1 s per worker
process instead of 4. The measurer's workers and the RPC tracker's and server's processes are
started this way.

``python -m tvmopt.measure.popen_worker READ_FD WRITE_FD`` is the worker's entry point;
:func:`worker_class` is TVM's ``PopenWorker`` starting it."""

import os
import subprocess
import sys

import tvmopt  # noqa: F401  - installs the import hook before TVM loads


def worker_class():
    """A ``tvm.support.popen_pool.PopenWorker`` whose process is this module; TVM's own start on
    Windows, where the pipe handles are passed differently."""
    from tvm.support.popen_pool import PopenWorker

    class Worker(PopenWorker):
        def _start(self):
            if self._proc is not None or sys.platform == "win32":
                return super()._start()
            main_read, worker_write = os.pipe()
            worker_read, main_write = os.pipe()
            cmd = [sys.executable, "-m", "tvmopt.measure.popen_worker", str(worker_read), str(worker_write)]
            self._proc = subprocess.Popen(cmd, pass_fds=(worker_read, worker_write), stdout=self._stdout,
                                          stderr=self._stderr)
            os.close(worker_read)
            os.close(worker_write)
            self._reader = os.fdopen(main_read, "rb")
            self._writer = os.fdopen(main_write, "wb")
            return None

    return Worker


if __name__ == "__main__":
    from tvm.exec.popen_worker import main

    main()
