"""The GitHub Actions workflow (.github/workflows/ci.yml): it runs the same entry point as
CI here (.ci/run), publishes only the tested site from main, and pins every action to a commit.
actionlint checks the syntax and expressions (`make test-workflows`); these check our rules."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf8"))


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def test_runs_on_pushes_to_main_and_on_pull_requests():
    triggers = _workflow()[True]          # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert "pull_request" in triggers


def test_the_test_job_runs_ci_run():
    runs = [step.get("run", "") for step in _steps(_workflow()["jobs"]["test"])]
    assert any(re.search(r"(^|\s)(bash )?\.ci/run\b", run) for run in runs), runs


def test_every_action_is_pinned_to_a_commit():
    for name, job in _workflow()["jobs"].items():
        for step in _steps(job):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), (name, step)


def test_pages_are_deployed_only_from_main_after_the_tests():
    jobs = _workflow()["jobs"]
    deploy = jobs["deploy"]
    assert deploy["needs"] == "test"
    main_push = "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["if"] == main_push
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert _workflow()["permissions"] == {"contents": "read"}   # the default for every job
    upload = [s for s in _steps(jobs["test"]) if "upload-pages-artifact" in s.get("uses", "")]
    assert len(upload) == 1 and upload[0]["with"]["path"] == "_build/html"
    assert upload[0]["if"] == main_push
    assert any("deploy-pages" in s.get("uses", "") for s in _steps(deploy))
