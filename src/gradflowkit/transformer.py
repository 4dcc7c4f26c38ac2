"""Tiny Transformer encoders, many at once: where the LayerNorm goes (lesson 19).

- :func:`layer_norm_jacobian`: the closed-form Jacobian of LayerNorm,
  ``(g/σ)(I − 11ᵀ/n − ẑẑᵀ/n)``, checked against autograd in the unit tests;
- :class:`EnsembleTransformer`: ``S`` small encoder-only Transformers with stacked weights,
  one per seed, computed together; the blocks are post-LN ``LN(x + F(x))`` (Vaswani et
  al. 2017), pre-LN ``x + F(LN(x))`` with a final LayerNorm (Xiong et al. 2020) or DeepNorm
  ``LN(αx + F(x))`` with its β-scaled initialization (Wang et al. 2022, Fig. 2);
- :func:`ffn_grad_norms`: ``‖∂L/∂W^{2,l}‖_F`` of every layer's second FFN matrix, the
  quantity of Xiong et al.'s Theorem 1, per member;
- :func:`reversal_batch`: random sequences and their reversals (trained on through
  :class:`~gradflowkit.tasks.ReversalTask` and :func:`~gradflowkit.trainer.train`, whose
  ``warmup`` is the linear learning-rate warm-up).

The blocks compute exactly what ``torch.nn.TransformerEncoderLayer`` computes (ReLU, no
dropout, ``batch_first=True``) with ``norm_first=False`` (post-LN) or ``True`` (pre-LN);
the unit tests load a member's weights into one and compare.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .ensemble import member_cross_entropy
from .validation import check_choice, check_finite, check_float, check_int, check_tensor

#: Where the LayerNorm goes (after the residual sum, inside the branch, or DeepNorm).
NORMS: tuple[str, ...] = ("post", "pre", "deepnorm")

#: Matrices of a layer, in ``x @ W`` layout ``(S, in, out)``; biases are ``(S, out)``.
_MATRICES = ("w_q", "w_k", "w_v", "w_o", "w_1", "w_2")


def layer_norm_jacobian(x: torch.Tensor, gain: torch.Tensor | None = None,
                        eps: float = 0.0) -> torch.Tensor:
    """The Jacobian ``∂LN(x)/∂x = diag(g/σ)(I − 11ᵀ/n − ẑẑᵀ/n)`` of LayerNorm at ``x``.

    ``σ = sqrt(var(x) + eps)`` with the biased variance, ``ẑ = (x − mean)/σ``.

    Args:
        x: one vector ``(n,)``, n >= 2.
        gain: the elementwise gain ``g`` ``(n,)`` (default ones).
        eps: added to the variance, as ``torch.nn.LayerNorm`` does (default 0).

    Returns:
        ``(n, n)`` tensor in ``x``'s dtype, row ``i`` = gradient of output ``i``.
    """
    x = check_tensor("x", x, ndim=1)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"x needs at least 2 entries to normalize, got {n}")
    eps = check_float("eps", eps, nonnegative=True)
    sigma = torch.sqrt(x.var(unbiased=False) + eps)
    if not bool(sigma > 0):
        raise ValueError("x is constant and eps is 0: LayerNorm is not differentiable there")
    z = (x - x.mean()) / sigma
    g = torch.ones_like(x) if gain is None else check_tensor("gain", gain, ndim=1)
    if g.shape != x.shape:
        raise ValueError(f"gain must have shape {tuple(x.shape)}, got {tuple(g.shape)}")
    eye = torch.eye(n, dtype=x.dtype)
    return (g / sigma)[:, None] * (eye - 1.0 / n - torch.outer(z, z) / n)


def deepnorm_constants(layers: int) -> tuple[float, float]:
    """DeepNorm's ``(α, β)`` for an encoder of ``layers`` layers: ``((2N)^¼, (8N)^-¼)``.

    Wang et al. 2022, Fig. 2 (encoder-only and decoder-only rows).
    """
    layers = check_int("layers", layers, minimum=1)
    return (2.0 * layers) ** 0.25, (8.0 * layers) ** -0.25


def _xavier(gen: torch.Generator, fan_in: int, fan_out: int, gain: float = 1.0):
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return torch.randn(fan_in, fan_out, generator=gen) * std


class _Layer(nn.Module):
    """One encoder layer's stacked parameters (no forward: the ensemble computes it)."""

    def __init__(self, seeds, layer, width, hidden, beta):
        super().__init__()
        shapes = {"w_q": (width, width), "w_k": (width, width), "w_v": (width, width),
                  "w_o": (width, width), "w_1": (width, hidden), "w_2": (hidden, width)}
        gains = {"w_q": 1.0, "w_k": 1.0}          # DeepNorm leaves q and k at gain 1
        mats = {k: [] for k in shapes}
        for seed in seeds:
            gen = torch.Generator().manual_seed(int(seed) + 7919 * (layer + 1))
            for k, (fi, fo) in shapes.items():
                mats[k].append(_xavier(gen, fi, fo, gains.get(k, beta)))
        s = len(seeds)
        for k in shapes:
            setattr(self, k, nn.Parameter(torch.stack(mats[k])))
            setattr(self, "b" + k[1:], nn.Parameter(torch.zeros(s, shapes[k][1])))
        for k in ("ln1", "ln2"):
            setattr(self, k + "_g", nn.Parameter(torch.ones(s, width)))
            setattr(self, k + "_b", nn.Parameter(torch.zeros(s, width)))


