"""From a monitor's records to the book's symptom, cause and fix: a diagnosis (lesson 16).

One table, two readers. :data:`SYMPTOMS` holds every row of lesson 16's table *Symptom,
cause, fix* (the symptom, its likely cause, the fix and the lessons that measured it, in
the book's MyST markup); the lesson renders its table from it with
:func:`symptom_table_markdown`, and :func:`diagnose` names the same rows when it finds
them in the records of a :class:`~gradflowkit.monitor.Monitor`, so the table and the
automatic diagnosis cannot drift apart. :func:`report` turns the findings into text.

The rules read the instruments of lesson 16 and compare them with thresholds taken from
the book's own measurements (each constant below says which):

- the gradient norm of the first weight matrix over the last one's (vanishing, exploding);
- the update-to-data ratios: their spread from the first to the last weight matrix, their
  size against Karpathy's rule of thumb (about -3), and their trend over training;
- the saturated share of sigmoid and tanh outputs, the zero share of ReLU outputs;
- non-finite gradients and losses, losses that grow by orders of magnitude;
- the standard deviation of the watched outputs along the module order (a growing
  residual stream).

Records from the first non-finite step on are left to the non-finite rule: after a NaN
update every statistic is NaN. What the records cannot show (no activation statistics, no
update ratios, no logged loss, unknown activation types) is said in the report, never
passed over. Rows a monitor cannot see (a recurrent net's gradient over time, a scaled
shortcut, the degradation problem) stay in the table for the reader and are listed as not
checked.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
from torch import nn

from .monitor import weight_matrix_names
from .monitor_watch import DEFAULT_ACTIVATION_TYPES, unwrap_compiled, watches
from .plaintext import plain_math

#: The published book. GitHub Pages serves repository ``org/repo`` at
#: ``https://org.github.io/repo/``; ``repository.url`` in ``_config.yml`` is the placeholder
#: ``https://github.com/gradient-flow/gradient-flow`` (see the README), so this is its
#: Pages address. Change both together; ``tests/unit/test_diagnosis.py`` checks they agree.
BOOK_URL = "https://gradient-flow.github.io/gradient-flow/"

#: Each lesson's MyST label and its document (``lessons/NN-name``, no suffix). A test
#: reads the ``(label)=`` targets of ``lessons/*.md`` and checks this mapping against them,
#: so that the package needs no copy of the book at run time.
LESSON_DOCS: dict[str, str] = {
    "lesson-backprop": "lessons/01-backprop-is-a-product",
    "lesson-saturation": "lessons/02-saturating-activations",
    "lesson-weights": "lessons/03-weight-norm-growth",
    "lesson-rnn": "lessons/04-recurrent-nets",
    "lesson-clipping": "lessons/05-gradient-clipping",
    "lesson-init": "lessons/06-initialization",
    "lesson-relu": "lessons/07-relu-and-friends",
    "lesson-batchnorm": "lessons/08-normalization",
    "lesson-gates": "lessons/09-gates",
    "lesson-regularization": "lessons/10-weight-regularization",
    "lesson-residual-block": "lessons/11-residual-block",
    "lesson-identity-gradient": "lessons/12-identity-gradient",
    "lesson-residual-limits": "lessons/13-what-residuals-do-not-fix",
    "lesson-training-deep": "lessons/14-training-deep",
    "lesson-why-resnets": "lessons/15-why-residual-nets-work",
    "lesson-diagnose": "lessons/16-diagnose",
    "lesson-normfree": "lessons/17-residual-without-normalization",
    "lesson-edge-of-chaos": "lessons/18-edge-of-chaos",
    "lesson-layernorm-placement": "lessons/19-where-the-layernorm-goes",
    "lesson-adam": "lessons/20-adam-and-explosion",
}

# -- thresholds ------------------------------------------------------------------------
# Gradient norms are compared as first weight matrix / last weight matrix (parameter
# order, input side first), update ratios as rho = log10(std(update) / std(weight)).

#: The first/last gradient-norm ratio below which the gradient vanishes. Two orders of
#: magnitude; lesson 16's sigmoid nets measured 1e-9 to 1e-6 (std 0.05) and about 1e-4
#: (Xavier), its healthy ReLU, batch-norm and residual nets between 0.25 and 6.
VANISHING_RATIO = 1e-2
#: The first/last gradient-norm ratio above which the gradient explodes, the mirror of
#: :data:`VANISHING_RATIO`; lesson 8's deep batch-norm nets start above 1e3.
EXPLODING_RATIO = 1e2
#: How many decades the first weight matrix's rho may lie below the last one's before the
#: early layers count as barely moving (lesson 16, 7 to 10 decades with std 0.05, 4 with
#: Xavier; healthy nets within 0.5).
RHO_SPREAD = 2.0
#: Karpathy's rule of thumb for rho, a step of about 1e-3 of the weight (lesson 16).
RHO_RULE_OF_THUMB = -3.0
#: The median rho of a weight matrix above which its steps are too large. Lesson 16
#: measured every run that learned at or below -1.6 (batch norm at its highest, -1.8 in
#: the first steps), while no ReLU run at learning rates whose early rho was above -2.1
#: learned; -1.5 is 30 times the rule of thumb.
RHO_TOO_LARGE = -1.5
#: The same for an adaptive optimizer (Adam and its kin, whose step per entry is about the
#: learning rate whatever the gradient). A published healthy setting sits far above -1.5:
#: GPT-3 Small (Brown et al. 2020, Table 2.1: Adam, learning rate 6e-4) with GPT-2's
#: initialization (Radford et al. 2019, section 2.3: std 0.02, residual projections scaled
#: by 1/sqrt(N) for N residual layers, 0.02/sqrt(24) here) steps its residual projections
#: by about 6e-4 / 0.0041, rho = -0.84, when its gradients' signs hold. -0.5 leaves that a
#: factor of 2; above it a matrix moves by a third of its spread per step.
RHO_TOO_LARGE_ADAPTIVE = -0.5
#: Optimizers whose step is normalized per entry (by class name, torch.optim's and others').
ADAPTIVE_OPTIMIZERS = frozenset({"Adam", "AdamW", "Adamax", "NAdam", "RAdam", "Adagrad",
                                 "Adadelta", "RMSprop", "SparseAdam", "Adafactor",
                                 "FusedAdam", "LAMB", "Lion"})
#: The median rho below which, in every weight matrix, the net barely moves; 100 times
#: below the rule of thumb (lesson 16's first sigmoid layers, at -5.7 to -10, did not
#: learn).
RHO_TOO_SMALL = -5.0
#: How many decades rho must fall from the first to the last third of the records, each
#: third lower than the one before, to count as a steady fall. Lesson 8's batch-norm
#: weights saw their effective learning rate fall 7-fold (0.84 decades) in one run; lesson
#: 16's silently dying ReLU runs fell by 1.2 to 2.1, its healthy nets by at most 0.8 in
#: 100 steps.
RHO_FALL = 1.0
#: Records with update ratios needed to read a trend (two per third).
TREND_RECORDS = 6
#: The saturated share of a sigmoid or tanh output (median over the records) above which
#: the layer is saturated. Lesson 2 calls the 17-22% of its weight-scale-4 nets "many
#: saturated units" (1.3% at scale 1); the saturation rule is the monitor's (outputs
#: within 0.01 of the bounds).
SATURATED_SHARE = 0.2
#: The mean zero share of the ReLU layers in the last record above which, if it rose by
#: :data:`ZERO_SHARE_RISE` since the first, units are going silent. Lesson 16's ReLU net
#: that trained unreliably went from 0.48-0.52 to 0.68-0.73, the batch-norm net stayed at
#: 0.53-0.54; the healthy nets measured for this module stayed below 0.69.
DYING_ZERO_SHARE = 0.7
#: See :data:`DYING_ZERO_SHARE`.
ZERO_SHARE_RISE = 0.15
#: The zero share of one ReLU layer in the last record from which the whole layer is
#: silent, as in the silent runs of lessons 7 and 16, whose loss sits at chance.
SILENT_ZERO_SHARE = 0.99
#: The largest finite loss over the first one above which losses grew by orders of
#: magnitude (lesson 16's residual runs grew at least 9e5-fold before the alarm; healthy
#: runs never rose above 4-fold).
LOSS_GROWTH = 1e2
#: The std of the last watched output over the first one's, in the first record, above
#: which the stream grows with depth. An order of magnitude; lesson 13 shows that the mean
#: square of a He-initialized residual ReLU stream at least doubles per block, 16 times
#: the std over 8 blocks.
STREAM_GROWTH = 10.0

#: The activation kinds :func:`diagnose` has rules for (see :func:`module_kinds`).
ACTIVATION_KINDS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "other")


@dataclass(frozen=True)
class Symptom:
    """One row of the book's table: what you see, why, what to do, where the book shows it.

    Attributes:
        key: a short name, e.g. ``"vanishing"``; :attr:`Finding.key` is one of them.
        symptom: what the monitor or the loss curve shows (MyST markup, as in the table).
        cause: the likely cause (MyST markup).
        fix: the fix (MyST markup).
        lessons: the MyST labels of the lessons that measure it, e.g. ``"lesson-init"``.
    """

    key: str
    symptom: str
    cause: str
    fix: str
    lessons: tuple[str, ...]


#: Every row of lesson 16's table, in its order.
SYMPTOMS: tuple[Symptom, ...] = (
    Symptom("vanishing",
            "Gradient norms fall by a steady factor per layer toward the input; early update "
            "ratios orders of magnitude below the late ones",
            "{term}`vanishing gradient`: the product of per-layer gains $< 1$",
            "ReLU-family activation with He init; normalization; residual connections",
            ("lesson-backprop", "lesson-init", "lesson-relu", "lesson-batchnorm",
             "lesson-residual-block")),
    Symptom("saturation",
            "Sigmoid or tanh layers with a large saturated share",
            "weights or inputs too large: $f'$ far below its best case",
            "smaller (Xavier) init, normalized inputs, batch norm, non-saturating activations",
            ("lesson-saturation", "lesson-init", "lesson-relu")),
    Symptom("sigmoid-slope",
            "Sigmoid net, no saturation, still a steep gradient",
            r"the slope factor $\sigma' \le 1/4$ per layer",
            "ReLU-family activation, or fewer layers",
            ("lesson-backprop", "lesson-saturation", "lesson-relu")),
    Symptom("exploding",
            "Gradient norms grow toward the input, loss spikes",
            "{term}`exploding gradient`: per-layer gains above 1, weights too large",
            "gradient clipping, smaller init, orthogonal init",
            ("lesson-weights", "lesson-clipping", "lesson-init")),
    Symptom("nonfinite",
            "NaN/inf alarm; losses growing by orders of magnitude before it",
            "float32 {term}`overflow` after runaway steps",
            "lower learning rate, clipping; then remove the cause of the growth",
            ("lesson-weights", "lesson-clipping")),
    Symptom("recurrent",
            "Recurrent net: gradient falls with the distance in time",
            r"one matrix and one $\operatorname{diag}(f')$ multiplied $T$ times",
            "LSTM or GRU gates, forget-gate bias; clipping for explosions",
            ("lesson-rnn", "lesson-gates", "lesson-clipping")),
    Symptom("silent-death",
            r"Loss flat at $\ln(\text{classes})$, no alarm, most ReLU outputs at zero",
            "silent death: a too-large step killed the units of a whole layer",
            r"lower learning rate (read $\rho$ over a sweep); Leaky ReLU turns it into a loud "
            "overflow",
            ("lesson-relu", "lesson-diagnose")),
    Symptom("dying-relu",
            "ReLU zero share well above one half and rising; update ratios near $10^{-2}$ or "
            "higher",
            "units going silent, some {term}`dead <dead unit>`, from too large steps",
            "count dead units on the training set; lower learning rate, batch norm, leaky ReLU",
            ("lesson-relu", "lesson-batchnorm")),
    Symptom("step-size",
            "Update ratios far above $10^{-3}$ in some layer, or far below it in every layer",
            "a learning rate too large for this net, or far too small",
            r"scale the learning rate; read $\rho$ over a sweep of learning rates and a few "
            "seeds, since the safe range belongs to the net",
            ("lesson-diagnose",)),
    Symptom("ratio-decay",
            "With batch norm, update ratios fall steadily over training and learning slows",
            r"scale invariance: the gradient is orthogonal to $w$, so $\lVert w\rVert$ grows "
            "and the effective step shrinks",
            "weight decay sets the effective learning rate",
            ("lesson-batchnorm", "lesson-regularization")),
    Symptom("residual-growth",
            "Residual net without normalization: activations, losses and gradients grow with "
            "depth",
            "each branch adds variance to the stream",
            r"batch norm in the branch, branch scale $1/\sqrt{L}$, or start every block as "
            "the identity: Fixup, SkipInit / ReZero",
            ("lesson-residual-limits", "lesson-normfree")),
    Symptom("scaled-shortcut",
            r"Gradients scale like $\lambda^L$ with a scaled shortcut",
            "the shortcut is not the identity",
            r"keep the shortcut an identity, $\lambda = 1$",
            ("lesson-identity-gradient",)),
    Symptom("degradation",
            "Healthy gradient norms and ratios, but a deep plain net trains worse than a "
            "shallow one",
            "the {term}`degradation problem`: optimization, not vanishing",
            "residual connections",
            ("lesson-training-deep", "lesson-why-resnets")),
    Symptom("post-ln",
            "Post-LN Transformer with Adam: loss stuck near chance from the start, no "
            "overflow",
            "at initialization the last layers' gradients are large and do not shrink with "
            "depth; full-size Adam steps there derail training",
            r"{term}`learning-rate warmup`, pre-LN blocks, or DeepNorm's $\alpha$/$\beta$",
            ("lesson-layernorm-placement",)),
    Symptom("adam-epsilon",
            r"Adam, yet the first layers' update ratios are orders of magnitude below the "
            "last layers'",
            r"gradients below Adam's $\epsilon$: there the step is $\alpha g/\epsilon$, "
            "vanishing again",
            r"a smaller $\epsilon$, or fix the vanishing gradient itself (init, "
            "normalization, residual connections)",
            ("lesson-adam",)),
    Symptom("adam-jump",
            "Adam: a loss spike right after a quiet stretch of small gradients",
            r"$m/\sqrt{v}$ jumps when a large gradient meets a small running $v$, up to "
            r"$(1-\beta_1)/\sqrt{1-\beta_2}$ times a steady step",
            r"warmup, a smaller $\beta_2$, clipping (it acts through the moments only)",
            ("lesson-adam",)),
    Symptom("clip-all-layers",
            "Clipping by the global norm rescues a run but slows every layer alike",
            "one large layer's gradient sets the scale for all",
            r"{term}`adaptive gradient clipping`: each unit's $\lVert G\rVert/\lVert "
            r"W\rVert$ bounded by $\lambda$",
            ("lesson-adam",)),
)

#: The rows :func:`diagnose` can report; the others need more than a monitor's records.
CHECKED_KEYS: tuple[str, ...] = (
    "vanishing", "saturation", "sigmoid-slope", "exploding", "nonfinite", "silent-death",
    "dying-relu", "step-size", "ratio-decay", "residual-growth")

_BY_KEY = {s.key: s for s in SYMPTOMS}


@dataclass(frozen=True)
class Finding:
    """A row of the table that the records show, with the numbers that show it.

    Attributes:
        key: the row's :attr:`Symptom.key`.
        symptom: the row's symptom, cause and fix, as plain text (see :func:`plain_text`).
        evidence: what the records show, with numbers and parameter or module names.
        cause: see ``symptom``.
        fix: see ``symptom``.
        lessons: the MyST labels of the lessons to read.
        links: the web address of each of those lessons (:func:`lesson_url`).
    """

    key: str
    symptom: str
    evidence: str
    cause: str
    fix: str
    lessons: tuple[str, ...]
    links: tuple[str, ...]


class Findings(list):
    """What :func:`diagnose` returns: a list of :class:`Finding`, in the table's order.

    Attributes:
        checked: what the rules could read, in words (for the report of a healthy run).
        unseen: what the records could not show and why, each with how to make it visible.
    """

    def __init__(self, findings: Sequence[Finding] = (), *, checked: Sequence[str] = (),
                 unseen: Sequence[str] = ()):
        super().__init__(findings)
        self.checked = tuple(checked)
        self.unseen = tuple(unseen)


# -- the table ---------------------------------------------------------------------------

def lesson_path(label: str) -> str:
    """The source file of the lesson with MyST label ``label``, e.g. ``"lesson-init"``.

    Args:
        label: a key of :data:`LESSON_DOCS`.

    Returns:
        The path from the book's root, e.g. ``"lessons/06-initialization.md"``.
    """
    if label not in LESSON_DOCS:
        known = ", ".join(LESSON_DOCS)
        raise ValueError(f"unknown lesson label {label!r}; the lessons are labelled {known}")
    return LESSON_DOCS[label] + ".md"


def lesson_url(label: str, base: str = BOOK_URL) -> str:
    """The web address of a lesson's page, anchored at its label.

    Args:
        label: a key of :data:`LESSON_DOCS`.
        base: the site's address, ending in ``/`` (default :data:`BOOK_URL`); pass
            ``""`` for a link relative to the site's root.

    Returns:
        E.g. ``BOOK_URL + "lessons/06-initialization.html#lesson-init"``.
    """
    return f"{base}{lesson_path(label).removesuffix('.md')}.html#{label}"


def lesson_number(label: str) -> int:
    """The lesson's number, from its file name (``lessons/06-…`` is lesson 6).

    Args:
        label: a key of :data:`LESSON_DOCS`.

    Returns:
        The number, an int >= 1.
    """
    return int(lesson_path(label).split("/")[-1].split("-")[0])


def symptom_table_markdown(symptoms: Sequence[Symptom] = SYMPTOMS) -> str:
    """The table *Symptom, cause, fix* as MyST Markdown, one row per symptom (lesson 16).

    The cells keep their ``{term}`` roles and maths, and the lessons are ``{ref}`` roles,
    so the table must be parsed as MyST: in a notebook, display it with
    ``IPython.display.Markdown`` from a cell whose metadata sets
    ``mystnb: markdown_format: myst`` (MyST-NB's default for outputs is CommonMark).

    Args:
        symptoms: the rows (default :data:`SYMPTOMS`).

    Returns:
        The table, a header, a separator and one line per row, ending in a newline.
    """
    lines = ["| Symptom | Likely cause | Fix | Lessons |", "|---|---|---|---|"]
    for s in symptoms:
        refs = ", ".join(f"{{ref}}`{label}`" for label in s.lessons)
        lines.append(f"| {s.symptom} | {s.cause} | {s.fix} | {refs} |")
    return "\n".join(lines) + "\n"


_ROLE = re.compile(r"\{(?:term|ref)\}`([^`<]*?)\s*(?:<[^`]*>)?`")
_MATH = re.compile(r"\$([^$]*)\$")
def plain_text(myst: str) -> str:
    """A table cell without its markup, for a text report.

    Args:
        myst: a cell of :data:`SYMPTOMS` (``{term}`` roles, ``$...$`` maths).

    Returns:
        The text, e.g. ``"the slope factor σ' ≤ 1/4 per layer"``.
    """
    return _MATH.sub(lambda m: plain_math(m.group(1)), _ROLE.sub(r"\1", myst))


# -- reading the records -----------------------------------------------------------------

def module_kinds(model: nn.Module) -> dict[str, str]:
    """The kind of every activation a default Monitor watches in ``model``, for :func:`diagnose`.

    Args:
        model: the network the monitor watched.

    Returns:
        ``{activation name: kind}`` with kind ``"sigmoid"``, ``"tanh"`` or ``"relu"`` by the
        monitor's saturation rule (:func:`~gradflowkit.monitor_watch.saturation_kind`), and
        ``"other"`` for the rest (``LeakyReLU``, ``GELU``, ``SiLU``, ...), whose zero share is
        not a dead unit.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return kinds_of(
        {w.name: w.kind for w in watches(unwrap_compiled(model), DEFAULT_ACTIVATION_TYPES)})


def kinds_of(saturation_kinds: Mapping[str, str]) -> dict[str, str]:
    """Monitor saturation rules (``Monitor.activation_kinds``) as :func:`diagnose`'s kinds."""
    return {name: kind if kind in ("sigmoid", "tanh", "relu") else "other"
            for name, kind in saturation_kinds.items()}


def _finite(value: Any) -> bool:
    return (isinstance(value, Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else math.nan


def _check_records(records: object) -> list[dict]:
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise TypeError(f"records must be a list of monitor records (Monitor.records), got "
                        f"{type(records).__name__}")
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise TypeError(f"records[{i}] must be a dict as Monitor records them, got "
                            f"{type(r).__name__}")
        step = r.get("step")
        if isinstance(step, bool) or not isinstance(step, Integral):
            raise ValueError(f"records[{i}] needs an int 'step', got {step!r}; pass "
                             "Monitor.records")
        for kind in ("grad_norm", "update_ratio", "activation"):
            if not isinstance(r.get(kind, {}), Mapping):
                raise TypeError(f"records[{i}][{kind!r}] must be a dict, got "
                                f"{type(r[kind]).__name__}")
    return list(records)


def _check_others(nonfinite, nonfinite_steps, parameter_shapes, kinds):
    if nonfinite is not None and not (isinstance(nonfinite, Mapping)
                                      and isinstance(nonfinite.get("step"), Integral)):
        raise TypeError(f"nonfinite must be None or Monitor.nonfinite, a dict with an int "
                        f"'step', got {nonfinite!r}")
    if isinstance(nonfinite_steps, (str, bytes)) or not isinstance(nonfinite_steps, Sequence) \
            or not all(isinstance(s, Integral) and not isinstance(s, bool)
                       for s in nonfinite_steps):
        raise TypeError(f"nonfinite_steps must be a list of ints (Monitor.nonfinite_steps), "
                        f"got {nonfinite_steps!r}")
    if parameter_shapes is not None and not (
            isinstance(parameter_shapes, Mapping)
            and all(isinstance(s, Sequence) for s in parameter_shapes.values())):
        raise TypeError("parameter_shapes must be None or {name: shape} "
                        f"(Monitor.parameter_shapes), got {parameter_shapes!r}")
    if kinds is not None:
        if not isinstance(kinds, Mapping):
            raise TypeError(f"activation_kinds must be None or {{module: kind}} "
                            f"(see module_kinds(model)), got {kinds!r}")
        bad = {k: v for k, v in kinds.items() if v not in ACTIVATION_KINDS}
        if bad:
            raise ValueError(f"activation_kinds values must be one of {ACTIVATION_KINDS}; "
                             f"got {bad}")


def _first_bad_step(records, nonfinite, nonfinite_steps) -> int | None:
    """The first step with a non-finite gradient (alarm or record) or loss, or None."""
    steps = list(nonfinite_steps)
    if nonfinite is not None:
        steps.append(int(nonfinite["step"]))
    for r in records:
        loss = r.get("loss")
        if (any(not _finite(v) for v in r.get("grad_norm", {}).values())
                or (loss is not None and not _finite(loss))):
            steps.append(int(r["step"]))
            break
    return min(steps, default=None)


def _weight_names(records, parameter_shapes) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for name in r.get("grad_norm", {}):
            seen.setdefault(name, None)
        for name in r.get("update_ratio", {}):
            seen.setdefault(name, None)
    order = list(seen) if parameter_shapes is None else [n for n in parameter_shapes
                                                          if n in seen]
    return weight_matrix_names(order, parameter_shapes)


class _Reader:
    """The clean records, as the rules need them."""

    def __init__(self, records, weights, kinds):
        self.records = records
        self.weights = weights
        self.kinds = kinds
        self.rhos = {w: [r["update_ratio"][w] for r in records
                         if _finite(r.get("update_ratio", {}).get(w))] for w in weights}
        self.losses = [(r["step"], float(r["loss"])) for r in records
                       if _finite(r.get("loss"))]

    def kind(self, module: str) -> str | None:
        if self.kinds is None:
            return None
        return self.kinds.get(module.split("#")[0])

    def activation(self, record, stat: str) -> dict[str, float]:
        return {m: float(v[stat]) for m, v in record.get("activation", {}).items()
                if isinstance(v, Mapping) and _finite(v.get(stat))}

    def grad_ratio(self) -> tuple[float, int]:
        """Median over records of first/last weight gradient norm, and how many records."""
        first, last = self.weights[0], self.weights[-1]
        ratios = []
        for r in self.records:
            g = r.get("grad_norm", {})
            a, b = g.get(first), g.get(last)
            if _finite(a) and _finite(b) and a > 0 and b > 0:
                ratios.append(math.log10(a) - math.log10(b))
        return (10 ** _median(ratios) if ratios else math.nan), len(ratios)


def _rule_gradients(rd: _Reader, out: dict[str, list[str]]) -> None:
    ratio, n = rd.grad_ratio()
    if not n:
        return
    first, last = rd.weights[0], rd.weights[-1]
    text = (f"the gradient norm of {first} is {ratio:.1e} times that of {last} (median over "
            f"{n} records)")
    if ratio < VANISHING_RATIO:
        out.setdefault("vanishing", []).append(text)
    elif ratio > EXPLODING_RATIO:
        out.setdefault("exploding", []).append(text)


def _rule_rho_spread(rd: _Reader, out: dict[str, list[str]]) -> None:
    first, last = rd.weights[0], rd.weights[-1]
    if not (rd.rhos[first] and rd.rhos[last]):
        return
    a, b = _median(rd.rhos[first]), _median(rd.rhos[last])
    if a - b < -RHO_SPREAD:
        out.setdefault("vanishing", []).append(
            f"the update ratio log10 rho of {first} is {a:.1f}, of {last} {b:.1f} "
            f"(medians over {len(rd.rhos[first])} records)")


def _rule_step_size(rd: _Reader, out: dict[str, list[str]], adaptive: bool) -> None:
    medians = {w: _median(v) for w, v in rd.rhos.items() if v}
    if not medians:
        return
    top = max(medians, key=medians.get)
    # With momentum m, SGD's steady step is 1 / (1 - m) times its learning rate's.
    too_large = (RHO_TOO_LARGE_ADAPTIVE if adaptive
                 else RHO_TOO_LARGE + math.log10(1.0 / (1.0 - rd.momentum)))
    if medians[top] > too_large:
        why = (" (the limit for an adaptive optimizer)" if adaptive else
               f" ({RHO_TOO_LARGE:g} raised by momentum {rd.momentum:g})" if rd.momentum
               else "")
        out.setdefault("step-size", []).append(
            f"the update ratio log10 rho of {top} is {medians[top]:.1f} (median over "
            f"{len(rd.rhos[top])} records), above {too_large:.2g}{why}; the rule of thumb "
            f"is {RHO_RULE_OF_THUMB:g}")
    elif len(medians) == len(rd.weights) and medians[top] < RHO_TOO_SMALL:
        out.setdefault("step-size", []).append(
            f"the update ratio log10 rho of every weight matrix is below {RHO_TOO_SMALL:g} "
            f"(the largest: {top}, {medians[top]:.1f}); the rule of thumb is "
            f"{RHO_RULE_OF_THUMB:g}")


def _thirds(values: Sequence[float]) -> tuple[float, float, float]:
    third = len(values) // 3
    return (_median(values[:third]), _median(values[third:len(values) - third]),
            _median(values[len(values) - third:]))


def _rule_rho_trend(rd: _Reader, out: dict[str, list[str]]) -> None:
    # Each matrix against itself: the set of matrices with a ratio changes from record to
    # record (a step too small for float32 leaves none), so a median across them would
    # jump.
    trends = {w: _thirds(v) for w, v in rd.rhos.items() if len(v) >= TREND_RECORDS}
    if not trends:
        return
    falls = {w: a - c for w, (a, _, c) in trends.items()}
    steady = [w for w, (a, b, c) in trends.items() if a > b > c]
    fall = _median(list(falls.values()))
    if fall >= RHO_FALL and 2 * len(steady) > len(trends):
        w = max(steady, key=falls.get)
        a, b, c = trends[w]
        out.setdefault("ratio-decay", []).append(
            f"the update ratio log10 rho fell steadily in {len(steady)} of {len(trends)} "
            f"weight matrices, by a median of {fall:.1f} decades from the first to the last "
            f"third of their records; the most, {w}: {a:.1f}, {b:.1f}, {c:.1f}")


def _rule_saturation(rd: _Reader, out: dict[str, list[str]], vanishing: bool) -> None:
    shares: dict[str, list[float]] = {}
    for r in rd.records:
        for m, v in rd.activation(r, "saturation").items():
            if rd.kind(m) in ("sigmoid", "tanh"):
                shares.setdefault(m, []).append(v)
    if not shares:
        return
    medians = {m: _median(v) for m, v in shares.items()}
    top = max(medians, key=medians.get)
    over = [m for m, v in medians.items() if v > SATURATED_SHARE]
    if over:
        out.setdefault("saturation", []).append(
            f"{100 * medians[top]:.0f}% of the outputs of {top} ({rd.kind(top)}) are "
            f"saturated (median over {len(shares[top])} records); {len(over)} of "
            f"{len(medians)} sigmoid or tanh layers above {100 * SATURATED_SHARE:.0f}%")
    elif vanishing and any(rd.kind(m) == "sigmoid" for m in medians):
        out.setdefault("sigmoid-slope", []).append(
            f"the gradient vanishes while at most {100 * medians[top]:.2f}% of any sigmoid "
            f"or tanh layer's outputs are saturated ({top}, median over "
            f"{len(shares[top])} records)")


def _relu_shares(rd: _Reader, record) -> dict[str, float]:
    return {m: v for m, v in rd.activation(record, "saturation").items()
            if rd.kind(m) == "relu"}


def _rule_relu(rd: _Reader, out: dict[str, list[str]], alarm: bool) -> None:
    if not rd.records:
        return
    first, last = _relu_shares(rd, rd.records[0]), _relu_shares(rd, rd.records[-1])
    if not last:
        return
    step = rd.records[-1]["step"]
    top = max(last, key=last.get)
    if last[top] >= SILENT_ZERO_SHARE and not alarm:
        text = (f"{100 * last[top]:.0f}% of the outputs of {top} are zero in the last record "
                f"(step {step}), and no gradient was non-finite")
        tail = rd.losses[-max(len(rd.losses) // 3, 1):]
        if tail:
            lo, hi = min(v for _, v in tail), max(v for _, v in tail)
            text += (f"; the loss of the last {len(tail)} records lies between {lo:.3g} and "
                     f"{hi:.3g}")
        out.setdefault("silent-death", []).append(text)
    mean_last = float(np.mean(list(last.values())))
    mean_first = float(np.mean(list(first.values()))) if first else math.nan
    if mean_last > DYING_ZERO_SHARE and mean_last - mean_first >= ZERO_SHARE_RISE:
        medians = {w: _median(v) for w, v in rd.rhos.items() if v}
        text = (f"the mean zero share of the {len(last)} ReLU layers rose from "
                f"{mean_first:.2f} at step {rd.records[0]['step']} to {mean_last:.2f} at "
                f"step {step}")
        if medians:
            big = max(medians, key=medians.get)
            text += f"; the largest update ratio log10 rho is {medians[big]:.1f} ({big})"
        out.setdefault("dying-relu", []).append(text)


def _rule_stream(rd: _Reader, out: dict[str, list[str]]) -> None:
    for r in rd.records:
        stds = rd.activation(r, "std")
        if len(stds) >= 2:
            break
    else:
        return
    names = list(stds)
    a, b = stds[names[0]], stds[names[-1]]
    if a > 0 and b / a > STREAM_GROWTH:
        shown = ", ".join(f"{stds[m]:.2g}" for m in names)
        out.setdefault("residual-growth", []).append(
            f"the std of {names[-1]}'s output is {b / a:.0f} times that of {names[0]}'s in "
            f"the first record (step {r['step']}); in module order: {shown}")


def _rule_nonfinite(nonfinite, nonfinite_steps, bad_step, clean_losses,
                    out: dict[str, list[str]]) -> None:
    parts = []
    if nonfinite is not None:
        parts.append(f"first non-finite gradient at step {nonfinite['step']} "
                     f"({nonfinite.get('parameter', '?')}: {nonfinite.get('value', '?')})")
    if len(nonfinite_steps) > 1:
        parts.append(f"{len(nonfinite_steps)} steps with a non-finite gradient "
                     f"({min(nonfinite_steps)} to {max(nonfinite_steps)})")
    if bad_step is not None and not parts:
        parts.append(f"the record of step {bad_step} has a non-finite gradient norm or loss")
    if len(clean_losses) >= 2:
        (s0, l0) = clean_losses[0]
        s1, l1 = max(clean_losses, key=lambda sl: sl[1])
        if l0 > 0 and l1 / l0 > LOSS_GROWTH:
            when = "before it" if parts else "with no alarm yet"
            parts.append(f"the loss grew {l1 / l0:.0e}-fold, from {l0:.3g} at step {s0} to "
                         f"{l1:.3g} at step {s1}, {when}")
    if parts:
        out.setdefault("nonfinite", []).extend(parts)


def diagnose(records: Sequence[dict[str, Any]], *, nonfinite: dict[str, Any] | None = None,
             nonfinite_steps: Sequence[int] = (),
             parameter_shapes: Mapping[str, Sequence[int]] | None = None,
             activation_kinds: Mapping[str, str] | None = None,
             optimizer: str | None = None, momentum: float = 0.0) -> Findings:
    """Find the rows of :data:`SYMPTOMS` that a monitor's records show (lesson 16).

    Per-layer comparisons use the weight matrices (parameters with 2 or more dimensions)
    in parameter order, the input side first; the thresholds are this module's constants.
    Records from the first non-finite step on feed only the non-finite rule. Never raises
    on records a :class:`~gradflowkit.monitor.Monitor` wrote, empty or with NaNs.

    Args:
        records: :attr:`Monitor.records <gradflowkit.monitor.Monitor.records>`.
        nonfinite: ``Monitor.nonfinite`` (default None: no alarm).
        nonfinite_steps: ``Monitor.nonfinite_steps`` (default none).
        parameter_shapes: ``Monitor.parameter_shapes`` (default None: the parameters whose
            names end in ``weight`` count as weight matrices, and the report says so).
        activation_kinds: ``{module name: kind}`` from :func:`module_kinds`
            (default None: the saturation and ReLU rules cannot run, and the report says
            so; :func:`diagnose_monitor` passes it).
        optimizer: the optimizer's class name, e.g. ``"AdamW"`` (default None: taken as
            SGD-like). For one of :data:`ADAPTIVE_OPTIMIZERS` a step is too large above
            :data:`RHO_TOO_LARGE_ADAPTIVE` instead of :data:`RHO_TOO_LARGE`.
        momentum: SGD's momentum ``m`` in ``[0, 1)`` (default 0): its steady step is
            ``1 / (1 - m)`` times the learning rate's, so the step-size limit rises by
            ``log10(1 / (1 - m))``.

    Returns:
        :class:`Findings`: one :class:`Finding` per row found, in the table's order, with
        what was checked and what could not be seen.
    """
    records = _check_records(records)
    _check_others(nonfinite, nonfinite_steps, parameter_shapes, activation_kinds)
    nonfinite_steps = [int(s) for s in nonfinite_steps]
    bad_step = _first_bad_step(records, nonfinite, nonfinite_steps)
    clean = [r for r in records if bad_step is None or r["step"] < bad_step]
    weights = _weight_names(clean, parameter_shapes)
    if optimizer is not None and not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be the optimizer's class name (e.g. 'AdamW') or "
                        f"None, got {type(optimizer).__name__}; diagnose_monitor(mon) passes it")
    rd = _Reader(clean, weights, activation_kinds)
    if not (isinstance(momentum, Real) and not isinstance(momentum, bool)
            and 0.0 <= momentum < 1.0):
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    rd.adaptive = optimizer in ADAPTIVE_OPTIMIZERS
    rd.momentum = float(momentum)
    out: dict[str, list[str]] = {}
    _rule_nonfinite(nonfinite, nonfinite_steps, bad_step, rd.losses, out)
    checked, unseen = ["non-finite gradients and losses"], []
    if not records:
        unseen.append("no record: the monitor recorded no step; check that the optimizer "
                      "it hooks is the one that steps (or call mon.step())")
    else:
        if len(clean) < len(records):
            unseen.append(f"the {len(records) - len(clean)} records from step {bad_step} on "
                          "follow a non-finite gradient and are left out of the other rules")
        for part in (_loss_part, _gradient_part, _ratio_part, _activation_part):
            seen, blind = part(rd, out, parameter_shapes is not None, bad_step is not None)
            checked += seen
            unseen += blind
    findings = [_finding(key, "; ".join(out[key])) for key in CHECKED_KEYS if key in out]
    return Findings(findings, checked=checked, unseen=unseen)


# Each part runs the rules of one instrument; it returns what it checked and what it could
# not see (with how to make it visible).

def _loss_part(rd, out, _shapes, _alarm) -> tuple[list[str], list[str]]:
    if len(rd.losses) >= 2:
        return ["loss growth"], []
    return [], ["no loss was logged (or fewer than 2): the loss-growth rule needs them; "
                "call mon.log(loss) before opt.step()"]


def _gradient_part(rd, out, shapes, _alarm) -> tuple[list[str], list[str]]:
    blind = [] if shapes else ["parameter shapes unknown: the parameters named '*weight' "
                               "stand for the weight matrices; pass "
                               "parameter_shapes=mon.parameter_shapes"]
    if len(rd.weights) < 2:
        return [], blind + [f"{len(rd.weights)} weight matrix in the records: the "
                            "first/last gradient ratio needs two"]
    _rule_gradients(rd, out)
    _rule_rho_spread(rd, out)
    return [f"first/last gradient norm ({rd.weights[0]} vs {rd.weights[-1]})"], blind


def _ratio_part(rd, out, _shapes, _alarm) -> tuple[list[str], list[str]]:
    if not any(rd.rhos.values()):
        return [], ["no update ratio was recorded: the step-size and ratio-trend rules need "
                    "them; give the Monitor the optimizer (Monitor(model, opt))"]
    _rule_step_size(rd, out, rd.adaptive)
    _rule_rho_trend(rd, out)
    return ["update ratios (size, first/last spread, trend)"], []


def _activation_part(rd, out, _shapes, alarm) -> tuple[list[str], list[str]]:
    if not any(r.get("activation") for r in rd.records):
        return [], ["no activation was recorded: the saturation, ReLU and stream rules need "
                    "them; the monitor watches ReLU, LeakyReLU, Sigmoid, Tanh and GELU "
                    "modules: for others pass activation_types=(...) to the Monitor"]
    _rule_stream(rd, out)
    if rd.kinds is None:
        return ["activation std along the module order"], [
            "activation types unknown: the saturation and ReLU rules need them; pass "
            "activation_kinds=module_kinds(model), or call diagnose_monitor(mon)"]
    _rule_saturation(rd, out, "vanishing" in out)
    _rule_relu(rd, out, alarm)
    return ["activation std along the module order",
            "saturation of sigmoid and tanh layers, ReLU zero share"], []


def _finding(key: str, evidence: str) -> Finding:
    row = _BY_KEY[key]
    return Finding(key=key, symptom=plain_text(row.symptom), evidence=evidence,
                   cause=plain_text(row.cause), fix=plain_text(row.fix),
                   lessons=row.lessons, links=tuple(lesson_url(x) for x in row.lessons))


def diagnose_monitor(monitor: Any) -> Findings:
    """:func:`diagnose` with everything a :class:`~gradflowkit.monitor.Monitor` knows.

    Args:
        monitor: a Monitor after training (its records, alarm, parameter shapes, and the
            kinds of its model's activation modules); any object with ``records`` and
            those of the other attributes it has.

    Returns:
        See :func:`diagnose`.
    """
    if not hasattr(monitor, "records"):
        raise TypeError(f"monitor must be a gradflowkit Monitor, got "
                        f"{type(monitor).__name__}; for plain records call diagnose()")
    model = getattr(monitor, "model", None)
    kinds = getattr(monitor, "activation_kinds", None)
    if kinds is not None:
        kinds = kinds_of(kinds)
    elif isinstance(model, nn.Module):
        kinds = module_kinds(model)
    return diagnose(monitor.records, nonfinite=getattr(monitor, "nonfinite", None),
                    nonfinite_steps=getattr(monitor, "nonfinite_steps", ()),
                    parameter_shapes=getattr(monitor, "parameter_shapes", None),
                    activation_kinds=kinds,
                    optimizer=getattr(monitor, "optimizer_name", None),
                    momentum=getattr(monitor, "optimizer_momentum", 0.0))


def report(findings: Sequence[Finding], *, width: int = 88) -> str:
    """A short text report: one paragraph per finding, or what was checked if none.

    Args:
        findings: what :func:`diagnose` returned (a plain list of :class:`Finding` works;
            then what was checked and not seen is not known).
        width: the longest line, in characters (default 88); links are never broken.

    Returns:
        The report, paragraphs separated by blank lines, without a final newline.
    """
    if width < 40:
        raise ValueError(f"width must be >= 40, got {width}")

    def fill(text: str, first: str = "", rest: str = "   ") -> str:
        return textwrap.fill(text, width, initial_indent=first, subsequent_indent=rest,
                             break_long_words=False, break_on_hyphens=False)

    paragraphs = []
    for i, f in enumerate(findings, 1):
        if not isinstance(f, Finding):
            raise TypeError(f"findings must hold Finding objects, got {type(f).__name__}")
        reads = [f"{'read:' if j == 0 else '':5s} lesson {lesson_number(x)} <{u}>"
                 for j, (x, u) in enumerate(zip(f.lessons, f.links))]
        paragraphs.append("\n".join([
            fill(f"{i}. {f.symptom} [{f.key}]"), fill(f"evidence: {f.evidence}", "   "),
            fill(f"likely cause: {f.cause}", "   "), fill(f"fix: {f.fix}", "   "),
            *("   " + line for line in reads)]))
    checked = getattr(findings, "checked", ())
    if not paragraphs:
        what = "; ".join(checked) if checked else "the rules could not read the records"
        paragraphs.append(fill(f"no finding: checked {what}.", rest=""))
        rows = ", ".join(s.key for s in SYMPTOMS if s.key not in CHECKED_KEYS)
        paragraphs.append(fill(f"not checkable from a monitor's records: {rows}.", rest=""))
    unseen = getattr(findings, "unseen", ())
    if unseen:
        paragraphs.append("\n".join(fill(f"not seen: {u}", rest="   ") for u in unseen))
    return "\n\n".join(paragraphs)
