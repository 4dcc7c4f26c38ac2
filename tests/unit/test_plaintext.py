"""plaintext.plain_math: the one reading of TeX as text (explorer alt text, figure alt text,
diagnosis reports)."""

from gradflowkit import diagnosis, explorer
from gradflowkit.plaintext import plain_math


def test_operator_names_and_opening_delimiters():
    assert plain_math(r"$\operatorname{diag}(f')$") == "diag(f')"
    assert plain_math(r"$\lVert w\rVert$") == "‖w‖"
    assert plain_math(r"$\ln(\text{classes})$") == "ln(classes)"


def test_one_function_serves_explorers_and_reports():
    assert explorer.plain_math is plain_math is diagnosis.plain_math