class EnsembleTransformer(nn.Module):
    """``S`` encoder-only Transformers with stacked weights, one per seed.

    Token and position embeddings (standard normal), ``layers`` blocks, a linear read-out
    per position. Matrices are Xavier-normal, biases zero, LayerNorm gains one; DeepNorm
    multiplies the value, output and FFN matrices by ``β``.

    Args:
        seeds: one seed per member (``ensemble_seeds``).
        layers: encoder layers ``L`` (>= 1).
        width: the residual stream's width ``d``.
        heads: attention heads (must divide ``width``).
        vocab: tokens in the vocabulary (inputs and outputs).
        length: sequence length (position embeddings).
        norm: ``"post"``, ``"pre"`` or ``"deepnorm"``.
        hidden: FFN units (default ``4 * width``).
    """

    def __init__(self, seeds: Sequence[int], layers: int, width: int, heads: int,
                 vocab: int, length: int, norm: str = "pre", hidden: int | None = None):
        super().__init__()
        if len(seeds) < 1:
            raise ValueError("seeds must name at least one member")
        for name, v in (("layers", layers), ("width", width), ("heads", heads),
                        ("vocab", vocab), ("length", length)):
            check_int(name, v, minimum=1)
        if width % heads:
            raise ValueError(f"heads ({heads}) must divide width ({width})")
        self.norm = check_choice("norm", norm, NORMS)
        self.n_members, self.layers, self.width, self.heads = len(seeds), layers, width, heads
        self.vocab, self.length = vocab, length
        hidden = 4 * width if hidden is None else check_int("hidden", hidden, minimum=1)
        alpha, beta = deepnorm_constants(layers) if norm == "deepnorm" else (1.0, 1.0)
        self.alpha = alpha
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.tokens = nn.Parameter(torch.stack([torch.randn(vocab, width, generator=g)
                                                for g in gens]))
        self.positions = nn.Parameter(torch.stack([torch.randn(length, width, generator=g)
                                                   for g in gens]))
        self.blocks = nn.ModuleList(_Layer(seeds, i, width, hidden, beta)
                                    for i in range(layers))
        self.head = nn.Parameter(torch.stack([_xavier(g, width, vocab) for g in gens]))
        self.head_b = nn.Parameter(torch.zeros(len(seeds), vocab))
        if norm == "pre":
            self.final_g = nn.Parameter(torch.ones(len(seeds), width))
            self.final_b = nn.Parameter(torch.zeros(len(seeds), width))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token plus position embeddings ``(S, B, T, d)`` of ids ``(B, T)`` or ``(S, B, T)``."""
        if ids.ndim == 2:
            ids = ids.expand(self.n_members, *ids.shape)
        if ids.ndim != 3 or ids.shape[0] != self.n_members:
            raise ValueError(f"ids must be (batch, length) or ({self.n_members}, batch, "
                             f"length), got {tuple(ids.shape)}")
        if ids.shape[2] > self.length:
            raise ValueError(f"sequences of {ids.shape[2]} tokens are longer than "
                             f"length={self.length}")
        member = torch.arange(self.n_members)[:, None, None]
        return self.tokens[member, ids] + self.positions[:, None, :ids.shape[2]]

    def forward(self, ids: torch.Tensor, *, keep_stream: bool = False):
        """Logits ``(S, B, T, vocab)``; with ``keep_stream`` also every layer's input.

        Args:
            ids: token ids ``(B, T)`` shared by the members, or ``(S, B, T)``.
            keep_stream: also return the list of the ``L + 1`` streams ``x_l`` (the input
                of each layer and the last layer's output, before the final LayerNorm).
        """
        x = self.embed(ids)
        s, b, t, d = x.shape
        x = x.reshape(s, b * t, d)       # (S, tokens, d): one bmm per matrix
        stream = [x.view(s, b, t, d)]
        for blk in self.blocks:
            kept = self._block(blk, x, b, t).view(s, b, t, d)
            stream.append(kept)
            x = kept.view(s, b * t, d)   # through the kept view: its .grad is usable
        if self.norm == "pre":
            x = _ln(x, self.final_g, self.final_b)
        logits = torch.baddbmm(self.head_b[:, None], x, self.head).view(s, b, t, -1)
        return (logits, stream) if keep_stream else logits

    def _block(self, blk: _Layer, x: torch.Tensor, b: int, t: int) -> torch.Tensor:
        if self.norm == "pre":
            x = x + self._attention(blk, _ln(x, blk.ln1_g, blk.ln1_b), b, t)
            return x + _ffn(blk, _ln(x, blk.ln2_g, blk.ln2_b))
        a = self.alpha
        x = _ln(a * x + self._attention(blk, x, b, t), blk.ln1_g, blk.ln1_b)
        return _ln(a * x + _ffn(blk, x), blk.ln2_g, blk.ln2_b)

    def _attention(self, blk: _Layer, x: torch.Tensor, b: int, t: int) -> torch.Tensor:
        s, _, d = x.shape
        h = self.heads

        def split(w, bias):                  # (S, B T, d) -> (S B, H, T, d / H)
            y = _linear(x, w, bias)
            return y.view(s * b, t, h, d // h).transpose(1, 2)

        q, k, v = split(blk.w_q, blk.b_q), split(blk.w_k, blk.b_k), split(blk.w_v, blk.b_v)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(s, b * t, d)
        return _linear(y, blk.w_o, blk.b_o)


def _linear(x, w, b):
    return torch.baddbmm(b[:, None], x, w)


def _ln(x, g, b):
    return torch.addcmul(b[:, None], F.layer_norm(x, x.shape[-1:]), g[:, None])


def _ffn(blk, x):
    return _linear(torch.relu(_linear(x, blk.w_1, blk.b_1)), blk.w_2, blk.b_2)


def member_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over batch and positions, one per member ``(S,)``.

    Args:
        logits: ``(S, B, T, V)``.
        targets: ``(B, T)`` or ``(S, B, T)`` token ids.
    """
    s, b, t, v = logits.shape
    return member_cross_entropy(logits.reshape(s, b * t, v),
                                targets.expand(s, b, t).reshape(s, b * t))


def ffn_grad_norms(model: EnsembleTransformer, ids: torch.Tensor, targets: torch.Tensor,
                   *, error_if_nonfinite: bool = True) -> dict[str, np.ndarray]:
    """Per member and layer, ``‖∂L/∂W^{2,l}‖_F`` and the stream's std, at the current weights.

    Each member's loss is :func:`member_token_loss`; their sum is differentiated, so the
    members' gradients do not mix.

    Args:
        model: the ensemble.
        ids: inputs ``(B, T)`` or ``(S, B, T)``.
        targets: target ids of the same shape.
        error_if_nonfinite: raise if a gradient is inf or NaN (default True).

    Returns:
        ``{"w2": (S, L), "stream_std": (S, L + 1), "loss": (S,)}``: the FFN gradient norms
        of layers 1..L, and the std over units, positions and batch of ``x_1 … x_{L+1}``.
    """
    model.zero_grad(set_to_none=True)
    logits, stream = model(ids, keep_stream=True)
    loss = member_token_loss(logits, targets)
    loss.sum().backward()
    grads = torch.stack([blk.w_2.grad.flatten(1).norm(dim=1) for blk in model.blocks], 1)
    if error_if_nonfinite:
        check_finite("the FFN gradients", grads)
    with torch.no_grad():
        std = torch.stack([x.flatten(1).std(1) for x in stream], 1)
    model.zero_grad(set_to_none=True)
    return {"w2": grads.numpy(), "stream_std": std.numpy(), "loss": loss.detach().numpy()}


def reversal_batch(gen: torch.Generator, batch: int, length: int, vocab: int,
                   members: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sequences and their reversals: the target at position t is token T−1−t.

    Args:
        gen: the generator of the tokens.
        batch: sequences per member.
        length: tokens per sequence ``T`` (>= 2).
        vocab: token values ``0 … vocab-1`` (>= 2).
        members: draw ``(members, batch, T)``, a batch per member (default: one shared
            ``(batch, T)`` batch).

    Returns:
        ``(ids, targets)``, int64.
    """
    batch = check_int("batch", batch, minimum=1)
    length = check_int("length", length, minimum=2)
    vocab = check_int("vocab", vocab, minimum=2)
    shape = (batch, length) if members is None else (check_int("members", members,
                                                               minimum=1), batch, length)
    ids = torch.randint(vocab, shape, generator=gen)
    return ids, ids.flip(-1)
