"""Search strategies. Each decides only what to measure next; none imports TVM."""

from .base import Tuner
from .gbfs import GBFSTuner
from .na2c import NA2CTuner
from .random import RandomTuner
from .xgb import XGBTuner

TUNERS = {"gbfs": GBFSTuner, "na2c": NA2CTuner, "random": RandomTuner, "xgb": XGBTuner}


def make_tuner(name: str, space, seed: int = 0, **kwargs) -> Tuner:
    """Instantiate a tuner by its CLI name."""
    from tvmopt.errors import UserError

    if name not in TUNERS:
        raise UserError(f"unknown tuner '{name}'; choose one of: {', '.join(sorted(TUNERS))}")
    return TUNERS[name](space, seed=seed, **kwargs)
