"""TeX math as plain text, for alt text and text reports.

One reading of math for the whole package: the explorers' alt text
(:mod:`~gradflowkit.explorer`), the build's figure alt text (``book/_ext``) and the text of
:func:`gradflowkit.diagnosis.report`.
"""

from __future__ import annotations

import re

_TEX_SYMBOLS = {
    "partial": "∂", "nabla": "∇", "sqrt": "√", "cdot": "·", "times": "×", "approx": "≈",
    "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "infty": "∞", "sum": "Σ", "prod": "Π",
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "eta": "η", "theta": "θ", "lambda": "λ", "mu": "μ", "rho": "ρ", "sigma": "σ", "tau": "τ",
    "phi": "φ", "psi": "ψ", "omega": "ω", "Delta": "Δ", "Sigma": "Σ", "Lambda": "Λ",
    "lVert": "‖", "rVert": "‖", "Vert": "‖", "lvert": "|", "rvert": "|", "mid": "|",
}
# Font, size and operator commands: their argument is kept, the command goes.
_DROPPED = frozenset({"left", "right", "big", "Big", "bigl", "bigr", "mathrm", "mathbf", "text",
                      "operatorname"})
_TEX_COMMAND = re.compile(r"\\([A-Za-z]+)|\\([,;:! ])|\\\|")
# An opening delimiter and the space after it, which TeX ignores: "\lVert w\rVert" -> "‖w‖".
_OPENING = re.compile(r"\\(lVert|lvert)\s*")


def plain_math(text: str) -> str:
    """TeX or matplotlib mathtext as plain text: ``$\\|\\partial L\\|$`` -> ``‖∂ L‖``.

    Dollar signs and braces go, ``\\|`` becomes ``‖``, known commands (Greek letters,
    ``\\partial``, ``\\sqrt``, …) their symbol, spacing commands a space, font, size and
    operator commands (``\\mathrm``, ``\\left``, ``\\operatorname``) nothing, and any other
    command its name (``\\ln`` -> ``ln``).
    """
    def command(match: re.Match) -> str:
        if match.group(0) == "\\|":
            return "‖"
        if match.group(2) is not None:
            return " " if match.group(2) != "!" else ""
        name = match.group(1)
        if name in _DROPPED:
            return ""
        return _TEX_SYMBOLS.get(name, name)

    out = _OPENING.sub(lambda m: _TEX_SYMBOLS[m.group(1)], text.replace("$", ""))
    out = _TEX_COMMAND.sub(command, out)
    out = out.replace("{", "").replace("}", "")
    return re.sub(r"\s+", " ", out).strip()
