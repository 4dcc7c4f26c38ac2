"""Two models in the layouts people train, to try the monitor on (tests, benchmarks).

- :func:`resnet18_layout`: torchvision's ResNet-18 layout (a 7×7 stem, four stages of two
  :class:`BasicBlock`, in-place ReLUs, ``out += identity``) at any width;
- :class:`GPTStyle`: a GPT-2-style decoder-only Transformer: token and position
  embeddings, pre-LN ``nn.TransformerEncoderLayer`` blocks with a causal mask and
  ``activation="gelu"`` (the usual form, which stores ``F.gelu``, not a module), a final
  LayerNorm and a linear head.

Neither is used by the lessons; they are here so that the tests and
``benchmarks/monitor_overhead.py`` share one definition.
"""

from __future__ import annotations

import torch
from torch import nn

from .validation import check_int


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: one in-place ReLU module called twice, ``out += identity``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def resnet18_layout(width: int = 64, classes: int = 10) -> nn.Sequential:
    """ResNet-18's layout at ``width`` channels in the first stage (torchvision: 64).

    The stem is module ``"0"``-``"3"`` (conv, BN, ReLU, max-pool), the stages ``"4"``-``"7"``
    (two blocks each, channels ``width`` to ``8 * width``), then pooling and the head: 17
    ReLU calls per forward pass.
    """
    width = check_int("width", width, minimum=1)
    classes = check_int("classes", classes, minimum=1)
    stages, channels = [], width
    for i, out_channels in enumerate([width, 2 * width, 4 * width, 8 * width]):
        stages.append(nn.Sequential(BasicBlock(channels, out_channels, 1 if i == 0 else 2),
                                    BasicBlock(out_channels, out_channels)))
        channels = out_channels
    return nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                         nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1), *stages,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))


class GPTStyle(nn.Module):
    """A GPT-2-style language model of ``layers`` pre-LN blocks of ``width`` units.

    Args:
        vocab: tokens in the vocabulary.
        width: the residual stream's width (``d_model``); the MLP has ``4 * width`` units.
        layers: Transformer blocks.
        heads: attention heads (must divide ``width``).
        context: the longest sequence (position embeddings).

    Call it with token ids ``(batch, length)``; it returns logits ``(batch, length, vocab)``.
    """

    def __init__(self, vocab: int = 1024, width: int = 128, layers: int = 4, heads: int = 4,
                 context: int = 64):
        super().__init__()
        for name, value in (("vocab", vocab), ("width", width), ("layers", layers),
                            ("heads", heads), ("context", context)):
            check_int(name, value, minimum=1)
        if width % heads:
            raise ValueError(f"heads ({heads}) must divide width ({width})")
        self.context = context
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(context, width)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0,
                                           activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        if length > self.context:
            raise ValueError(f"sequence of {length} tokens is longer than the context "
                             f"({self.context})")
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=ids.device)
        x = self.tokens(ids) + self.positions(torch.arange(length, device=ids.device))
        return self.head(self.norm(self.blocks(x, mask=mask, is_causal=True)))
