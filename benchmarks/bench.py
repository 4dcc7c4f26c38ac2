"""`make bench`: how long the book takes to execute and build, against what it cannot avoid.

    python benchmarks/bench.py [--jobs N] [--save]

Measured in one run, in a copy of the working tree under _build/bench/tree (the working tree's
own _build/ is not touched):

- ``book_cold_s``: `make book` from an empty _build/ (no execution cache, no site), with the
  environment already installed (installing measures the package index, not the book);
- ``lessons``: each notebook's execution seconds in that cold build (JOBS at a time);
- ``explorers_s``: seconds each notebook spent drawing explorer frames (and how many);
- ``book_cached_s``: `make book` again with nothing changed (every notebook comes from the
  cache; Sphinx still re-reads and re-writes every page, because the build runs with --all so
  that no warning is hidden by an incremental build);
- ``floor_s``: the same number of kernel starts, each running only the import statements of
  its notebook, executed the same way (same executor, JOBS at a time): the part of
  ``book_cold_s`` no lesson can avoid. ``floor_serial_s`` is the sum of their times;
- ``monitor_overhead``: median training-step time with / without the monitor
  (benchmarks/monitor_overhead.py).

Targets (issue 5): book_cold_s / floor_s <= 3, book_cached_s <= 20, no lesson over 20 s.
Writes _build/bench.json and prints a table. ``--save`` also writes benchmarks/results.json
(read by the book's Performance page) and the table in README.md between its bench markers.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import execute  # noqa: E402  (tools/execute.py: the executor `make book` uses)

BENCH_DIR = ROOT / "_build" / "bench"
RESULTS = ROOT / "benchmarks" / "results.json"
README = ROOT / "README.md"
README_START = "<!-- bench:start (written by `make bench ARGS=--save`) -->"
README_END = "<!-- bench:end -->"
DEPS_FILES = ("requirements.txt", "constraints.txt", "pyproject.toml")  # as in the Makefile
TARGETS = {"book_cold_over_floor": 3.0, "book_cached_s": 20.0, "lesson_s": 20.0,
           "monitor_every_step": 1.10, "monitor_every_10_steps": 1.02}


def copy_tree(dest: Path) -> None:
    """Copy the files git would see (tracked and untracked, not ignored) to ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def check_environment_is_current() -> None:
    """Stop unless this environment holds the pins of the working tree.

    `make -C <copy> book` must find the install stamp; otherwise it would run pip in the copy,
    whose `-e .` would point the shared environment's gradflowkit at the copy.
    """
    digest = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in DEPS_FILES)).hexdigest()
    stamp = Path(sys.prefix) / f".installed-{digest[:16]}"
    if not stamp.exists():
        sys.exit(f"{Path(sys.prefix)} is not installed from the current {', '.join(DEPS_FILES)} "
                 f"(no {stamp.name}); run `make venv` first, then `make bench`.")


def make_book(tree: Path, jobs: int, explorer_log: Path | None = None) -> float:
    """Run `make book` in ``tree`` with this environment; return its wall time in seconds."""
    venv = Path(sys.prefix)
    cmd = ["make", "-C", str(tree), "book", f"VENV={venv}", f"JOBS={jobs}"]
    if explorer_log:
        cmd.append(f"EXECUTE_ARGS=--explorer-log {explorer_log}")
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))  # the copy's gradflowkit
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"`make book` failed in {tree}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def import_only_notebook(source: Path) -> nbformat.NotebookNode:
    """A notebook with the kernelspec of ``source`` and one cell: its import statements."""
    nb = execute.read_notebook(source, execute.MdParserConfig())
    imports = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics; the lessons have none, but do not fail on them
            continue
        imports += [ast.unparse(node) for node in tree.body
                    if isinstance(node, (ast.Import, ast.ImportFrom))]
    floor = nbformat.v4.new_notebook(metadata={"kernelspec": nb.metadata["kernelspec"]})
    floor.cells.append(nbformat.v4.new_code_cell("\n".join(imports)))
    return floor


def floor_run(tree: Path, sources: list[Path], jobs: int) -> tuple[float, dict[str, float]]:
    """Execute the import-only notebooks like the book's; return wall time and each time."""
    jobs_in = [(str(tree / src.relative_to(ROOT)), nbformat.writes(import_only_notebook(src)),
                120, None) for src in sources]
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree / "src")  # the copy's gradflowkit, for the kernels
    try:
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(execute._execute, jobs_in))
        wall = time.perf_counter() - start
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    per = {}
    for path, _, seconds, error in results:
        if error:
            sys.exit(f"import-only notebook of {path} failed:\n{error}")
        per[str(Path(path).relative_to(tree))] = seconds
    return wall, per


def explorer_times(log_dir: Path, sources: list[Path]) -> dict[str, dict]:
    out = {}
    for src in sources:
        log = log_dir / f"{src.stem}.jsonl"
        lines = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        out[str(src.relative_to(ROOT))] = {"seconds": sum(x["seconds"] for x in lines),
                                           "frames": sum(x["frames"] for x in lines)}
    return out


def monitor_overhead() -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "monitor_overhead.py")],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"benchmarks/monitor_overhead.py failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import torch
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}


