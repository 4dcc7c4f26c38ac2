"""A reader opens a lesson in JupyterLab (`make lab`), runs it, and Lab changes nothing.

For two cheap lessons, in a throw-away copy of the repository (conftest.py):
1. open the `.md` as a notebook (jupytext), Run All, let Lab autosave, save once more, close:
   the lesson is byte for byte what it was and no `.ipynb` appeared; the solution code
   cells show folded;
2. open it again with every cell unfolded, Run All: no error output, an explorer's slider
   switches frames in the browser, the prose shows no raw `{glue:text}` role.
No request leaves 127.0.0.1. Screenshots go to _build/screenshots/lab-NN-*.png.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import time
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[2] / "_build" / "screenshots"

LESSONS = ["lessons/01-backprop-is-a-product.md", "lessons/12-identity-gradient.md"]
RUN_ALL_S = 120          # a cheap lesson runs in ~5 s; a cold kernel on 2 busy cores more
GLUE_ROLE = re.compile(r"\{glue:text\}`([A-Za-z0-9_]+)")

# The state of the notebook, read in the page: cells, prompts, outputs, rendered prose.
NOTEBOOK_STATE_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return null;
  const code = [...nb.querySelectorAll('.jp-CodeCell')];
  // A folded cell (its input replaced by a placeholder) shows no execution count.
  const prompts = code.filter(c => !c.querySelector('.jp-InputPlaceholder'))
    .map(c => (c.querySelector('.jp-InputPrompt') || {}).textContent || '');
  const errors = [...nb.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(e => e.textContent.slice(0, 400));
  const prose = [...nb.querySelectorAll('.jp-MarkdownCell .myst, .jp-MarkdownOutput')]
    .map(e => e.innerText).join('\\n');
  // gradflowkit.glue's fallback: one "Numbers in the text: name = value, ..." output a cell.
  const numbers = [...nb.querySelectorAll('.jp-CodeCell .jp-OutputArea-output')]
    .map(e => e.innerText).filter(t => t.startsWith('Numbers in the text:')).join('\\n');
  return {cells: code.length, prompts, errors, prose, numbers,
          inputsFolded: nb.querySelectorAll('.jp-CodeCell .jp-InputPlaceholder').length,
          outputsFolded: nb.querySelectorAll('.jp-CodeCell .jp-OutputPlaceholder').length,
          sliders: nb.querySelectorAll('.widget-slider .noUi-handle').length};
}"""

# The frame an explorer shows: the one visible image of the output holding slider `i`.
VISIBLE_FRAME_JS = """(i) => {
  const handle = document.querySelectorAll('.widget-slider .noUi-handle')[i];
  const area = handle.closest('.jp-OutputArea-output');
  const shown = [...area.querySelectorAll('img')].filter(img => img.offsetParent !== null);
  return shown.map(img => img.src.slice(-200)).join('|');
}"""


KERNEL_READY_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const name = panel && panel.querySelector('.jp-KernelName');
  const status = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
  return !!(name && status && /Python/.test(name.textContent)
            && status.dataset.status === 'idle');
}"""


def notebook_state(page) -> dict:
    return page.evaluate(NOTEBOOK_STATE_JS) or {}


def open_lesson(page, lab, path: str) -> None:
    page.goto(lab.tree_url(path))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    # The kernel named in the lesson's header starts by itself (no kernel dialog). The
    # execution indicator also reads "idle" before any kernel exists: wait for its name too.
    page.wait_for_function(KERNEL_READY_JS, timeout=60_000)


def run_all(page) -> dict:
    menu(page, "Run", "Run All Cells")
    deadline = time.monotonic() + RUN_ALL_S
    state = {}
    while time.monotonic() < deadline:
        time.sleep(1)
        state = notebook_state(page)
        done = [re.fullmatch(r"\[\d+\]:", p.strip()) for p in state.get("prompts", [])]
        idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count()
        if state.get("cells") and all(done) and idle:
            return state
    screenshot(page, "run-all-failure")
    pytest.fail(f"Run All did not finish within {RUN_ALL_S} s; prompts: "
                f"{state.get('prompts')}")


def screenshot(page, name: str, selector: str | None = None) -> None:
    """Scroll `selector` (default: the top of the notebook) into view and save the window."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = page.locator(selector or ".jp-NotebookPanel .jp-Cell").first
    target.scroll_into_view_if_needed()
    time.sleep(0.5)
    page.screenshot(path=str(SCREENSHOTS / f"lab-{name}.png"))


