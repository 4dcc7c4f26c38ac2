"""Execute the book's notebooks in parallel into the jupyter-cache that `jupyter-book build` reads.

    python tools/execute.py [--jobs N] [--export DIR] [--timings FILE] [--force]

Jupyter Book 1 (MyST-NB, `execute_notebooks: cache`) executes notebooks one after another.
This script does the same work two (or N) at a time and stores each result in the same cache,
under the same key, so that the book build afterwards finds every notebook cached and only
renders. The key is jupyter-cache's hash of the code cells and the kernelspec; the notebook is
read with MyST-NB's own reader and executed with the function MyST-NB itself calls
(`jupyter_cache.executors.utils.single_nb_execution`, cwd = the notebook's folder), so a cached
result is exactly what the book build would have produced.

The cache key covers only the notebook's code, not the package it imports: after a change to
src/gradflowkit/ (or to the pinned environment, or to benchmarks/results.json, which the
Performance page prints) a cached output may be stale. So a
fingerprint of those files is kept beside the cache, and when it changes every notebook is
executed again.

It fails (exit status 1) like the book build would: on any cell error and on any output to
stderr (the book treats stderr output as a warning, and warnings fail the build).

`--export DIR` writes every executed notebook, outputs included, to DIR/<path>.ipynb: nbval
then re-executes those files and compares its outputs with the book's (`make test-notebooks`).
`--timings FILE` writes {source: {"seconds": s, "cached": bool}} as JSON (`make bench`).
`--explorer-log DIR` makes each explorer of a notebook append its frame count and drawing time
to DIR/<notebook name>.jsonl (`gradflowkit.explorer.TIMING_LOG_ENV`; `make bench`).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution
from myst_nb.core.read import read_myst_markdown_notebook
from myst_parser.config.main import MdParserConfig

ROOT = Path(__file__).resolve().parents[1]
EXPLORER_LOG_ENV = "GRADFLOW_EXPLORER_LOG"  # = gradflowkit.explorer.TIMING_LOG_ENV


#: Environment variables that change what the notebooks compute: the book's seed switch and
#: the CPU kernels torch, MKL and oneDNN pick (tools/robust.py sets them).
OUTPUT_ENV = ("GRADFLOW_SEED", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
              "DNNL_MAX_CPU_ISA")


def code_fingerprint() -> str:
    """Hash of what every notebook's output depends on besides its own code."""
    # benchmarks/results.json: the Performance page prints it.
    files = sorted((ROOT / "src").rglob("*.py")) + [
        ROOT / name for name in ("requirements.txt", "constraints.txt",
                                 "benchmarks/results.json") if (ROOT / name).exists()]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    for name in OUTPUT_ENV:   # GRADFLOW_SEED=5 make book must not reuse seed 0's outputs
        digest.update(f"{name}={os.environ.get(name, '')}\0".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def expected_seconds() -> dict[str, float]:
    """Each notebook's execution time in the last recorded `make bench` (absolute paths).

    Notebooks are started longest first (then new ones, whose time is unknown, before
    all): with two workers that keeps one long lesson from running alone at the end.
    """
    results = ROOT / "benchmarks" / "results.json"
    if not results.exists():
        return {}
    lessons = json.loads(results.read_text(encoding="utf8")).get("lessons", {})
    return {str(ROOT / name): float(seconds) for name, seconds in lessons.items()}


def book_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))


def toc_sources(root: Path = ROOT) -> list[Path]:
    """The .md files listed in root/_toc.yml that are notebooks (they have jupytext front
    matter), in ToC order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf8"))
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    sources = [root / f"{name}.md" for name in files]
    return [p for p in sources if p.exists() and "\njupytext:" in p.read_text(encoding="utf8")]


def reader_config(config: dict) -> MdParserConfig:
    """The MyST parser settings of _config.yml, as MyST-NB's reader gets them in the build."""
    return MdParserConfig(
        enable_extensions=set(config.get("parse", {}).get("myst_enable_extensions", [])))


def run_in_kernel(nb: nbformat.NotebookNode, path: str | Path, timeout: int):
    """Execute ``nb`` in place in a fresh kernel, as the book build does: the notebook's own
    folder as working directory, ``PYTHONHASHSEED=0`` (the kernel inherits this process's
    environment), no cell error allowed. Returns jupyter-cache's execution result."""
    os.environ["PYTHONHASHSEED"] = "0"  # as in `make book`
    return single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                               allow_errors=False, meta_override=True)


