"""Stage 4, tuning: the loop that wires a tuner, a measurer and the records (``loop``), tuner
comparisons (``compare``) and a MetaSchedule reference run (``metaschedule``). The search
strategies themselves are ``tvmopt.tuners``."""
