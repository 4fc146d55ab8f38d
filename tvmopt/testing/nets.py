"""The real-size networks of the benchmark suite (``benchmarks/suite.py``), in plain PyTorch, so
``tvmopt.nn.compress`` can turn them into each compressed variant:

- :class:`ResNet18`: He et al.'s ImageNet ResNet-18 (224x224 input, 11.7 M weights);
- :class:`ResNet20`: the CIFAR ResNet-20 as DeepShift defines it (3 stages of 3 basic blocks,
  option-A shortcuts: a strided slice plus zero channels on both sides);
- :class:`VGGSmall`: a VGG-style CIFAR CNN (VGG-11's convolutions, one classifier layer);
- :class:`MLP`: three 4096-wide fully connected layers;
- :class:`EncoderMLP`: a BERT-base encoder's feed-forward block (768 -> 3072 -> GELU -> 768) on
  128 tokens;
- :class:`Bert`: BERT-base encoder layers whole (self-attention with 12 heads, the output
  projection, residuals and layer norms, the feed-forward block) on 128 tokens;
- :class:`ViT`: a ViT-B/16 at 224x224 (197 tokens) with two pre-norm encoder layers;
- :class:`MobileNet`: MobileNet-V2-, V3- and EfficientNet-style networks (depthwise
  convolutions, ReLU6, hard-swish or SiLU, squeeze-and-excitation), for ``benchmarks/mobile.py``.

:func:`randomize_batch_norm` gives batch norms non-trivial statistics, so folding them matters.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class OptionAShortcut(nn.Module):
    """DeepShift's option-A shortcut: a strided slice, then zero channels on both sides."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0)


class BasicBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, + shortcut, ReLU. ``shortcut``: ``"A"`` (slice and zero channels)
    or ``"B"`` (1x1 strided conv and BN) where the shape changes."""

    def __init__(self, inp: int, planes: int, stride: int, shortcut: str = "B"):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride == 1 and inp == planes:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = OptionAShortcut(planes)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(inp, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet20(nn.Module):
    """The CIFAR ResNet-20 of He et al. as DeepShift defines it (3 stages of 3 basic blocks)."""

    input_shape = (3, 32, 32)

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, inp = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(BasicBlock(inp, planes, stride if i == 0 else 1, shortcut="A"))
                inp = planes
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(64, classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class ResNet18(nn.Module):
    """ImageNet ResNet-18 (torchvision's layout: 7x7/2 stem, max pool, 4 stages of 2 blocks)."""

    input_shape = (3, 224, 224)

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        blocks, inp = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for i in range(2):
                blocks.append(BasicBlock(inp, planes, stride if i == 0 else 1))
                inp = planes
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.fc(F.adaptive_avg_pool2d(self.layers(out), 1).flatten(1))


class VGGSmall(nn.Module):
    """VGG-11's convolutions (each followed by BN and ReLU) on 32x32 inputs, one classifier."""

    input_shape = (3, 32, 32)
    PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, classes: int = 10):
        super().__init__()
        layers, inp = [], 3
        for v in self.PLAN:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(inp, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
                inp = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class MLP(nn.Module):
    """Three fully connected layers of ``width`` (4096) units, ReLU between them."""

    def __init__(self, width: int = 4096):
        super().__init__()
        self.input_shape = (width,)
        self.fc1, self.fc2, self.fc3 = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class EncoderMLP(nn.Module):
    """A BERT-base encoder's feed-forward block on ``tokens`` tokens: 768 -> 3072, GELU (tanh
    approximation, as ONNX exports it without an opset-20 Gelu), -> 768."""

    def __init__(self, tokens: int = 128, hidden: int = 768, inner: int = 3072):
        super().__init__()
        self.input_shape = (tokens, hidden)
        self.up, self.down = nn.Linear(hidden, inner), nn.Linear(inner, hidden)

    def forward(self, x):
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class BertLayer(nn.Module):
    """One BERT-base (post-norm) encoder layer, written as the Hugging Face model computes it:
    Q, K and V projections split into heads, softmax(Q K^T / sqrt(d)) V, output projection,
    residual and LayerNorm, then the feed-forward block (erf GELU), residual and LayerNorm.
    ``pre_norm``: each LayerNorm before its block instead (ViT, GPT)."""

    def __init__(self, hidden: int = 768, heads: int = 12, inner: int = 3072, pre_norm: bool = False):
        super().__init__()
        self.heads, self.head_dim, self.pre_norm = heads, hidden // heads, pre_norm
        self.query, self.key, self.value, self.output = (nn.Linear(hidden, hidden) for _ in range(4))
        self.up, self.down = nn.Linear(hidden, inner), nn.Linear(inner, hidden)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)

    def attention(self, x):
        b, t, hidden = x.shape

        def split(y):
            return y.view(b, t, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.softmax(q @ k.transpose(-1, -2) / self.head_dim ** 0.5, dim=-1)
        return self.output((scores @ v).transpose(1, 2).reshape(b, t, hidden))

    def forward(self, x):
        if self.pre_norm:
            x = x + self.attention(self.norm1(x))
            return x + self.down(F.gelu(self.up(self.norm2(x))))
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.down(F.gelu(self.up(x))))


