"""Fixtures of the JupyterLab tests: a throw-away copy of the repository, the `make lab`
server running on it, and headless Chromium.

The server is what `make lab` starts (jupytext as the default viewer of `.md` files), but
every file it may write lies in temporary folders: the repository it serves is a copy
(`git ls-files` plus the untracked files git does not ignore, committed into a fresh git
repository so the test can ask `git status` what Lab changed), and its settings,
workspaces and runtime files live in a temporary Jupyter config. The real tree is never
touched. Chromium is the Debian package; Playwright never downloads a browser. Every
request that is not to 127.0.0.1 is blocked and counted.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCREENSHOTS = REPO / "_build" / "screenshots"
CHROMIUM = Path(os.environ.get("GRADFLOW_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: Lab's autosave interval in the test (seconds; Lab's default is 120): short, so the test
#: sees what Lab writes on its own without waiting two minutes.
AUTOSAVE_S = 3
SERVER_START_S = 60


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def copy_repository(dest: Path) -> Path:
    """Copy the files git knows of (tracked, or untracked and not ignored) and commit them."""
    listed = git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted in the working tree is still "cached"
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "-c", "user.name=lab-test", "-c", "user.email=lab-test@localhost",
        "commit", "-q", "-m", "copy of the working tree")
    return dest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def user_setting(settings: Path, plugin: str, values: dict) -> None:
    """Write a user setting of one Lab plugin, e.g. "@jupyterlab/notebook-extension:tracker"."""
    package, name = plugin.split(":")
    path = settings / package / f"{name}.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


def write_jupyter_config(config: Path, settings: Path) -> None:
    """The `make lab` viewer setting, a short autosave, and no calls to the network."""
    overrides = config / "labconfig" / "default_setting_overrides.json"
    overrides.parent.mkdir(parents=True)
    # The same command as the Makefile's `lab` target, into the temporary config.
    subprocess.run([BIN / "jupytext-config", "--settings-file", overrides,
                    "set-default-viewer"], check=True, capture_output=True)
    docmanager = "@jupyterlab/docmanager-extension:plugin"
    viewers = json.loads(overrides.read_text())[docmanager]
    user_setting(settings, docmanager, {**viewers, "autosave": True,
                                        "autosaveInterval": AUTOSAVE_S})
    # Every cell in the DOM (Lab 4 otherwise leaves cells out of view unrendered), so the
    # test can read all prompts and outputs without scrolling.
    user_setting(settings, "@jupyterlab/notebook-extension:tracker", {"windowingMode": "none"})
    # No news feed, update check or extension index: the server stays off the network.
    user_setting(settings, "@jupyterlab/apputils-extension:notification",
                 {"fetchNews": "false", "checkForUpdates": False})
    (config / "jupyter_server_config.json").write_text(json.dumps({
        "LabApp": {"news_url": None, "extension_manager": "readonly",
                   "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
    }))


@dataclass
class LabServer:
    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen = field(repr=False)
    autosave_s: int = AUTOSAVE_S

    def tree_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}&reset"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_until_up(server: LabServer) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.process.returncode}:\n"
                        f"{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/api/status?token={server.token}",
                                        timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within {SERVER_START_S} s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def lab() -> Iterator[LabServer]:
    with tempfile.TemporaryDirectory(prefix="gradflow-lab-") as tmp:
        tmp = Path(tmp)
        root = copy_repository(tmp / "repo")
        config, settings = tmp / "config", tmp / "settings"
        write_jupyter_config(config, settings)
        env = {**os.environ,
               "JUPYTER_CONFIG_DIR": str(config), "JUPYTERLAB_SETTINGS_DIR": str(settings),
               "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
               "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "IPYTHONDIR": str(tmp / "ipython"),
               # The kernels import the copy's gradflowkit, not the editable install's.
               "PYTHONPATH": str(root / "src"),
               # As `make lab` and Binder: each cell shows the numbers it glues.
               "GRADFLOW_SHOW_GLUE": "1"}
        port, token = free_port(), secrets.token_hex(16)
        args = [BIN / "jupyter", "lab", f"--ServerApp.root_dir={root}",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                "--no-browser"] + (["--allow-root"] if os.geteuid() == 0 else [])
        log = tmp / "server.log"
        with log.open("w") as out:
            process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        server = LabServer(f"http://127.0.0.1:{port}", token, root, log, process)
        try:
            wait_until_up(server)
            yield server
        finally:
            process.terminate()  # the server shuts its kernels down on SIGTERM
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Blocked:
    urls: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail(f"No Chromium at {CHROMIUM} (apt-get install chromium, or set "
                    "GRADFLOW_CHROMIUM)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def blocked() -> Blocked:
    return Blocked()


@pytest.fixture
def page(browser, blocked):
    """A fresh page whose requests outside 127.0.0.1 are refused and recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})

    def route(request_route):
        url = request_route.request.url
        if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            request_route.continue_()
        else:
            blocked.urls.append(url)
            request_route.abort()

    context.route("**/*", route)
    page = context.new_page()
    yield page
    context.close()
