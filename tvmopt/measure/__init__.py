"""Stage 5, measuring candidates: the ``Measurer`` interface (``base``), worker processes on this
machine (``local``), lookup in a pre-measured table (``replay``), TVM RPC servers (``rpc``) and
the CUDA round trip for GPU hosts without TVM (``cuda`` compiles a candidate, ``cuda_batch``
exports and ingests batches, ``remote_cuda`` is the standalone runner)."""