class Bert(nn.Module):
    """``layers`` BERT-base encoder layers on ``tokens`` tokens (no embeddings, no pooler)."""

    def __init__(self, layers: int = 2, tokens: int = 128, hidden: int = 768):
        super().__init__()
        self.input_shape = (tokens, hidden)
        self.layers = nn.Sequential(*(BertLayer(hidden) for _ in range(layers)))

    def forward(self, x):
        return self.layers(x)


class ViT(nn.Module):
    """A ViT-B/16 (Dosovitskiy et al.) with ``layers`` pre-norm encoder layers at 224x224: the
    16x16 patch convolution, a class token and position embeddings, the encoder (197 tokens),
    a final LayerNorm and the 1000-class head on the class token."""

    def __init__(self, layers: int = 2, hidden: int = 768, image: int = 224, patch: int = 16, classes: int = 1000):
        super().__init__()
        tokens = (image // patch) ** 2 + 1
        self.input_shape = (3, image, image)
        self.patch = nn.Conv2d(3, hidden, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.position = nn.Parameter(torch.randn(1, tokens, hidden) * 0.02)
        self.layers = nn.Sequential(*(BertLayer(hidden, pre_norm=True) for _ in range(layers)))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.position
        return self.head(self.norm(self.layers(x))[:, 0])


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: a per-channel gate from the map's mean through two 1x1 convs."""

    def __init__(self, channels: int, gate: type, reduction: int = 4):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)
        self.gate = gate()

    def forward(self, x):
        return x * self.gate(self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))))


class InvertedResidual(nn.Module):
    """MobileNet-V2's block: a 1x1 expansion, a 3x3 depthwise conv (stride 1 or 2), an optional
    squeeze-and-excitation, a linear 1x1 projection, and the residual where the shapes allow."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int, act: type, se: type | None):
        super().__init__()
        mid = cin * expand
        body = [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act(),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), act()]
        if se is not None:
            body.append(SqueezeExcite(mid, se))
        body += [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*body)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


#: MobileNet-style networks' activation and squeeze-and-excitation gate, by name
MOBILE_KINDS = {"mobilenet_v2": (nn.ReLU6, None), "mobilenet_v3": (nn.Hardswish, nn.Hardsigmoid),
                "efficientnet": (nn.SiLU, nn.Sigmoid)}


class MobileNet(nn.Module):
    """A MobileNet-style network at 224x224 (``MOBILE_KINDS``): a strided 3x3 stem, ten inverted
    residual blocks (16 to 160 channels, expansions 4 and 6, four of them strided), a 1x1 conv to
    640 channels, global pooling and a 1000-class classifier. ``mobilenet_v2``: ReLU6 (an ONNX
    Clip); ``mobilenet_v3``: hard-swish, hard-sigmoid gates; ``efficientnet``: SiLU, sigmoid
    gates. Their depthwise convolutions, elementwise activations and gates are what the
    channels-last graph and the fast ``exp`` were measured on (``benchmarks/mobile.py``)."""

    BLOCKS = [(16, 16, 1, 1), (16, 24, 4, 2), (24, 24, 4, 1), (24, 40, 4, 2), (40, 40, 4, 1), (40, 80, 4, 2),
              (80, 80, 4, 1), (80, 112, 6, 1), (112, 160, 6, 2), (160, 160, 6, 1)]

    def __init__(self, kind: str = "mobilenet_v2", classes: int = 1000):
        super().__init__()
        act, gate = MOBILE_KINDS[kind]
        self.input_shape = (3, 224, 224)
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), act(),
                                      *(InvertedResidual(a, b, e, s, act, gate) for a, b, e, s in self.BLOCKS),
                                      nn.Conv2d(160, 640, 1), act())
        self.head = nn.Linear(640, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def randomize_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial batch-norm statistics (as after training), in place; returns ``model``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
    return model
