"""Data shipped with tvmopt (installed as the package ``tvmopt.logs``): ``records/`` holds the
tuning records builds start from, ``replay/`` the pre-measured replay tables. Found through
:mod:`tvmopt.records.shipped`; nothing here is code."""