class SaveWatch:
    """Counts Lab's saves of `path` (PUT /api/contents/...) that are still in flight."""

    def __init__(self, page, path: str):
        self.started = self.finished = 0
        self.failed: list[str] = []
        target = "/api/contents/" + path

        def is_save(request) -> bool:
            return request.method == "PUT" and target in request.url

        def start(request):
            self.started += is_save(request)

        def finish(request):
            self.finished += is_save(request)

        def fail(request):
            if is_save(request):
                self.finished += 1
                self.failed.append(request.failure or "failed")

        page.on("request", start)
        page.on("requestfinished", finish)
        page.on("requestfailed", fail)

    @property
    def in_flight(self) -> int:
        return self.started - self.finished


def tab_is_dirty(page) -> bool:
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current")
    return "jp-mod-dirty" in (tab.first.get_attribute("class") or "")


def wait_until_saved(page, lab, path: str, saves: SaveWatch) -> None:
    """Wait for Lab's own autosave, save once more (Ctrl+S), and wait until no save is in
    flight and the tab stays clean: closing during a save fails it ("File Save Error:
    Disposed"), which would hide whether the saved file matches the notebook."""
    wait_s = 10 * lab.autosave_s + 10
    deadline = time.monotonic() + wait_s
    while tab_is_dirty(page) and time.monotonic() < deadline:
        time.sleep(0.5)
    if tab_is_dirty(page):
        pytest.fail(f"{path}: Lab did not autosave within {wait_s} s "
                    f"(autosave interval {lab.autosave_s} s):\n{lab.log_tail()}")
    before = saves.started
    page.keyboard.press("Control+s")   # the reader's own save writes the same file
    settled_since = None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        settled = saves.started > before and not saves.in_flight and not tab_is_dirty(page)
        if not settled:
            settled_since = None
        elif settled_since is None:
            settled_since = time.monotonic()
        elif time.monotonic() - settled_since > 1.0:
            break
        page.wait_for_timeout(200)   # not time.sleep: Playwright delivers request events
                                     # to SaveWatch only while the page is being waited on
    else:
        pytest.fail(f"{path}: the save did not settle within {wait_s} s ({saves.started - before}"
                    f" saves started, {saves.in_flight} in flight):\n{lab.log_tail()}")
    assert not saves.failed, f"{path}: a save request failed: {saves.failed}"


def close_current_tab(page) -> None:
    page.keyboard.press("Alt+w")
    time.sleep(1)
    dialog = page.locator(".jp-Dialog")
    assert not dialog.count(), (
        "Closing the lesson asked to save changes, so the saved file differs from the open "
        f"notebook: {dialog.first.inner_text()[:300]}")


def changed_files(root: Path) -> list[str]:
    """What git sees changed in the copy, plus any notebook file (gitignored: *.ipynb)."""
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, check=True,
                            capture_output=True, text=True).stdout.splitlines()
    notebooks = [p.relative_to(root).as_posix() for p in root.rglob("*.ipynb")
                 if ".ipynb_checkpoints" not in p.parts]
    return status + [f"new notebook: {n}" for n in notebooks]


