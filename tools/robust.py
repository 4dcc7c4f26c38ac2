"""Execute the book's notebooks again under other seeds and other CPU kernels: every assert
must still pass.

    python tools/robust.py [--jobs N] [--variants seed=1+cpu=default,seed=2+cpu=default,...]
    python tools/robust.py --seeds 20            # pass rates over GRADFLOW_SEED = 0 … 19

A lesson's claims are about phenomena, not about one run, so they must hold whatever the
seed (``GRADFLOW_SEED``) and whatever the floating-point kernels of the reader's machine.
Each (variant, notebook) pair runs in a fresh kernel, with the variant's environment
variables set before the kernel starts, and outside every cache: nothing is read from or
written to the book's execution cache. A notebook passes when no cell raises and nothing is
written to stderr, exactly as in the book build.

Variants (``--variants``, comma-separated): each is one or more of these parts joined by
``+`` (at most one seed and one kernel choice), e.g. ``seed=1+cpu=default``:

- ``seed=K``: ``GRADFLOW_SEED=K`` (every random draw of the book changes);
- ``cpu=default``: torch's scalar kernels (``ATEN_CPU_CAPABILITY=default``), and MKL and
  oneDNN held to SSE4 (a machine without AVX);
- ``cpu=avx2``: torch's AVX2 kernels, MKL and oneDNN held to AVX2 (skipped, and said so,
  on a CPU without AVX2).

``make test-robust`` runs ``seed=1+cpu=default``, ``seed=2+cpu=default`` and
``seed=3+cpu=avx2``: three seeds besides the book's 0, and both kernel families besides the
machine's own (the book build uses those), in three executions per notebook instead of one
per seed and one per kernel. It also checks that the seed switch is wired: every notebook
that draws random numbers through ``gradflowkit.seeding`` must print different text under
two variants that differ only in the seed (here ``seed=1+cpu=default`` and
``seed=2+cpu=default``; other kernels alone would change printed digits, so variants that
also differ in kernels prove nothing). A switch that changes nothing would pass every other
check trivially.

``--seeds N`` (``make robustness N=20``) runs every notebook for ``GRADFLOW_SEED = 0 … N-1``
and prints, per notebook, how many seeds passed. Results go to ``--report`` as JSON; with
``--keep-text`` they include what each notebook printed (a lesson's numbers per seed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute import (ROOT, book_config, read_notebook, reader_config,  # noqa: E402
                     run_in_kernel, stderr_outputs, toc_sources)

GATE_VARIANTS = ("seed=1+cpu=default", "seed=2+cpu=default", "seed=3+cpu=avx2")
# What a notebook calls when it draws random numbers through the seed switch.
SEEDING_CALLS = re.compile(r"\b(seed_all|ensemble_seeds|derive_seed|numpy_rng|generator)\(")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty where it is not readable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(match.group(1).split()) if match else set()


def _part_env(part: str, name: str) -> dict[str, str] | None:
    """Environment variables of one part of a variant; None if this CPU cannot run it."""
    kind, _, value = part.partition("=")
    if kind == "seed" and value.isdigit():
        return {"GRADFLOW_SEED": value}
    if part == "cpu=default":
        return {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                "DNNL_MAX_CPU_ISA": "SSE41"}
    if part == "cpu=avx2":
        if "avx2" not in cpu_flags():
            return None
        return {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                "DNNL_MAX_CPU_ISA": "AVX2"}
    raise ValueError(f"unknown variant {name!r}: use seed=K, cpu=default or cpu=avx2, or "
                     "one of each joined by '+' (seed=1+cpu=default)")


def variant_env(name: str) -> dict[str, str] | None:
    """Environment variables of a variant; None if this CPU cannot run it.

    A variant is ``seed=K``, ``cpu=default`` or ``cpu=avx2``, or one seed and one kernel
    choice joined by ``+``. Every part is checked, so a bad name fails even on a CPU that
    would skip the variant.
    """
    parts = name.split("+")
    kinds = [part.partition("=")[0] for part in parts]
    envs = [_part_env(part, name) for part in parts]
    repeated = sorted({kind for kind in kinds if kinds.count(kind) > 1})
    if repeated:
        raise ValueError(f"variant {name!r} sets {repeated[0]} twice: join at most one "
                         "seed=K and one cpu=... with '+'")
    if any(env is None for env in envs):
        return None
    return {key: value for env in envs for key, value in env.items()}


def seed_pair(variants: list[str]) -> tuple[str, str] | None:
    """The first two runnable variants that differ only in ``GRADFLOW_SEED``, or None.

    The seed-wiring check compares what a notebook printed under these two: with the same
    kernels, only the seed can change the text (other kernels round differently, and that
    alone can change printed digits).
    """
    envs = {v: variant_env(v) for v in variants}
    runnable = [v for v in variants if envs[v] is not None and "GRADFLOW_SEED" in envs[v]]
    rest = {v: {k: x for k, x in envs[v].items() if k != "GRADFLOW_SEED"} for v in runnable}
    for i, a in enumerate(runnable):
        for b in runnable[i + 1:]:
            if rest[a] == rest[b] and envs[a]["GRADFLOW_SEED"] != envs[b]["GRADFLOW_SEED"]:
                return a, b
    return None


def printed_text(nb: nbformat.NotebookNode) -> str:
    """Everything a notebook printed as text: streams and text/plain results (glue values)."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            elif "text/plain" in output.get("data", {}):
                parts.append(output["data"]["text/plain"])
    return "\n".join(parts)


def error_summary(text: str) -> str:
    """The informative end of a cell error: the failing line and the exception."""
    lines = [ANSI.sub("", line) for line in text.splitlines()]
    arrow = [i for i, line in enumerate(lines) if line.lstrip().startswith("---->")]
    keep = lines[arrow[-1]:] if arrow else lines[-6:]
    return "\n".join(line for line in keep if line.strip())[-800:]


