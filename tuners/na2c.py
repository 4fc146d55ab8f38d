"""N-A2C: neighbourhood actor-critic (Zhang et al. 2019) with Stable-Baselines3's A2C.

:class:`TilingEnv` is a gymnasium environment over a schedule space: the observation is the
config's encoding (normalised log2 factors and knob indices), an action is one move (shift a
prime factor of one axis from one level to another, or step a choice knob), a move that would
leave the space is a no-op, and the reward is the relative GFLOPS change of the new state,
taken from measurements the tuner has made. Episodes start at the best config so far and last
``horizon`` steps (3 in the paper).

The tuner rolls the policy out (epsilon-greedy, 0.1) to collect unmeasured configs; when the
loop reports their costs, every transition whose two ends are measured goes into an SB3
rollout buffer and A2C takes ``grad_steps`` gradient steps on it (1 in the paper), so the
policy trains online as measurements arrive and measured states cost nothing to revisit.

``roots``: each rollout starts at one of the ``roots`` fastest configs measured so far, drawn
uniformly (1, the paper: always the best). More than one keeps a rollout budget on the
runners-up, where a search stuck around one optimum finds the way to another.

``stale``: once that many rollouts in a row from a root found nothing unmeasured, the root's
neighbourhood (within the horizon, as the policy walks it) is taken as used up and the next
fastest measured config takes its place, as G-BFS moves down its queue. 0 (the paper) keeps
rolling out from the best and fills the batch with random configs when nothing new turns up:
on a table with a narrow optimum 5 moves from a local one (binary_dense:16x1024x1024) that left
N-A2C at 93% of the optimum after 300 trials, and ``stale=10`` took it there in 119. It is not
the default: it pays from a heuristic start, where the runners-up are near the optimum, but from
the untiled config (spaces without a start, such as ``gemm:``) the runners-up are poor and
random configs explore far better. After 64 trials from the untiled config of the Zen 5 tables,
``stale=10``'s median best was 2% to 13% of the optimum on three tables where ``stale=0`` reached
85% to 88% (BENCHMARKS.md, "Tuners' search cost").
"""

from __future__ import annotations

import math
from typing import Callable

import gymnasium as gym
import numpy as np

from tvmopt.schedules.space import Config, Space, Split, prime_factors

from .base import Tuner

REWARD_CLIP = (-1.0, 4.0)


def moves_of(space: Space) -> list[tuple]:
    """The fixed action list: (knob, src, dst, prime) for splits, (knob, step) for choices."""
    actions: list[tuple] = []
    for i, knob in enumerate(space.knobs):
        if isinstance(knob, Split):
            for p in sorted(set(prime_factors(knob.extent))):
                actions.extend((i, src, dst, p) for src in range(knob.levels) for dst in range(knob.levels)
                               if src != dst)
        else:
            actions.extend([(i, -1), (i, +1)])
    return actions


def apply_move(space: Space, config: Config, move: tuple) -> Config | None:
    """The config after ``move``, or None when the move is not possible from ``config``."""
    i = move[0]
    value = config[i]
    if len(move) == 4:
        _, src, dst, p = move
        if value[src] % p:
            return None
        new = list(value)
        new[src] //= p
        new[dst] *= p
        value = tuple(new)
    else:
        values = space.knobs[i].values
        j = values.index(value) + move[1]
        if not 0 <= j < len(values):
            return None
        value = values[j]
    new_config = config[:i] + (value,) + config[i + 1 :]
    return new_config if space.contains(new_config) else None


def relative_gain(old_cost: float, new_cost: float) -> float:
    """Relative GFLOPS change from old to new (a failure is -1; from a failure, +1)."""
    if not math.isfinite(new_cost):
        return REWARD_CLIP[0]
    if not math.isfinite(old_cost):
        return 1.0
    return float(np.clip(old_cost / new_cost - 1.0, *REWARD_CLIP))