def run(jobs: int) -> dict:
    check_environment_is_current()
    tree = BENCH_DIR / "tree"
    print(f"copying the working tree to {tree.relative_to(ROOT)}", flush=True)
    copy_tree(tree)
    sources = execute.toc_sources()

    log_dir = BENCH_DIR / "explorers"
    shutil.rmtree(log_dir, ignore_errors=True)
    print(f"make book from an empty _build/ ({jobs} notebooks at a time) ...", flush=True)
    cold = make_book(tree, jobs, explorer_log=log_dir)
    timings = json.loads((tree / "_build" / "execution.json").read_text())
    if any(t["cached"] for t in timings.values()):
        sys.exit("the cold build found cached notebooks; _build/ of the copy was not empty")
    print(f"  {cold:.1f} s; make book again, nothing changed ...", flush=True)
    cached = make_book(tree, jobs)
    print(f"  {cached:.1f} s; import-only notebooks (floor) ...", flush=True)
    floor, floor_each = floor_run(tree, sources, jobs)
    print(f"  {floor:.1f} s; monitor overhead ...", flush=True)
    overhead = monitor_overhead()

    lessons = {name: round(t["seconds"], 2) for name, t in timings.items()}
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip(),
        "machine": machine(),
        "jobs": jobs,
        "lessons": lessons,
        "lessons_sum_s": round(sum(lessons.values()), 1),
        "explorers_s": {k: {"seconds": round(v["seconds"], 2), "frames": v["frames"]}
                        for k, v in explorer_times(log_dir, sources).items()},
        "floor_s": round(floor, 1),
        "floor_serial_s": round(sum(floor_each.values()), 1),
        "floor_each_s": {k: round(v, 2) for k, v in floor_each.items()},
        "book_cold_s": round(cold, 1),
        "book_cached_s": round(cached, 1),
        "book_cold_over_floor": round(cold / floor, 2),
        "monitor_overhead": overhead,
        "targets": TARGETS,
    }


def verdicts(r: dict) -> list[tuple[str, str, str, bool]]:
    """(quantity, measured, target, met) rows."""
    slowest = max(r["lessons"], key=r["lessons"].get)
    mo = r["monitor_overhead"]
    return [
        ("book_cold_s / floor_s", f"{r['book_cold_s']:.1f} / {r['floor_s']:.1f} = "
         f"{r['book_cold_over_floor']:.2f}", "≤ 3", r["book_cold_over_floor"] <= 3.0),
        ("book_cached_s", f"{r['book_cached_s']:.1f}", "≤ 20", r["book_cached_s"] <= 20.0),
        ("slowest notebook (s)", f"{r['lessons'][slowest]:.1f} ({Path(slowest).stem})", "≤ 20",
         r["lessons"][slowest] <= 20.0),
        ("monitor, every step (GPT-2-style, ResNet-18)", f"{mo['every_step']:.3f}", "≤ 1.10",
         mo["every_step"] <= 1.10),
        ("monitor, every 10 steps (the same)", f"{mo['every_10_steps']:.3f}", "≤ 1.02",
         mo["every_10_steps"] <= 1.02),
    ]


def markdown_table(r: dict) -> str:
    rows = ["| quantity | measured | target | met |", "|---|---|---|---|"]
    rows += [f"| {q} | {m} | {t} | {'yes' if ok else '**no**'} |" for q, m, t, ok in verdicts(r)]
    m = r["machine"]
    rows.append("")
    rows.append(f"Measured {r['date']} at commit {r['commit']} on {m['cpus']} CPUs ({m['cpu']}), "
                f"{r['jobs']} notebooks at a time; details in `benchmarks/results.json`.")
    return "\n".join(rows)


def text_report(r: dict) -> str:
    lines = [f"{'notebook':44} {'exec s':>7} {'floor s':>8} {'explorer s':>11} {'frames':>7}"]
    for name, seconds in r["lessons"].items():
        e = r["explorers_s"].get(name, {"seconds": 0.0, "frames": 0})
        lines.append(f"{name:44} {seconds:7.1f} {r['floor_each_s'].get(name, float('nan')):8.1f} "
                     f"{e['seconds']:11.1f} {e['frames']:7d}")
    lines.append(f"{'sum':44} {r['lessons_sum_s']:7.1f} {r['floor_serial_s']:8.1f}")
    lines.append("")
    for q, m, t, ok in verdicts(r):
        lines.append(f"{q:26} {m:32} target {t:7} {'met' if ok else 'MISSED'}")
    return "\n".join(lines)


def save(r: dict) -> None:
    RESULTS.write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    text = README.read_text(encoding="utf8")
    start, end = text.index(README_START), text.index(README_END)
    README.write_text(text[:start + len(README_START)] + "\n" + markdown_table(r) + "\n"
                      + text[end:], encoding="utf8")
    print(f"wrote {RESULTS.relative_to(ROOT)} and the table in README.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--save", action="store_true",
                        help="also write benchmarks/results.json and README.md's table")
    args = parser.parse_args()
    result = run(args.jobs)
    out = ROOT / "_build" / "bench.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    print(text_report(result))
    print(f"wrote {out.relative_to(ROOT)}")
    if args.save:
        save(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
