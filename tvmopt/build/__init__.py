"""Stage 7, building and deploying: compile a model with its best records (``compile``), export
and load a module (``deploy``), and the layer report of ``tvmopt inspect`` (``inspect``)."""
