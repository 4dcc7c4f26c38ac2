"""Peak memory of every notebook of the book: how much RAM a reader's kernel needs.

    python tools/peak_memory.py [--jobs N] [--report _build/memory.json] [NOTEBOOK.md ...]

``make memory`` runs it (not part of ``make test``: it is a measurement). Each notebook runs
in a fresh kernel, as in the book build, with one extra cell appended that reads the
kernel's own peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``, the high-water
mark of the process, in KiB on Linux). The lessons start no subprocesses, so the kernel's
peak is what the lesson needs; a JupyterLab server adds its own (about 75 MiB at start).
Binder gives a session about 2 GB: the README quotes the table this prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute import (ROOT, book_config, read_notebook, reader_config,  # noqa: E402
                     run_in_kernel, toc_sources)

#: Appended to every notebook: prints the kernel's peak RSS as one JSON line.
PROBE = ("import json as _json, resource as _resource\n"
         "print(_json.dumps({'peak_rss_kib': "
         "_resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss}))")


def peak_from_output(nb: nbformat.NotebookNode) -> float:
    """The peak RSS in MiB that the probe cell (the last cell) printed."""
    for output in nb.cells[-1].get("outputs", []):
        if output.get("output_type") == "stream" and "peak_rss_kib" in output.get("text", ""):
            return json.loads(output["text"].strip().splitlines()[-1])["peak_rss_kib"] / 1024
    raise RuntimeError("the memory probe cell printed nothing: did the notebook stop early?")


def _measure(job: tuple[str, str, int]) -> dict:
    """In a worker process: execute one notebook with the probe cell, return its peak."""
    path, text, timeout = job
    nb = nbformat.reads(text, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    result = run_in_kernel(nb, path, timeout)
    if result.exc_string:
        return {"notebook": path, "error": result.exc_string[-800:]}
    return {"notebook": path, "peak_mib": round(peak_from_output(nb), 1),
            "seconds": round(result.time, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="notebooks executed at a time (default: all CPUs)")
    parser.add_argument("--report", type=Path, help="write the results as JSON here")
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="MyST notebooks to measure (default: every notebook in _toc.yml)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    sources = [p.resolve() for p in args.notebooks] or toc_sources()
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")

    config = book_config()
    md_config = reader_config(config)
    timeout = int(config["execute"]["timeout"])
    jobs = [(str(p), nbformat.writes(read_notebook(p, md_config)), timeout) for p in sources]

    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(_measure, jobs))
    wall = time.perf_counter() - start

    failed = [r for r in results if "error" in r]
    print(f"{'notebook':44s} {'peak RSS':>10s}")
    for r in results:
        name = str(Path(r["notebook"]).relative_to(ROOT))
        print(f"{name:44s} " + (f"{r['peak_mib']:7.0f} MiB" if "peak_mib" in r else "    FAILED"))
    if not failed:
        top = max(results, key=lambda r: r["peak_mib"])
        print(f"largest: {top['peak_mib']:.0f} MiB "
              f"({Path(top['notebook']).relative_to(ROOT)}); {wall:.0f} s wall")
    for r in failed:
        print(f"\n{r['notebook']} failed:\n{r['error']}", file=sys.stderr)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        for r in results:
            r["notebook"] = str(Path(r["notebook"]).relative_to(ROOT))
        args.report.write_text(json.dumps(results, indent=2) + "\n", encoding="utf8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