def read_notebook(path: Path, md_config: MdParserConfig) -> nbformat.NotebookNode:
    """Read a MyST Markdown notebook exactly as MyST-NB's reader does in the book build."""
    return read_myst_markdown_notebook(
        path.read_text(encoding="utf8"), config=md_config, add_source_map=True, path=str(path)
    )


def _execute(job: tuple[str, str, int, str | None]) -> tuple[str, str, float, str | None]:
    """Run in a worker process: execute one notebook, return it as JSON with its run time."""
    path, text, timeout, explorer_log = job
    nb = nbformat.reads(text, as_version=4)
    if explorer_log:   # inherited by the kernel, which this worker process starts
        os.environ[EXPLORER_LOG_ENV] = explorer_log
    result = run_in_kernel(nb, path, timeout)
    return path, nbformat.writes(nb), result.time, result.exc_string


def stderr_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """Text a notebook's cells wrote to stderr (the book build fails on any of it)."""
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                found.append(f"code cell {index}: {output.get('text', '')[:500]}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="notebooks executed at the same time (default: number of CPUs)")
    parser.add_argument("--export", type=Path, help="write executed notebooks under this folder")
    parser.add_argument("--timings", type=Path, help="write execution times as JSON")
    parser.add_argument("--explorer-log", type=Path,
                        help="folder for per-notebook explorer drawing times (JSON lines)")
    parser.add_argument("--force", action="store_true",
                        help="execute even notebooks that the cache already holds")
    parser.add_argument("sources", nargs="*", type=Path,
                        help="notebooks to execute (default: every notebook in _toc.yml)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")

    config = book_config()
    md_config = reader_config(config)
    timeout = int(config["execute"]["timeout"])
    cache_dir = ROOT / config["execute"]["cache"]
    cache = get_cache(str(cache_dir))
    sources = [p.resolve() for p in args.sources] or toc_sources()
    fingerprint_file = cache_dir / "gradflowkit-fingerprint"
    fingerprint = code_fingerprint()
    recorded = fingerprint_file.read_text() if fingerprint_file.exists() else None
    if recorded != fingerprint and not args.force:
        # No fingerprint (a new cache, or one from before this check) counts as changed.
        print("src/gradflowkit, the pins, benchmarks/results.json or GRADFLOW_SEED (or the "
              "CPU-kernel variables) differ from what the cached runs used: executing every "
              "notebook", flush=True)
        args.force = True

    if args.explorer_log:
        args.explorer_log.mkdir(parents=True, exist_ok=True)
    notebooks, todo, timings = {}, [], {}
    for path in sources:
        nb = read_notebook(path, md_config)
        record = None
        if not args.force:
            try:
                record = cache.match_cache_notebook(nb)
            except KeyError:
                pass
        if record is None:
            log = None
            if args.explorer_log:
                log = str((args.explorer_log / f"{path.stem}.jsonl").resolve())
            todo.append((str(path), nbformat.writes(nb), timeout, log))
        else:
            _, notebooks[path] = cache.merge_match_into_notebook(nb)
            timings[path] = {"seconds": record.data.get("execution_seconds"), "cached": True}

    todo.sort(key=lambda job: -expected_seconds().get(job[0], math.inf))
    workers = min(args.jobs, max(len(todo), 1))
    print(f"{len(sources) - len(todo)} notebooks cached, {len(todo)} to execute "
          f"({workers} at a time)", flush=True)
    failed = []
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for path, text, seconds, error in pool.map(_execute, todo):
            path = Path(path)
            nb = nbformat.reads(text, as_version=4)
            name = path.relative_to(ROOT)
            problems = [error] if error else stderr_outputs(nb)
            if problems:
                failed.append(name)
                print(f"FAILED {name} ({seconds:.1f} s):\n" + "\n".join(problems), flush=True)
                continue
            cache.cache_notebook_bundle(
                CacheBundleIn(nb, str(path), data={"execution_seconds": seconds}),
                check_validity=False, overwrite=True,
            )
            notebooks[path] = nb
            timings[path] = {"seconds": seconds, "cached": False}
            print(f"executed {name} in {seconds:.1f} s", flush=True)
    if todo:
        print(f"wall time {time.perf_counter() - start:.1f} s", flush=True)

    if args.export:
        for path, nb in notebooks.items():
            out = args.export / path.relative_to(ROOT).with_suffix(".ipynb")
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out)
    if args.timings:
        args.timings.parent.mkdir(parents=True, exist_ok=True)
        args.timings.write_text(json.dumps(
            {str(p.relative_to(ROOT)): t for p, t in sorted(timings.items())}, indent=2) + "\n")
    if not failed and not args.sources:
        fingerprint_file.write_text(fingerprint)  # every notebook now ran with this code
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(map(str, failed))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
