"""The Binder environment: repo2docker must use binder/ (Python 3.11, our pins, postBuild).

`jupyter-repo2docker --no-build --debug` prints the Dockerfile it would build, without Docker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINDER = REPO / "binder"


def _repo2docker() -> str:
    exe = Path(sys.executable).parent / "jupyter-repo2docker"
    found = str(exe) if exe.exists() else shutil.which("jupyter-repo2docker")
    if not found:
        pytest.fail("jupyter-repo2docker is not installed; run `make venv` (it is in requirements.txt)")
    return found


@pytest.fixture(scope="module")
def dockerfile() -> str:
    proc = subprocess.run(
        [_repo2docker(), "--no-build", "--debug", str(REPO)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"repo2docker failed:\n{out[-4000:]}"
    return out


def test_python_is_3_11(dockerfile: str) -> None:
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    assert "python=3.11" in dockerfile


def test_binder_requirements_are_installed(dockerfile: str) -> None:
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    lines = [ln.strip() for ln in (BINDER / "requirements.txt").read_text().splitlines()]
    assert "-r ../requirements.txt" in lines
    assert "-c ../constraints.txt" in lines


def test_requirements_are_installed_after_the_repo_is_copied(dockerfile: str) -> None:
    # `-e .` in requirements.txt needs the whole repository in the image first.
    copy_all = dockerfile.index("COPY --chown=0:0 src/ ${REPO_DIR}/")
    install = dockerfile.index('-r "binder/requirements.txt"')
    assert copy_all < install


def test_postbuild_runs_and_sets_jupytext_viewer(dockerfile: str) -> None:
    assert "RUN ./binder/postBuild" in dockerfile
    text = (BINDER / "postBuild").read_text()
    assert text.startswith("#!/bin/bash")
    assert "set -e" in text, "postBuild needs set -e, or a failing step does not fail the build"
    assert "jupytext-config set-default-viewer" in text
    assert os.access(BINDER / "postBuild", os.X_OK)


def test_root_files_are_not_what_binder_reads(dockerfile: str) -> None:
    # repo2docker reads binder/ first and then ignores root-level environment files.
    assert '-r "requirements.txt"' not in dockerfile


def test_pins_match() -> None:
    """The top-level pins in requirements.txt agree with the full pins in constraints.txt."""
    def pins(path: Path) -> dict[str, str]:
        out = {}
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line and not line.startswith("-"):
                name, version = line.split("==", 1)
                out[name.strip().lower().replace("_", "-")] = version.strip()
        return out

    top, full = pins(REPO / "requirements.txt"), pins(REPO / "constraints.txt")
    assert top["torch"] == "2.13.0"
    assert top["jupyter-book"].startswith("1.")
    mismatched = {k: (v, full.get(k)) for k, v in top.items() if full.get(k) != v}
    assert not mismatched, f"requirements.txt and constraints.txt disagree: {mismatched}; run make lock"


# --- torch's CPU build on Binder -------------------------------------------------------------

CPU_INDEX_PATH = "/whl/cpu"   # PyTorch's CPU-only wheel index (its install selector's "CPU")


def _requirement_lines(path: Path, seen: set[Path] | None = None) -> list[str]:
    """Every line pip reads for ``-r path``: nested ``-r``/``-c`` files inlined, comments cut."""
    seen = set() if seen is None else seen
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        flag, _, rest = line.partition(" ")
        if flag in ("-r", "-c"):
            lines += _requirement_lines(path.parent / rest.strip(), seen)
        else:
            lines.append(line)
    return lines


def _specifiers(lines: list[str], name: str) -> list[str]:
    from packaging.requirements import Requirement

    found = []
    for line in lines:
        if line.startswith("-"):
            continue
        req = Requirement(line)
        if req.name.lower().replace("_", "-") == name:
            found.append(str(req.specifier))
    return found


def test_binder_looks_for_torch_on_the_cpu_wheel_index() -> None:
    lines = _requirement_lines(BINDER / "requirements.txt")
    extra = [ln.split(None, 1)[1] for ln in lines if ln.startswith("--extra-index-url")]
    assert any(url.rstrip("/").endswith(CPU_INDEX_PATH) for url in extra), (
        f"binder/requirements.txt needs `--extra-index-url <PyTorch's CPU index>`: {extra}")
    # --index-url would replace the package index: the other packages are not all there.
    assert not any(ln.startswith(("--index-url", "-i ")) for ln in lines)


def test_every_torch_pin_admits_the_cpu_build() -> None:
    from packaging.specifiers import SpecifierSet

    specs = _specifiers(_requirement_lines(BINDER / "requirements.txt"), "torch")
    assert specs, "binder/requirements.txt installs no torch"
    for spec in specs:   # requirements.txt and constraints.txt
        assert SpecifierSet(spec).contains("2.13.0+cpu"), spec
        assert not SpecifierSet(spec).contains("2.14.0"), spec


def _fake_wheel(folder: Path, version: str) -> None:
    """A minimal, valid wheel of a package ``torch`` (no code), for pip's resolver only."""
    import base64
    import hashlib
    import zipfile

    dist = f"torch-{version}.dist-info"
    files = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"torch-{version}-py3-none-any.whl", "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)


def test_pip_prefers_the_cpu_build_when_both_are_offered(tmp_path: Path) -> None:
    """With both indexes, pip sees torch 2.13.0 and 2.13.0+cpu: it must take +cpu (oracle: pip)."""
    for version in ("2.13.0", "2.13.0+cpu"):
        _fake_wheel(tmp_path, version)
    proc = subprocess.run(
        # --isolated: no pip.conf or PIP_* variables, so only the two fake wheels are offered.
        [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--no-index",
         "--ignore-installed",
         "--find-links", str(tmp_path), "--report", "-", "--quiet", "torch==2.13.0"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    chosen = [item["metadata"]["version"] for item in json.loads(proc.stdout)["install"]]
    assert chosen == ["2.13.0+cpu"]


def test_binder_installs_jupyterlab_myst() -> None:
    """Binder renders the lessons' MyST in JupyterLab, as `make lab` does."""
    lines = _requirement_lines(BINDER / "requirements.txt")
    specs = _specifiers(lines, "jupyterlab-myst")
    assert specs and all(spec.startswith("==") for spec in specs), specs


def test_binder_sessions_show_glued_values(dockerfile: str) -> None:
    """binder/start sets GRADFLOW_SHOW_GLUE=1, as `make lab` does (gradflowkit.glue)."""
    assert 'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in dockerfile
    text = (BINDER / "start").read_text()
    assert text.startswith("#!/bin/bash") and os.access(BINDER / "start", os.X_OK)
    assert "export GRADFLOW_SHOW_GLUE=1" in text
    assert text.rstrip().endswith('exec "$@"'), "binder/start must end by running its arguments"
    makefile = (REPO / "Makefile").read_text()
    assert "GRADFLOW_SHOW_GLUE=1 $(BIN)/jupyter lab" in makefile
