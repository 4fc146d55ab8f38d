"""The bundled example: scikit-learn's digits (8x8 images, 10 classes, no download), a small MLP
and CNN, and every compressed variant of them, trained the same way.

``examples/train_digits.py`` drives this and writes the models under ``examples/models/``; the
demo, tests and benchmarks load those files.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tvmopt.nn.convert import clip_latent_, compress, weight_bytes

CLASSES = 10


@dataclass
class Split:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_split(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """Digits scaled to [0, 1], shaped [N, 1, 8, 8]; a stratified split, fixed by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, data.target, test_size=test_fraction, random_state=seed,
                                          stratify=data.target)
    t = torch.from_numpy
    return Split(t(xtr), t(ytr.astype(np.int64)), t(xte), t(yte.astype(np.int64)))


def mlp(hidden: int = 256) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, CLASSES))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 128), nn.ReLU(),
                         nn.Linear(128, CLASSES))


ARCHS = {"mlp": mlp, "cnn": cnn}


@dataclass(frozen=True)
class Variant:
    """How a dense model becomes a compressed one: ``compress`` steps ``(method, kwargs, only)``
    applied in order (``only``: layer names, None = every layer the method handles)."""

    name: str
    steps: tuple
    lr: float = 2e-3
    note: str = ""

    def apply(self, model: nn.Module) -> nn.Module:
        for method, kwargs, only in self.steps:
            model = compress(model, method, only=only, **kwargs)
        return model


def _layers(arch: str, kind: str) -> tuple[str, ...]:
    """Names of an architecture's Linear layers (kind="linear"), of its hidden Linear layers
    (kind="hidden"), its last layer ("last"), or its convolutions with reductions divisible by 4
    ("conv4")."""
    names = {"mlp": {"linear": ("1", "3", "5"), "hidden": ("1", "3"), "last": ("5",), "conv4": ()},
             "cnn": {"linear": ("6", "8"), "hidden": ("6",), "last": ("8",), "conv4": ("2",)}}
    return names[arch][kind]


def variants(arch: str) -> list[Variant]:
    """The compressed variants trained for ``arch`` (fp32 first)."""
    lin, hidden, last, conv4 = (_layers(arch, k) for k in ("linear", "hidden", "last", "conv4"))
    every = None
    nm_layers = conv4 + lin                 # 2:4 needs a reduction divisible by 4
    nm_t_layers = conv4 + hidden + (("1",) if arch == "mlp" else ())  # and transposable, rows too
    return [
        Variant("fp32", ()),
        Variant("shift", (("shift", {"mode": "ps", "weight_bits": 5}, every),), lr=5e-3,
                note="DeepShift-PS, 5-bit weights, every layer"),
        Variant("binary", (("binary", {"scale": "layer"}, every),),
                note="±1 weights with one scale per layer, every layer"),
        Variant("ternary", (("ternary", {"threshold": 0.7}, every),), note="TWN threshold 0.7, every layer"),
        Variant("fastfood", (("fastfood", {}, hidden), ("hadamard", {}, last)), lr=5e-3,
                note="hidden Linear -> Fastfood, classifier -> fixed Hadamard"
                     + ("" if arch == "mlp" else "; convolutions fp32")),
        Variant("nm2:4", (("nm", {"n": 2, "m": 4}, nm_layers),),
                note="2:4 magnitude pruning + masked fine-tuning" + ("" if arch == "mlp"
                                                                      else "; first conv fp32 (9 inputs)")),
        Variant("nm2:4-T", (("nm", {"n": 2, "m": 4, "transposable": True}, nm_t_layers),),
                note="transposable 2:4 (optimal masks); classifier fp32 (10 rows)"
                     + ("" if arch == "mlp" else ", first conv fp32")),
        Variant("hashed", (("hashed", {"compression": 8.0}, lin),),
                note="HashedNets, 1/8 of the weights" + ("" if arch == "mlp" else "; convolutions fp32")),
    ]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def train(model: nn.Module, split: Split, epochs: int, lr: float, seed: int = 0, batch: int = 64,
          progress=None) -> nn.Module:
    """Adam with a cosine schedule and cross-entropy; binary latent weights are clipped after
    each step. Deterministic for a given seed."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(split.x_train) / batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(split.x_train), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i: i + batch]
            opt.zero_grad()
            loss = loss_fn(model(split.x_train[idx]), split.y_train[idx])
            loss.backward()
            opt.step()
            sched.step()
            clip_latent_(model)
        if progress is not None:
            progress(epoch + 1, epochs)
    return model.eval()


@dataclass
class Result:
    arch: str
    variant: str
    accuracy: float
    weight_bytes: dict
    seconds: float
    note: str
    model: nn.Module


def train_all(archs=("mlp", "cnn"), epochs: int = 60, finetune_epochs: int = 40, seed: int = 0,
              only: tuple[str, ...] | None = None, log=print) -> list[Result]:
    """Train each architecture in fp32, then convert it to every variant and fine-tune."""
    split = load_split(seed)
    results = []
    for arch in archs:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        base = train(ARCHS[arch](), split, epochs, 2e-3, seed)
        for v in variants(arch):
            if only and v.name not in only and v.name != "fp32":
                continue
            t = time.perf_counter()
            if v.name == "fp32":
                model, secs = base, t - t0
            else:
                model = train(v.apply(base), split, finetune_epochs, v.lr, seed)
                secs = time.perf_counter() - t
            acc = evaluate(model, split.x_test, split.y_test)
            results.append(Result(arch, v.name, acc, weight_bytes(model), secs, v.note, model))
            log(f"{arch:4s} {v.name:9s} accuracy {acc * 100:5.1f}%  ({secs:.1f} s)")
    return results


def stem(arch: str, variant: str) -> str:
    """File stem of a bundled model: ``digits_<arch>_<variant>`` (``nm2:4`` -> ``nm24``)."""
    return f"digits_{arch}_{variant.replace(':', '')}"


def build_model(arch: str, variant: str) -> nn.Module:
    """The untrained module of ``arch`` in ``variant`` (the layers a state dict loads into)."""
    found = {v.name: v for v in variants(arch)}
    if variant not in found:
        raise KeyError(f"no variant {variant!r} of {arch}; have {sorted(found)}")
    torch.manual_seed(0)
    return found[variant].apply(ARCHS[arch]())


def load_model(arch: str, variant: str, path) -> nn.Module:
    """A bundled model's trained PyTorch module (from its ``.pt`` state dict), in eval mode."""
    model = build_model(arch, variant)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
