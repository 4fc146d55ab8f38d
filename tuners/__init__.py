"""Search strategies. Each decides only what to measure next; none imports TVM.

A tuner is named by a *variant*: a strategy plus settings. ``TUNERS`` lists the named ones
(``gbfs-paper`` and ``na2c-paper`` keep the settings of Zhang et al. 2019, so `tvmopt compare`
can still check the paper's claim; ``gbfs`` and ``na2c`` are this project's defaults, chosen
on the tuning replay tables of every CPU kind (``benchmarks/tuners.py defaults``) and checked on
the held-out ones: BENCHMARKS.md). Any setting can
be given after colons: ``gbfs:rho=8:pick=credit`` or ``na2c-paper:grad_steps=4``.
"""

from .base import Tuner
from .gbfs import GBFSTuner
from .na2c import NA2CTuner
from .random import RandomTuner
from .xgb import XGBTuner

STRATEGIES = {"gbfs": GBFSTuner, "na2c": NA2CTuner, "random": RandomTuner, "xgb": XGBTuner}

#: named variants: (strategy, settings, what it is)
VARIANTS = {
    "gbfs": ("gbfs", {"rho": 5, "pick": "credit", "reach": 2},
             "G-BFS, neighbours picked by move credit, moves of up to two primes"),
    "gbfs-paper": ("gbfs", {"rho": 5, "pick": "random", "reach": 1},
                   "G-BFS as in the paper: rho 5 random one-prime neighbours"),
    "na2c": ("na2c", {"grad_steps": 4}, "N-A2C, 4 gradient steps per batch"),
    "na2c-paper": ("na2c", {"grad_steps": 1}, "N-A2C as in the paper: horizon 3, epsilon 0.1, 1 step per batch"),
    "xgb": ("xgb", {}, "XGBoost ranking model + simulated annealing (AutoTVM's XGBTuner)"),
    "random": ("random", {}, "random search without repeats"),
}
TUNERS = VARIANTS  # the names the CLI accepts (plus ':key=value' settings)



def parse_tuner(spec: str) -> tuple[str, dict]:
    """'name[:key=value...]' -> (strategy, settings); values are int, float or str."""
    from tvmopt.errors import UserError

    name, _, rest = spec.partition(":")
    if name not in VARIANTS:
        raise UserError(f"unknown tuner '{name}'; choose one of: {', '.join(VARIANTS)}")
    strategy, settings = VARIANTS[name][0], dict(VARIANTS[name][1])
    for item in filter(None, (s.strip() for s in rest.split(":"))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"tuner setting '{item}' in '{spec}' is not key=value")
        settings[key.strip()] = _value(value.strip())
    return strategy, settings


def check_tuner(spec: str) -> str:
    """``spec`` if it names a variant and settings its strategy takes; else a UserError."""
    import inspect

    from tvmopt.errors import UserError

    strategy, settings = parse_tuner(spec)
    known = [p for p in inspect.signature(STRATEGIES[strategy].__init__).parameters if p not in ("self", "space", "seed")]
    unknown = [k for k in settings if k not in known]
    if unknown:
        raise UserError(f"tuner '{spec}': {strategy} has no setting {', '.join(unknown)} "
                        f"(it has: {', '.join(known) or 'none'})")
    return spec


def tuner_identity(spec: str) -> str:
    """The settings a spec runs with, every one spelled out (the strategy's defaults included), as a
    spec that names the same tuner: ``na2c`` -> ``na2c:horizon=3:epsilon=0.1:...:grad_steps=4:...``.
    A comparison log records it, so a log written before a variant's defaults changed is not read
    back as the new variant."""
    import inspect

    strategy, settings = parse_tuner(check_tuner(spec))
    params = inspect.signature(STRATEGIES[strategy].__init__).parameters
    resolved = {k: settings.get(k, p.default) for k, p in params.items() if k not in ("self", "space", "seed")}
    return ":".join([strategy] + [f"{k}={v}" for k, v in resolved.items()])


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def make_tuner(name: str, space, seed: int = 0, **kwargs) -> Tuner:
    """Instantiate a tuner by its CLI name (a variant, optionally with ':key=value' settings)."""
    from tvmopt.errors import UserError

    strategy, settings = parse_tuner(name)
    settings.update(kwargs)
    try:
        tuner = STRATEGIES[strategy](space, seed=seed, **settings)
    except (TypeError, ValueError) as e:
        raise UserError(f"tuner '{name}': {e}") from None
    tuner.name = name
    return tuner
