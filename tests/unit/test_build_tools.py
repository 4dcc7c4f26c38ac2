"""Tests of the build tools: tools/execute.py (parallel execution into the book's cache) and
benchmarks/bench.py (`make bench`). Oracles: _toc.yml itself, hand-made notebooks, and the
recorded results file that README.md's table must match."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


execute = _load("execute", ROOT / "tools" / "execute.py")
robust = _load("robust", ROOT / "tools" / "robust.py")
bench = _load("bench", ROOT / "benchmarks" / "bench.py")
peak_memory = _load("peak_memory", ROOT / "tools" / "peak_memory.py")

MYST_HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def test_toc_sources_are_the_toc_files_that_are_notebooks():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = [toc["root"]] + [c["file"] for p in toc["parts"] for c in p["chapters"]]
    sources = execute.toc_sources()
    names = [str(p.relative_to(ROOT).with_suffix("")) for p in sources]
    assert names == [n for n in listed if n in names]          # toc order kept
    assert "book/intro" in names
    assert all(n.startswith("lessons/") for n in names if n not in
               ("book/intro", "book/roadmap", "book/performance",
                "book/monitor-in-your-loop"))
    assert "book/glossary" not in names                       # plain Markdown page
    lessons_in_toc = [n for n in listed if n.startswith("lessons/")]
    assert [n for n in names if n.startswith("lessons/")] == lessons_in_toc


def test_read_notebook_splits_code_cells_like_myst_nb(tmp_path):
    md = tmp_path / "x.md"
    md.write_text(MYST_HEADER + "# T\n\ntext\n\n```{code-cell} ipython3\n---\ntags: [hide-input]"
                  "\n---\nx = 1\n```\n\nmore\n\n```{code-cell} ipython3\nprint(x)\n```\n")
    nb = execute.read_notebook(md, execute.MdParserConfig())
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.source for c in code] == ["x = 1", "print(x)"]
    assert code[0].metadata["tags"] == ["hide-input"]
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_stderr_outputs_finds_only_stderr():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="fine\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="UserWarning: bad\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("m"), cell]
    found = execute.stderr_outputs(nb)
    assert len(found) == 1 and "code cell 1" in found[0] and "UserWarning" in found[0]


def test_explorer_log_variable_matches_the_package():
    from gradflowkit.explorer import TIMING_LOG_ENV
    assert execute.EXPLORER_LOG_ENV == TIMING_LOG_ENV


def test_execute_rejects_zero_jobs(capsys):
    with pytest.raises(SystemExit):
        execute.main(["--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_import_only_notebook_keeps_exactly_the_imports(tmp_path):
    md = tmp_path / "lesson.md"
    md.write_text(MYST_HEADER + "```{code-cell} ipython3\nimport math\nfrom os import (\n"
                  "    path,\n    sep,\n)\nx = math.pi\n```\n\n```{code-cell} ipython3\n"
                  "import json as j\ndef f():\n    import re\n```\n")
    floor = bench.import_only_notebook(md)
    assert len(floor.cells) == 1
    # Top-level imports only, in order; the import inside f() runs only if f is called.
    assert floor.cells[0].source.splitlines() == ["import math", "from os import path, sep",
                                                  "import json as j"]
    assert floor.metadata["kernelspec"]["name"] == "python3"


def _fake_results(**over) -> dict:
    r = {"date": "2026-01-01 00:00 UTC", "commit": "abc1234", "jobs": 2,
         "machine": {"cpus": 2, "cpu": "Test CPU"},
         "lessons": {"lessons/01-a.md": 10.0, "lessons/02-b.md": 21.0},
         "book_cold_s": 90.0, "floor_s": 30.0, "book_cold_over_floor": 3.0,
         "book_cached_s": 19.0,
         "monitor_overhead": {"every_step": 1.2, "every_10_steps": 1.01}}
    r.update(over)
    return r


def test_verdicts_compare_with_the_targets():
    rows = {q: (m, ok) for q, m, _, ok in bench.verdicts(_fake_results())}
    assert rows["book_cold_s / floor_s"] == ("90.0 / 30.0 = 3.00", True)   # boundary: ≤ 3
    assert rows["book_cached_s"] == ("19.0", True)
    assert rows["slowest notebook (s)"] == ("21.0 (02-b)", False)
    assert rows["monitor, every step (GPT-2-style, ResNet-18)"][1] is False
    assert rows["monitor, every 10 steps (the same)"][1] is True
    table = bench.markdown_table(_fake_results())
    assert table.count("**no**") == 2 and "on 2 CPUs (Test CPU)" in table


def test_readme_table_is_the_recorded_results():
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(bench.README_START) + len(bench.README_START):
                   readme.index(bench.README_END)]
    assert block.strip() == bench.markdown_table(results).strip()


def test_code_fingerprint_follows_the_package_and_the_pins(tmp_path, monkeypatch):
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    module = tmp_path / "src" / "pkg" / "m.py"
    module.write_text("x = 1\n")
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\n")
    (tmp_path / "constraints.txt").write_text("numpy==2.4.6\n")
    monkeypatch.setattr(execute, "ROOT", tmp_path)
    first = execute.code_fingerprint()
    assert execute.code_fingerprint() == first                # deterministic
    module.write_text("x = 2\n")
    second = execute.code_fingerprint()
    assert second != first                                    # package code counts
    (tmp_path / "constraints.txt").write_text("numpy==2.4.7\n")
    third = execute.code_fingerprint()
    assert third != second                                    # so do the pins
    monkeypatch.setenv("GRADFLOW_SEED", "5")
    assert execute.code_fingerprint() != third                # and the seed switch
    monkeypatch.delenv("GRADFLOW_SEED")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert execute.code_fingerprint() != third                # and the CPU kernels
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert execute.code_fingerprint() == third


def test_expected_seconds_come_from_the_recorded_bench(tmp_path, monkeypatch):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "results.json").write_text(json.dumps(
        {"lessons": {"lessons/01-a.md": 6.5, "book/intro.md": 9.0}}))
    monkeypatch.setattr(execute, "ROOT", tmp_path)
    execute.expected_seconds.cache_clear()
    try:
        assert execute.expected_seconds() == {str(tmp_path / "lessons/01-a.md"): 6.5,
                                              str(tmp_path / "book/intro.md"): 9.0}
        (tmp_path / "benchmarks" / "results.json").unlink()
        execute.expected_seconds.cache_clear()
        assert execute.expected_seconds() == {}
    finally:
        execute.expected_seconds.cache_clear()


# tools/robust.py (`make test-robust`, `make robustness`).

def test_variant_environments(monkeypatch):
    assert robust.variant_env("seed=7") == {"GRADFLOW_SEED": "7"}
    assert robust.variant_env("cpu=default")["ATEN_CPU_CAPABILITY"] == "default"
    monkeypatch.setattr(robust, "cpu_flags", lambda: {"sse4_2", "avx2"})
    assert robust.variant_env("cpu=avx2") == {"ATEN_CPU_CAPABILITY": "avx2",
                                              "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                                              "DNNL_MAX_CPU_ISA": "AVX2"}
    monkeypatch.setattr(robust, "cpu_flags", lambda: {"sse4_2"})
    assert robust.variant_env("cpu=avx2") is None            # skipped, and said so
    for bad in ("seed=x", "cpu=neon", "fast", "seed=1+fast", "seed=1+cpu=avx2+"):
        with pytest.raises(ValueError, match="unknown variant"):
            robust.variant_env(bad)


def test_combined_variants_join_their_environments(monkeypatch):
    monkeypatch.setattr(robust, "cpu_flags", lambda: {"sse4_2", "avx2"})
    both = robust.variant_env("seed=3+cpu=avx2")
    assert both == {"GRADFLOW_SEED": "3", **robust.variant_env("cpu=avx2")}
    assert robust.variant_env("cpu=default+seed=1") == {
        "GRADFLOW_SEED": "1", **robust.variant_env("cpu=default")}
    for twice in ("seed=1+seed=2", "cpu=default+cpu=avx2"):
        with pytest.raises(ValueError, match="twice"):
            robust.variant_env(twice)
    # A bad part fails even where another part would make the variant skipped.
    monkeypatch.setattr(robust, "cpu_flags", lambda: {"sse4_2"})
    assert robust.variant_env("seed=3+cpu=avx2") is None
    with pytest.raises(ValueError, match="unknown variant"):
        robust.variant_env("cpu=avx2+seed=x")


def test_seed_pair_needs_the_same_kernels_and_two_seeds(monkeypatch):
    monkeypatch.setattr(robust, "cpu_flags", lambda: {"sse4_2", "avx2"})
    assert robust.seed_pair(list(robust.GATE_VARIANTS)) == ("seed=1+cpu=default",
                                                            "seed=2+cpu=default")
    assert robust.seed_pair(["seed=1", "cpu=default", "seed=2"]) == ("seed=1", "seed=2")
    # Other kernels would change printed digits by themselves: not a pair.
    assert robust.seed_pair(["seed=1+cpu=default", "seed=2+cpu=avx2"]) is None
    assert robust.seed_pair(["seed=1", "seed=1"]) is None
    assert robust.seed_pair(["seed=1", "cpu=default", "cpu=avx2"]) is None
    # A variant this CPU skips is not half of a pair.
    monkeypatch.setattr(robust, "cpu_flags", lambda: {"sse4_2"})
    assert robust.seed_pair(["seed=1+cpu=avx2", "seed=2+cpu=avx2"]) is None


def _nb(*outputs):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = list(outputs)
    nb.cells = [cell, nbformat.v4.new_markdown_cell("text")]
    return nb


def test_printed_text_has_streams_and_plain_results_but_not_images():
    nb = _nb(nbformat.v4.new_output("stream", name="stdout", text="loss 0.25\n"),
             nbformat.v4.new_output("display_data", data={"text/plain": "0.125",
                                                          "image/png": "AAAA"}),
             nbformat.v4.new_output("display_data", data={"image/png": "BBBB"}))
    assert robust.printed_text(nb) == "loss 0.25\n\n0.125"


def test_error_summary_keeps_the_failing_line_and_the_exception():
    text = ("Traceback\n\x1b[31m-----\x1b[0m\nCell In[3], line 2\n      1 x = 1\n"
            "----> 2 assert x > 2    # claim\n\nAssertionError: \n")
    summary = robust.error_summary(text)
    assert summary.startswith("----> 2 assert x > 2") and "AssertionError" in summary
    assert "\x1b" not in summary


def test_unwired_names_seeded_notebooks_whose_text_did_not_change(tmp_path, monkeypatch):
    monkeypatch.setattr(robust, "ROOT", tmp_path)
    seeded, fixed, other = (tmp_path / f"{n}.md" for n in ("seeded", "fixed", "other"))
    seeded.write_text("rng = seed_all('lesson-1')\n")
    fixed.write_text("x = 1\n")
    other.write_text("seeds = ensemble_seeds(8, 'x')\n")
    results = [dict(variant=v, notebook=str(p), ok=True, text=t)
               for p, texts in ((seeded, ("a", "a")), (fixed, ("b", "b")), (other, ("c", "d")))
               for v, t in zip(("seed=1+cpu=default", "seed=2+cpu=default"), texts)]
    pair = ("seed=1+cpu=default", "seed=2+cpu=default")
    assert robust.unwired(results, [seeded, fixed, other], pair) == ["seeded.md"]
    # Only the pair's texts are compared: another pair finds nothing to compare.
    assert robust.unwired(results, [seeded, fixed, other], ("seed=1", "seed=2")) == []
    assert robust.draws_random_numbers(other) and not robust.draws_random_numbers(fixed)


def test_pass_table_counts_and_names_failures(tmp_path, monkeypatch):
    monkeypatch.setattr(robust, "ROOT", tmp_path)
    nb = tmp_path / "lessons" / "07-x.md"
    results = [dict(variant="seed=0", notebook=str(nb), ok=True, seconds=3.0),
               dict(variant="seed=1", notebook=str(nb), ok=False, seconds=4.5)]
    (line,) = robust.pass_table(results, [nb], ["seed=0", "seed=1"])
    assert "lessons/07-x.md" in line and "1/2" in line and "failed: seed=1" in line
    assert "4.5 s" in line


@pytest.mark.parametrize("keep", [False, True])
def test_report_keeps_printed_text_only_when_asked(tmp_path, monkeypatch, keep):
    monkeypatch.setattr(robust, "ROOT", tmp_path)
    nb = tmp_path / "lessons" / "07-x.md"
    fake = [dict(variant=f"seed={k}", notebook=str(nb), ok=True, seconds=1.0, problems=[],
                 text=f"printed {k}") for k in range(2)]
    monkeypatch.setattr(robust, "run_all", lambda variants, sources, jobs: fake)
    report = tmp_path / "report.json"
    argv = ["--seeds", "2", "--report", str(report), str(nb)] + (["--keep-text"] * keep)
    assert robust.main(argv) == 0
    rows = json.loads(report.read_text())["results"]
    assert [r.get("text") for r in rows] == (["printed 0", "printed 1"] if keep else [None] * 2)


def test_gate_fails_an_unwired_notebook_and_says_when_it_cannot_check(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setattr(robust, "ROOT", tmp_path)
    monkeypatch.setattr(robust, "cpu_flags", lambda: {"sse4_2", "avx2"})
    nb = tmp_path / "lessons" / "07-x.md"
    nb.parent.mkdir()
    nb.write_text("rng = seed_all('lesson-7')\n")

    def fake_run(variants, sources, jobs):
        return [dict(variant=v, notebook=str(nb), ok=True, seconds=1.0, problems=[],
                     text="same digits") for v in variants]

    monkeypatch.setattr(robust, "run_all", fake_run)
    assert robust.main([str(nb)]) == 1                       # the gate's own variants
    err = capsys.readouterr().err
    assert "SEED SWITCH NOT WIRED: lessons/07-x.md" in err and "seed=2+cpu=default" in err
    # Seeds under different kernels: the text may differ by rounding, so nothing is checked,
    # and the tool says so.
    assert robust.main(["--variants", "seed=1+cpu=default,seed=2+cpu=avx2", str(nb)]) == 0
    assert "seed switch NOT CHECKED" in capsys.readouterr().err


def test_peak_memory_probe_reports_this_process_peak():
    """The probe cell's code, run here, prints this process's ru_maxrss (an oracle: resource)."""
    import contextlib
    import io
    import resource

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(peak_memory.PROBE, {})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(peak_memory.PROBE)])
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=out.getvalue())]
    peak = peak_memory.peak_from_output(nb)
    now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert 0 < peak <= now


def test_peak_memory_says_when_the_probe_did_not_run():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    with pytest.raises(RuntimeError, match="probe cell printed nothing"):
        peak_memory.peak_from_output(nb)


def test_peak_memory_rejects_zero_jobs(capsys):
    with pytest.raises(SystemExit):
        peak_memory.main(["--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err