def _run(job: tuple[str, str, str, dict[str, str], int]) -> dict:
    """In a worker process: execute one notebook under one variant's environment."""
    variant, path, text, env, timeout = job
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        nb = nbformat.reads(text, as_version=4)
        result = run_in_kernel(nb, path, timeout)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    problems = [error_summary(result.exc_string)] if result.exc_string else stderr_outputs(nb)
    return {"variant": variant, "notebook": path, "ok": not problems,
            "seconds": round(result.time, 2), "problems": problems,
            "text": printed_text(nb)}


def run_all(variants: list[str], sources: list[Path], jobs: int) -> list[dict]:
    """Execute every notebook under every variant, ``jobs`` at a time; print as they end."""
    config = book_config()
    md_config = reader_config(config)
    timeout = int(config["execute"]["timeout"])
    texts = {p: nbformat.writes(read_notebook(p, md_config)) for p in sources}
    todo = []
    for variant in variants:
        env = variant_env(variant)
        if env is None:
            print(f"skipping {variant}: this CPU does not have it", flush=True)
            continue
        todo += [(variant, str(p), texts[p], env, timeout) for p in sources]
    print(f"{len(todo)} executions ({len(sources)} notebooks x {len(todo) // max(len(sources), 1)}"
          f" variants), {jobs} at a time", flush=True)
    results = []
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo)))) as pool:
        for result in pool.map(_run, todo):
            name = Path(result["notebook"]).relative_to(ROOT)
            status = "ok  " if result["ok"] else "FAIL"
            print(f"{status} {result['variant']:<20} {name} ({result['seconds']:.1f} s)",
                  flush=True)
            for problem in result["problems"]:
                print("     " + problem.replace("\n", "\n     "), flush=True)
            results.append(result)
    return results


def draws_random_numbers(path: Path) -> bool:
    """Whether a notebook calls the seed switch (``gradflowkit.seeding``)."""
    return bool(SEEDING_CALLS.search(path.read_text(encoding="utf8")))


def unwired(results: list[dict], sources: list[Path], pair: tuple[str, str]) -> list[str]:
    """Notebooks that draw random numbers but print the same text under both variants of
    ``pair`` (two variants that differ only in the seed: ``seed_pair``)."""
    a, b = pair
    text = {(r["variant"], r["notebook"]): r["text"] for r in results if r["ok"]}
    return [str(p.relative_to(ROOT)) for p in sources if draws_random_numbers(p)
            and (a, str(p)) in text and (b, str(p)) in text
            and text[a, str(p)] == text[b, str(p)]]


def pass_table(results: list[dict], sources: list[Path], variants: list[str]) -> list[str]:
    """One line per notebook: how many variants passed, and which failed."""
    lines = []
    for p in sources:
        mine = [r for r in results if r["notebook"] == str(p)]
        failed = [r["variant"] for r in mine if not r["ok"]]
        seconds = [r["seconds"] for r in mine]
        line = (f"{str(p.relative_to(ROOT)):<44} {len(mine) - len(failed):>3}/{len(mine):<3}"
                f" max {max(seconds, default=0):5.1f} s")
        lines.append(line + (f"  failed: {', '.join(failed)}" if failed else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="notebooks executed at the same time (default: number of CPUs)")
    parser.add_argument("--variants", default=",".join(GATE_VARIANTS),
                        help=f"comma-separated variants (default: {','.join(GATE_VARIANTS)})")
    parser.add_argument("--seeds", type=int, default=0,
                        help="instead of --variants: GRADFLOW_SEED = 0 … N-1 (pass rates)")
    parser.add_argument("--report", type=Path, help="write the results as JSON")
    parser.add_argument("--keep-text", action="store_true",
                        help="keep what each notebook printed in the report (to read a "
                             "lesson's numbers across seeds)")
    parser.add_argument("sources", nargs="*", type=Path,
                        help="notebooks to run (default: every notebook in _toc.yml)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.seeds < 0:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    variants = ([f"seed={k}" for k in range(args.seeds)] if args.seeds
                else [v.strip() for v in args.variants.split(",") if v.strip()])
    for v in variants:
        variant_env(v)   # unknown names fail before anything runs
    sources = [p.resolve() for p in args.sources] or toc_sources()

    start = time.perf_counter()
    results = run_all(variants, sources, args.jobs)
    wall = time.perf_counter() - start
    print(f"\n{'notebook':<44} passed      slowest  ({wall:.0f} s wall)")
    print("\n".join(pass_table(results, sources, variants)))
    failures = [r for r in results if not r["ok"]]
    pair = None if args.seeds else seed_pair(variants)
    not_wired = unwired(results, sources, pair) if pair else []
    if not args.seeds and pair is None:
        print("seed switch NOT CHECKED: no two of these variants differ only in the seed "
              "(add e.g. seed=1 and seed=2)", file=sys.stderr)
    for name in not_wired:
        print(f"SEED SWITCH NOT WIRED: {name} draws random numbers but prints the same "
              f"text under {pair[0]} and {pair[1]}", file=sys.stderr)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(
            {"variants": variants, "wall_s": round(wall, 1), "seed_pair": pair,
             "unwired": not_wired,
             "results": [{k: v for k, v in r.items() if k != "text" or args.keep_text}
                         for r in results]},
            indent=1) + "\n")
    if failures:
        print(f"{len(failures)} of {len(results)} executions failed", file=sys.stderr)
    return 1 if (failures or not_wired) and not args.seeds else 0


if __name__ == "__main__":
    sys.exit(main())