class TilingEnv(gym.Env):
    """Moves through a schedule space; rewards come from ``cost_of`` (seconds, or None if unknown)."""

    metadata = {"render_modes": []}

    def __init__(self, space: Space, cost_of: Callable[[Config], float | None],
                 start: Callable[[], Config] | None = None, horizon: int = 3):
        super().__init__()
        self.space, self.cost_of, self.horizon = space, cost_of, horizon
        self.start = start or space.initial
        self.moves = moves_of(space)
        self.action_space = gym.spaces.Discrete(len(self.moves))
        dim = len(space.encode(space.initial()))
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(dim,), dtype=np.float32)
        self.state: Config = space.initial()
        self.steps = 0

    def observe(self, config: Config) -> np.ndarray:
        return np.asarray(self.space.encode(config), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state, self.steps = self.start(), 0
        return self.observe(self.state), {}

    def step(self, action):
        new = apply_move(self.space, self.state, self.moves[int(action)])
        reward = 0.0
        if new is not None:
            old_cost, new_cost = self.cost_of(self.state), self.cost_of(new)
            if old_cost is not None and new_cost is not None:
                reward = relative_gain(old_cost, new_cost)
            self.state = new
        self.steps += 1
        info = {"valid": new is not None, "config": self.state}
        return self.observe(self.state), reward, False, self.steps >= self.horizon, info


class NA2CTuner(Tuner):
    name = "na2c"

    def __init__(self, space, seed: int = 0, horizon: int = 3, epsilon: float = 0.1, hidden: int = 128,
                 learning_rate: float = 7e-4, gamma: float = 0.9, grad_steps: int = 1, start: str = "heuristic",
                 roots: int = 1, stale: int = 0):
        super().__init__(space, seed)
        self._start = self.start_config(start)
        if grad_steps < 1:
            raise ValueError("grad_steps must be at least 1")
        if roots < 1:
            raise ValueError("roots must be at least 1")
        if stale < 0:
            raise ValueError("stale must be at least 0")
        self.grad_steps, self.roots, self.stale = grad_steps, roots, stale
        self._fruitless: dict[Config, int] = {}  # root -> rollouts in a row that found nothing new
        self._used_up: set[Config] = set()       # roots given up (``stale``)
        from stable_baselines3 import A2C
        from stable_baselines3.common.logger import configure

        self.horizon, self.epsilon, self.gamma = horizon, epsilon, gamma
        self.costs: dict[Config, float] = {}
        self.env = TilingEnv(space, self.costs.get, start=lambda: self.best_config or self._start,
                             horizon=horizon)
        self.model = A2C("MlpPolicy", self.env, learning_rate=learning_rate, gamma=gamma, n_steps=8,
                         policy_kwargs={"net_arch": [hidden]}, seed=seed, device="cpu", verbose=0)
        self.model.set_logger(configure(None, []))
        self._transitions: list[tuple[Config, int, Config, bool]] = []  # (state, action, next, episode start)

    # ---- proposing: roll the policy out from the best state
    def _act(self, config: Config) -> tuple[int, Config] | None:
        """An epsilon-greedy action among the possible moves (impossible ones are masked)."""
        import torch

        possible = [(a, c) for a, m in enumerate(self.env.moves) if (c := apply_move(self.space, config, m))]
        if not possible:
            return None
        if self.rng.random() < self.epsilon:
            return self.rng.choice(possible)
        with torch.no_grad():
            dist = self.model.policy.get_distribution(torch.as_tensor(self.env.observe(config)[None]))
            probs = dist.distribution.probs[0].numpy()
        weights = [float(probs[a]) + 1e-12 for a, _ in possible]
        return self.rng.choices(possible, weights=weights)[0]

    def next_batch(self, n: int) -> list[Config]:
        if not self.visited:
            return [self._start]
        batch: list[Config] = []
        roots = self._roots()
        for _ in range(20 * n):
            if len(batch) >= n or not roots:
                break
            root = roots[0] if len(roots) == 1 else self.rng.choice(roots)  # one root draws nothing
            before = len(batch)
            state = root
            for step in range(self.horizon):
                acted = self._act(state)
                if acted is None:
                    break
                action, new = acted
                self._transitions.append((state, action, new, step == 0))
                if new not in self.visited and new not in batch:
                    batch.append(new)
                    if len(batch) >= n:
                        break
                state = new
            if self.stale:
                found = len(batch) > before
                self._fruitless[root] = 0 if found else self._fruitless.get(root, 0) + 1
                if self._fruitless[root] >= self.stale:
                    self._used_up.add(root)
                    roots = self._roots()
        return self.random_fill(batch, n)  # the neighbourhood is used up: explore at random

    def _roots(self) -> list[Config]:
        """Where rollouts start: the ``roots`` fastest measured configs not given up (``stale``);
        the start before any is measured."""
        if not self.costs or (self.roots == 1 and not self._used_up):
            return [self.best_config or self._start]
        ranked = sorted((c for c in self.costs if math.isfinite(self.costs[c]) and c not in self._used_up),
                        key=self.costs.__getitem__)
        if not self.stale:
            ranked = ranked or [self.best_config or self._start]
        return ranked[:self.roots]

    # ---- learning: one A2C step on every transition whose ends are both measured
    def update(self, configs, costs) -> None:
        for config, cost in zip(configs, costs):
            self.costs[config] = cost
        ready = [t for t in self._transitions if t[0] in self.costs and t[2] in self.costs]
        self._transitions = [t for t in self._transitions if not (t[0] in self.costs and t[2] in self.costs)]
        if ready:
            self._train(ready)

    def _train(self, transitions) -> None:
        import torch
        from stable_baselines3.common.buffers import RolloutBuffer

        buffer = RolloutBuffer(len(transitions), self.env.observation_space, self.env.action_space, device="cpu",
                               gamma=self.gamma, gae_lambda=1.0)
        obs = np.stack([self.env.observe(state) for state, _, _, _ in transitions])
        actions = np.array([action for _, action, _, _ in transitions])
        with torch.no_grad():  # one forward pass for the whole buffer
            values, log_probs, _ = self.model.policy.evaluate_actions(torch.as_tensor(obs), torch.as_tensor(actions))
        for i, (state, action, new, start) in enumerate(transitions):
            reward = relative_gain(self.costs[state], self.costs[new])
            buffer.add(obs[i:i + 1], actions[i:i + 1], np.array([reward]), np.array([start]), values[i:i + 1],
                       log_probs[i:i + 1])
        buffer.compute_returns_and_advantage(last_values=torch.zeros(1), dones=np.array([True]))
        self.model.rollout_buffer = buffer
        for _ in range(self.grad_steps):  # A2C's train() is one gradient step on the buffer
            self.model.train()