def check_slider_switches_frame(page, name: str) -> None:
    handles = page.locator(".widget-slider .noUi-handle")
    assert handles.count(), f"{name}: no explorer slider rendered (is ipywidgets' Lab " \
                            "extension loaded?)"
    before = page.evaluate(VISIBLE_FRAME_JS, 0)
    assert before, f"{name}: the first explorer shows no image"
    handles.first.scroll_into_view_if_needed()
    # From the end of its range the handle cannot move right: go left then.
    value, top = (handles.first.get_attribute(a) for a in ("aria-valuenow", "aria-valuemax"))
    handles.first.focus()
    page.keyboard.press("ArrowLeft" if value == top else "ArrowRight")
    deadline = time.monotonic() + 5
    while page.evaluate(VISIBLE_FRAME_JS, 0) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert page.evaluate(VISIBLE_FRAME_JS, 0) != before, (
        f"{name}: moving the explorer's slider did not change the frame shown")


def reset_copy(root: Path) -> None:
    """Undo what an earlier test's unfolding (step 2, checked apart) let Lab save."""
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=root, check=True)
    for notebook in root.rglob("*.ipynb"):
        notebook.unlink()


def menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: Path(p).stem)
def test_lesson_in_lab(lab, page, blocked, path):
    name = Path(path).stem[:2]
    reset_copy(lab.root)
    source = (lab.root / path).read_text(encoding="utf8")

    # 1. What Lab does on its own: open, Run All, autosave, close. The lesson must not change.
    saves = SaveWatch(page, path)
    open_lesson(page, lab, path)
    state = run_all(page)
    page.keyboard.press("Escape")  # command mode: every markdown cell shows rendered
    screenshot(page, f"{name}-top")
    # Solutions: each solution code cell carries JupyterLab's folding metadata
    # (tools/lab_fixpoint.py), so after Run All its code and its answer stay folded.
    folded = source.count("source_hidden: true")
    assert folded and state["inputsFolded"] == folded, (
        f"{path}: {state['inputsFolded']} code cells shown folded, {folded} solution cells")
    screenshot(page, f"{name}-exercises", ".myst-exercise")
    wait_until_saved(page, lab, path, saves)
    close_current_tab(page)
    saved = (lab.root / path).read_text(encoding="utf8")
    diff = "\n".join(list(difflib.unified_diff(source.splitlines(), saved.splitlines(),
                                               "before", "after Lab saved", lineterm=""))[:40])
    assert saved == source, (
        f"{path}: Lab's save rewrote the lesson (run `python tools/lab_fixpoint.py --write` "
        f"in the real tree):\n{diff}")
    assert not changed_files(lab.root), (
        f"Lab changed the repository copy: {changed_files(lab.root)}")

    # 2. What a reader sees with everything unfolded (this may change the copy: checked above).
    open_lesson(page, lab, path)
    menu(page, "View", "Expand All Code")
    menu(page, "View", "Expand All Outputs")
    state = run_all(page)
    assert state["inputsFolded"] == 0, f"{path}: cells still folded after Expand All Code"
    assert not state["errors"], f"{path}: error or stderr outputs after Run All:\n" + \
        "\n---\n".join(state["errors"])
    check_slider_switches_frame(page, path)
    screenshot(page, f"{name}-explorer", ".widget-slider")

    # Glue: jupyterlab-myst has no glue store, so it shows a `{glue:text}` role as the
    # key's name (e.g. "l1_linear_maxdiff:.1e"), never the number. The fallback asserted
    # here: the role never shows as raw markup, each key is readable in the prose, and the
    # cell that computed it shows "name = value" (gradflowkit.glue, GRADFLOW_SHOW_GLUE=1).
    assert "{glue:" not in state["prose"], f"{path}: raw {{glue:...}} role in the page"
    keys = set(GLUE_ROLE.findall(source))
    unreadable = sorted(k for k in keys if k not in state["prose"])
    assert not unreadable, f"{path}: glued keys not shown at all: {unreadable}"
    shown = dict(re.findall(r"([A-Za-z0-9_]+) = ([^,\n]+)", state["numbers"]))
    no_value = sorted(k for k in keys if k not in shown)
    assert keys and not no_value, (
        f"{path}: glued values not shown under their cells: {no_value[:10]}")
    assert not blocked.urls, f"requests outside 127.0.0.1 (blocked): {blocked.urls[:10]}"
