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
