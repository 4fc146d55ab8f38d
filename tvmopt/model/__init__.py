"""Stage 1, the model: the ``ai.tvmopt`` op set (``opset``), the compact weight formats
(``formats``, numpy only) and the frontend that imports ONNX files and ``torch.export``
programs into Relax (``frontend``)."""
