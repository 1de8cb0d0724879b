"""Every explorer of ``llmtap.widgets`` in a real browser: JupyterLab 4 in headless Chromium.

Starts a private JupyterLab on 127.0.0.1 over a temporary copy of this folder, opens
``widgets.ipynb`` in Chromium, runs all cells from the Run menu and then, for each explorer:

* renders: its cell shows live widget views (not a text repr such as ``VBox(children=...``),
  with the controls it should have, an output area with a drawn figure (a decoded ``<img>``),
  no "Error displaying widget" and no traceback;
* responds: moving each of its controls (a slider by the arrow keys, a dropdown through its
  ``<select>``, a text box by typing, a button by a click) redraws its output.

Every wait is bounded. On a failure the page's screenshot and text, the failing cells' screenshots,
the browser console and the server log go to $LLMTAP_BROWSER_ARTIFACTS (default /tmp/llmtap-browser).
Exit status 0 when every explorer passes, 1 otherwise (2: the browser or the server never came up).

    python ci/browser/test_browser.py            # from the repository root, with the venv active
    bash ci/browser_test.sh                      # the same, installing what it needs first
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOK = "widgets.ipynb"
CHROMIUM = os.environ.get("LLMTAP_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LLMTAP_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("LLMTAP_BROWSER_ARTIFACTS", "/tmp/llmtap-browser"))
SLOW = float(os.environ.get("LLMTAP_BROWSER_SLOW", "1"))       # multiplies every timeout below
SAVE_ALWAYS = os.environ.get("LLMTAP_BROWSER_SAVE") == "always"  # the artifacts of a passing run too

SERVER_TIMEOUT = 90 * SLOW         # jupyter lab answers /api/status
PAGE_TIMEOUT = 120 * SLOW          # the notebook is open, its kernel idle
RUN_TIMEOUT = 240 * SLOW           # Run All Cells has finished
RENDER_TIMEOUT = 30 * SLOW         # an explorer's widgets and figure are on the page
RESPOND_TIMEOUT = 30 * SLOW        # an explorer has redrawn after a control moved
SETTLE = 0.6                       # seconds the kernel must stay idle to count as done

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]

# Settings of the private JupyterLab: every cell in the DOM (no windowing), no news or update
# prompts, no widget state saved into the notebook, no autosave.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyter-widgets/jupyterlab-manager/plugin": {"saveState": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}


# ----------------------------------------------------------------------------- what is checked
@dataclass
class Action:
    label: str          # names the control in the report
    kind: str           # "slider", "select", "text" or "button"
    index: int          # which control of that kind in the explorer's cell, top to bottom
    value: object = None  # slider: "right"/"left"; select: option index; text: what to type


@dataclass
class Explorer:
    name: str                   # the cell's tag is "explorer:<name>"
    controls: dict              # kind -> how many the cell must show at least
    actions: list
    printed: bool = False       # it prints text under its figure too
    result: dict = field(default_factory=dict)


EXPLORERS = [
    Explorer("next_token_explorer", {"slider": 1, "text": 1},
             [Action("temperature slider", "slider", 0, "right"), Action("prompt text box", "text", 0, " I feel")]),
    Explorer("prompt_classifier_demo", {"select": 2, "text": 1},
             [Action("template dropdown", "select", 0, 1), Action("verbalizer dropdown", "select", 1, 1),
              Action("x text box", "text", 0, " ok")]),
    Explorer("lora_explorer", {"slider": 2},
             [Action("rank r slider", "slider", 0, "right"), Action("alpha slider", "slider", 1, "left")]),
    Explorer("peft_explorer", {"select": 1, "slider": 1},
             [Action("method dropdown", "select", 0, 1), Action("size slider", "slider", 0, "right")]),
    Explorer("alibi_explorer", {"slider": 2},
             [Action("heads slider", "slider", 0, "right"), Action("length slider", "slider", 1, "left")]),
    Explorer("rope_explorer", {"slider": 3, "select": 1},
             [Action("position slider", "slider", 0, "right"), Action("scaling dropdown", "select", 0, 2)]),
    Explorer("rouge_threshold_explorer", {"slider": 1},
             [Action("threshold slider", "slider", 0, "left")], printed=True),
    Explorer("loss_mask_explorer", {"select": 2},
             [Action("template dropdown", "select", 0, 1), Action("mistake dropdown", "select", 1, 3)], printed=True),
    Explorer("LiveLossPlot", {"button": 1},
             [Action("'add a point' button", "button", 0)]),
]

CONTROL_CSS = {"slider": ".widget-slider .noUi-handle", "select": ".widget-dropdown select",
               "text": ".widget-text input", "button": "button.jupyter-button"}

# The state of one cell's outputs, read in the page: images (decoded or not), the text of its
# output areas (not of its controls), tracebacks, and whether its widgets rendered.
CELL_STATE_JS = r"""
const cell = arguments[0], css = arguments[1];
const area = cell.querySelector('.jp-Cell-outputArea') || cell;
function hash(s) { let h = 5381; for (let i = 0; i < s.length; i++) h = ((h << 5) + h + s.charCodeAt(i)) | 0; return h; }
const imgs = [...area.querySelectorAll('img')].map(i => ({n: i.src.length, h: hash(i.src), ok: i.complete && i.naturalWidth > 0}));
const texts = [];
for (const o of area.querySelectorAll('.widget-output .jp-OutputArea-output, :scope .jp-OutputArea-child > .jp-OutputArea-output'))
  if (!o.querySelector('.jupyter-widgets') && !o.querySelector('img')) texts.push(o.innerText.trim());
const errors = [...area.querySelectorAll('[data-mime-type="application/vnd.jupyter.error"]')]
  .map(e => e.innerText).concat([...area.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')]
  .map(e => e.innerText).filter(t => /Traceback|Error:/.test(t)));
const stderr = [...area.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')]
  .map(e => e.innerText.trim()).filter(t => t && !/Traceback|Error:/.test(t));
const counts = {};
for (const [k, sel] of Object.entries(css)) counts[k] = area.querySelectorAll(sel).length;
const all = area.innerText;
return {imgs: imgs, text: texts.join('\n'), errors: errors, stderr: stderr, counts: counts,
        views: area.querySelectorAll('.lm-Widget.jupyter-widgets').length,
        vbox: area.querySelectorAll('.widget-vbox').length, outputs: area.querySelectorAll('.widget-output').length,
        repr: /(VBox|HBox|Button|Output)\(children=|(VBox|Button)\(description=|\(layout=Layout\(/.test(all),
        broken: all.includes('Error displaying widget'),
        prompt: (cell.querySelector('.jp-InputPrompt') || {innerText: ''}).innerText.trim()};
"""


class Failure(Exception):
    pass


def log(msg: str) -> None:
    print(msg, flush=True)


def wait_for(what: str, timeout: float, probe, interval: float = 0.25):
    """Poll ``probe()`` until it returns something truthy; its value, or Failure after ``timeout`` s."""
    end = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Failure:
            raise
        except Exception as e:          # the page is between states: try again until the deadline
            last_error = e
        if time.monotonic() > end:
            extra = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)


# ----------------------------------------------------------------------------- the JupyterLab server
class Lab:
    """A private ``jupyter lab`` on 127.0.0.1 over a temporary copy of this folder."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.root = tmp / "notebooks"
        shutil.copytree(HERE, self.root, ignore=shutil.ignore_patterns("artifacts", "__pycache__",
                                                                      ".ipynb_checkpoints", "*.py", "*.md"))
        self.token = secrets.token_hex(16)
        self.proc = None
        self.port = None
        self.log_path = tmp / "jupyter.log"
        settings = tmp / "lab-settings"
        for plugin, values in LAB_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.settings_dir = settings

    def start(self) -> None:
        for attempt in range(3):                       # a free port can be taken in between: retry
            self.port = free_port()
            env = dict(os.environ, JUPYTER_CONFIG_DIR=str(self.tmp / "config"),
                       JUPYTER_RUNTIME_DIR=str(self.tmp / "runtime"), IPYTHONDIR=str(self.tmp / "ipython"),
                       JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1")
            env.pop("JUPYTER_TOKEN", None)
            cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
                   "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                   f"--ServerApp.token={self.token}", f"--ServerApp.root_dir={self.root}",
                   "--ServerApp.terminals_enabled=False", "--ServerApp.allow_root=True",
                   "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                   f"--LabApp.user_settings_dir={self.settings_dir}",
                   f"--LabApp.workspaces_dir={self.tmp / 'workspaces'}"]
            with open(self.log_path, "ab") as out:
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env=env, cwd=self.root, start_new_session=True)
            try:
                wait_for(f"jupyter lab on port {self.port}", SERVER_TIMEOUT, self._up, interval=0.5)
                log(f"jupyter lab up on 127.0.0.1:{self.port} (pid {self.proc.pid})")
                return
            except Failure:
                if self.proc.poll() is None or attempt == 2:
                    raise
                log(f"jupyter lab exited with {self.proc.returncode} on port {self.port}; trying another port")

    def _up(self):
        if self.proc.poll() is not None:
            raise Failure(f"jupyter lab exited with status {self.proc.returncode}; see {self.log_path}")
        return self.api("status") is not None

    def api(self, path: str):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/{path}",
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return None

    def kernel_states(self) -> list[str]:
        """The execution state of each running kernel, as the server sees it."""
        return [k.get("execution_state") for k in (self.api("kernels") or [])]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{NOTEBOOK}?token={self.token}"

    def children(self) -> list[tuple[int, str]]:
        """(pid, command line) of the server's child processes: the kernels it started."""
        found = []
        try:
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                for pid in (task / "children").read_text().split():
                    found.append((int(pid), cmdline(int(pid))))
        except OSError:
            pass
        return found

    def stop(self) -> None:
        """SIGTERM (jupyter shuts its kernels down), then SIGKILL if it lingers; then SIGKILL to
        any kernel of its that outlived it (kernels run in process groups of their own)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        kernels = self.children()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log(f"jupyter lab (pid {self.proc.pid}) did not stop on SIGTERM: killing it")
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)     # its own group (start_new_session)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        for pid, command in kernels:
            if command and cmdline(pid) == command:     # the same process, still there
                log(f"killing the kernel {pid} that outlived jupyter lab")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- the browser
def start_browser(tmp: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")        # selenium-manager, should it be asked, stays offline
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp / 'chromium-profile'}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    driver.set_script_timeout(30)
    return driver


class Page:
    """The notebook open in JupyterLab."""

    def __init__(self, driver, lab: Lab, n_cells: int):
        self.d, self.lab, self.n_cells = driver, lab, n_cells

    def cells(self):
        from selenium.webdriver.common.by import By
        return self.d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook .jp-Cell")

    def open(self) -> None:
        self.d.get(self.lab.url)
        wait_for("the notebook to open with all its cells", PAGE_TIMEOUT,
                 lambda: len(self.cells()) == self.n_cells, interval=0.5)
        self.dismiss_dialogs()
        wait_for("the kernel to start and go idle", PAGE_TIMEOUT, self.kernel_idle, interval=0.5)

    def dismiss_dialogs(self) -> None:
        """Close a modal dialog (a kernel choice, a news question), should one be open."""
        from selenium.webdriver.common.by import By
        for button in self.d.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-button.jp-mod-reject"):
            try:
                button.click()
            except Exception:
                pass

    def kernel_idle(self) -> bool:
        """Idle both in the page's kernel status and on the server, now and SETTLE s later."""
        def idle():
            status = self.d.execute_script(
                "const e = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');"
                "return e ? e.getAttribute('data-status') : null;")
            states = self.lab.kernel_states()
            return status == "idle" and states and all(s == "idle" for s in states)
        if not idle():
            return False
        time.sleep(SETTLE)
        return idle()

    def run_all(self) -> None:
        """Run → Run All Cells, from the menu bar as a student would; the command palette if that fails."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        self.cells()[0].click()                         # the notebook has the focus
        try:
            menu = next(e for e in self.d.find_elements(By.CSS_SELECTOR, "#jp-menu-panel .lm-MenuBar-item")
                        if e.text.strip() == "Run")
            menu.click()
            item = wait_for("'Run All Cells' in the Run menu", 10, lambda: next(
                (e for e in self.d.find_elements(By.CSS_SELECTOR, "#jp-mainmenu-run .lm-Menu-item")
                 if e.text.split("\n")[0].strip() == "Run All Cells" and e.is_displayed()), None))
            item.click()
            how = "Run menu"
        except Exception as e:
            log(f"the Run menu did not work ({type(e).__name__}); using the command palette")
            self.d.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
            self.cells()[0].click()
            self.d.switch_to.active_element.send_keys(Keys.CONTROL, Keys.SHIFT, "c")
            box = wait_for("the command palette", 10, lambda: self.d.find_element(
                By.CSS_SELECTOR, ".jp-ModalCommandPalette input"))
            box.send_keys("Run All Cells")
            box.send_keys(Keys.ENTER)
            how = "command palette"
        log(f"Run All Cells ({how})")

        def finished():
            # done when the kernel is idle with no cell queued ([*]) and either every code cell
            # has its number or one of them raised (Run All stops at the first error)
            states = [self.state(c) for c in self.cells()]
            prompts = [s["prompt"] for s in states if s["prompt"]]
            if any("*" in p for p in prompts):
                return False
            numbered = len(prompts) >= self.n_code and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)
            if not (numbered or any(s["errors"] for s in states)):
                return False
            return self.kernel_idle() and states
        states = wait_for("Run All Cells to finish (every code cell numbered, the kernel idle)",
                          RUN_TIMEOUT, finished, 0.5)
        for i, s in enumerate(states):
            if s["errors"] and s["views"] == 0:        # a traceback outside any widget: the cell failed
                raise Failure(f"cell {i} of {NOTEBOOK} raised {last_line(s['errors'][0])} "
                              f"(the whole traceback is in page.txt)")
        for i, s in enumerate(states):
            for text in s["stderr"]:                    # not a failure, but worth a look
                log(f"note: cell {i} wrote to stderr: {' | '.join(text.splitlines())[:300]}")

    def state(self, cell) -> dict:
        return self.d.execute_script(CELL_STATE_JS, cell, CONTROL_CSS)

    def controls(self, cell, kind: str):
        from selenium.webdriver.common.by import By
        return cell.find_elements(By.CSS_SELECTOR, ".jp-Cell-outputArea " + CONTROL_CSS[kind])

    def act(self, cell, action: Action) -> None:
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import Select
        controls = self.controls(cell, action.kind)
        if action.index >= len(controls):
            raise Failure(f"{action.label}: the cell shows {len(controls)} {action.kind} controls, "
                          f"no number {action.index + 1}")
        el = controls[action.index]
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        if action.kind == "slider":
            self.d.execute_script("arguments[0].focus();", el)
            el.send_keys(Keys.ARROW_RIGHT if action.value == "right" else Keys.ARROW_LEFT)
        elif action.kind == "select":
            Select(el).select_by_index(action.value)
        elif action.kind == "text":
            el.click()
            el.send_keys(Keys.END, action.value, Keys.ENTER)
        elif action.kind == "button":
            el.click()
        else:
            raise ValueError(action.kind)


def last_line(traceback: str) -> str:
    """The line of a traceback that names the exception."""
    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "?"


def signature(state: dict):
    """What a redraw changes: the images and the text of the output areas."""
    return tuple((i["n"], i["h"]) for i in state["imgs"]), state["text"]


def drawn(state: dict, printed: bool) -> str | None:
    """Why this output is not a finished drawing, or None when it is."""
    if state["errors"]:
        return "a traceback in its output: " + last_line(state["errors"][0])
    if state["broken"]:
        return "'Error displaying widget' in its output"
    if not state["imgs"]:
        return "no figure (<img>) in its output"
    if not all(i["ok"] for i in state["imgs"]):
        return "a figure that the browser could not decode"
    if printed and not state["text"]:
        return "no printed text in its output"
    return None


# ----------------------------------------------------------------------------- checking one explorer
def check_renders(page: Page, cell, ex: Explorer) -> None:
    def rendered():
        s = page.state(cell)
        if s["repr"]:
            raise Failure(f"shown as a text repr, not as a widget: {s_text(page, cell)[:200]!r}")
        if s["broken"]:
            raise Failure(f"'Error displaying widget': {s_text(page, cell)[:200]!r}")
        if s["errors"]:
            raise Failure("a traceback in the cell: " + last_line(s["errors"][0]))
        if s["views"] == 0:
            return False
        missing = {k: n for k, n in ex.controls.items() if s["counts"][k] < n}
        if missing:
            return False
        if ex.name != "LiveLossPlot" and (s["vbox"] == 0 or s["outputs"] == 0):
            return False
        return drawn(s, ex.printed) is None and s
    try:
        wait_for(f"{ex.name} to render", RENDER_TIMEOUT, rendered)
    except Failure as e:
        s = page.state(cell)
        why = drawn(s, ex.printed) or f"widget views {s['views']}, controls {s['counts']} (want {ex.controls})"
        raise Failure(f"{ex.name} does not render: {e}; {why}") from None


def s_text(page: Page, cell) -> str:
    return page.d.execute_script(
        "const a = arguments[0].querySelector('.jp-Cell-outputArea'); return a ? a.innerText : '';", cell)


def check_responds(page: Page, cell, ex: Explorer, action: Action) -> None:
    before = page.state(cell)
    page.act(cell, action)

    def redrawn():
        s = page.state(cell)
        if s["errors"]:
            raise Failure("a traceback after the change: " + last_line(s["errors"][0]))
        return signature(s) != signature(before) and drawn(s, ex.printed) is None
    try:
        wait_for(f"{ex.name} to redraw after moving its {action.label}", RESPOND_TIMEOUT, redrawn)
    except Failure as e:
        raise Failure(f"{ex.name} does not respond to its {action.label}: {e}") from None
    # let the kernel finish every redraw the change set off (a text box redraws at each key)
    wait_for("the kernel to go idle after the change", RESPOND_TIMEOUT, page.kernel_idle)
    s = page.state(cell)
    why = drawn(s, ex.printed)
    if why:
        raise Failure(f"{ex.name} after moving its {action.label}: {why}")


# ----------------------------------------------------------------------------- the whole run
def notebook_explorers() -> tuple[int, int, dict]:
    """(number of cells, of code cells, explorer name -> cell index) from the notebook's tags."""
    nb = json.loads((HERE / NOTEBOOK).read_text(encoding="utf-8"))
    where = {}
    for i, c in enumerate(nb["cells"]):
        if c.get("outputs"):
            raise Failure(f"{NOTEBOOK} cell {i} has saved outputs: keep the test input clean")
        for tag in c.get("metadata", {}).get("tags", []):
            if tag.startswith("explorer:"):
                where[tag.split(":", 1)[1]] = i
    if "widgets" in nb.get("metadata", {}):
        raise Failure(f"{NOTEBOOK} has saved widget state in its metadata: keep the test input clean")
    missing = [e.name for e in EXPLORERS if e.name not in where]
    if missing:
        raise Failure(f"{NOTEBOOK} has no cell tagged explorer:<name> for {missing}")
    return len(nb["cells"]), sum(c["cell_type"] == "code" for c in nb["cells"]), where


ARTIFACT_NAMES = ("page.png", "page.txt", "console.log", "jupyter.log", "chromedriver.log")


def save_artifacts(driver, lab, tmp: Path, failed_cells, failed: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in [*ARTIFACTS.glob("cell-*.png")] + [ARTIFACTS / n for n in ARTIFACT_NAMES]:
        if old.is_file():                   # only what an earlier run of this test left
            old.unlink()
    if driver is not None:
        for what, fn in (("page.png", lambda: driver.save_screenshot(str(ARTIFACTS / "page.png"))),
                         ("page.txt", lambda: (ARTIFACTS / "page.txt").write_text(
                             driver.execute_script("return document.body.innerText;"), encoding="utf-8")),
                         ("console.log", lambda: (ARTIFACTS / "console.log").write_text(
                             "\n".join(f"{e.get('level')} {e.get('message')}" for e in driver.get_log("browser")),
                             encoding="utf-8"))):
            try:
                fn()
            except Exception as e:
                log(f"could not save {what}: {type(e).__name__}: {e}")
        for name, cell in failed_cells:
            try:
                driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", cell)
                cell.screenshot(str(ARTIFACTS / f"cell-{name}.png"))
            except Exception as e:
                log(f"could not save the screenshot of {name}'s cell: {type(e).__name__}")
    for name in ("jupyter.log", "chromedriver.log"):
        if (tmp / name).exists():
            shutil.copy(tmp / name, ARTIFACTS / name)
    log(f"{'artifacts of the failure' if failed else 'artifacts'}: {ARTIFACTS}")


def report(explorers, seconds: float) -> None:
    width = max(len(e.name) for e in explorers)
    log("")
    log(f"{'explorer':<{width}}  renders  responds")
    for e in explorers:
        r = e.result
        renders = "yes" if r.get("renders") else "NO"
        responds = r.get("responds", "-")
        log(f"{e.name:<{width}}  {renders:<7}  {responds}")
        if r.get("error"):
            log(f"{'':<{width}}    {r['error']}")
    log(f"wall time {seconds:.1f} s")


def run() -> int:
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="llmtap-browser-"))
    driver = lab = None
    failed_cells, status = [], 1
    try:
        for path in (CHROMIUM, CHROMEDRIVER):
            if not os.access(path, os.X_OK):
                raise Failure(f"{path} is missing: run `bash ci/browser_test.sh`, which installs it")
        n_cells, n_code, where = notebook_explorers()
        lab = Lab(tmp)
        lab.start()
        driver = start_browser(tmp)
        log(f"{driver.capabilities.get('browserName')} {driver.capabilities.get('browserVersion')} headless")
        page = Page(driver, lab, n_cells)
        page.n_code = n_code
        page.open()
        log(f"notebook open, kernel idle ({time.monotonic() - t0:.1f} s)")
        page.run_all()
        log(f"all cells ran ({time.monotonic() - t0:.1f} s)")
        cells = page.cells()
        for ex in EXPLORERS:
            cell = cells[where[ex.name]]
            source = driver.execute_script("return arguments[0].querySelector('.jp-InputArea').innerText;", cell)
            try:
                if f"explorer: {ex.name}" not in source:
                    raise Failure(f"cell {where[ex.name]} is not {ex.name}'s cell: {source[:80]!r}")
                check_renders(page, cell, ex)
                ex.result["renders"] = True
                done = []
                for action in ex.actions:
                    check_responds(page, cell, ex, action)
                    done.append(action.label)
                ex.result["responds"] = "yes: " + ", ".join(done)
                ex.result["passed"] = True
            except Failure as e:
                ex.result["error"] = str(e)
                ex.result["responds"] = "NO" if ex.result.get("renders") else "-"
                failed_cells.append((ex.name, cell))
                log(f"FAIL {e}")
        page_text = driver.execute_script("return document.body.innerText;")
        if "Error displaying widget" in page_text:
            raise Failure("'Error displaying widget' on the page")
        status = 1 if failed_cells else 0
    except Failure as e:
        log(f"FAIL {e}")
        status = 1 if driver is not None else 2
    except Exception as e:
        log(f"FAIL {type(e).__name__}: {e}")
        status = 1 if driver is not None else 2
    except SystemExit as e:
        log(f"stopped by a signal (exit status {e.code}): cleaning up")
        raise
    finally:
        seconds = time.monotonic() - t0
        if status or SAVE_ALWAYS:
            if not status:
                failed_cells = [(ex.name, cells[where[ex.name]]) for ex in EXPLORERS]
            try:
                save_artifacts(driver, lab, tmp, failed_cells, failed=bool(status))
            except Exception as e:
                log(f"could not save the artifacts: {type(e).__name__}: {e}")
        if driver is not None:
            try:
                driver.quit()
            except Exception as e:
                log(f"the browser did not quit cleanly: {type(e).__name__}: {e}")
        if lab is not None:
            lab.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        report(EXPLORERS, seconds)
        passed = sum(1 for e in EXPLORERS if e.result.get("passed"))
        failed = len(EXPLORERS) - passed + (1 if status and passed == len(EXPLORERS) else 0)   # a page-wide failure
        log(f"browser widgets: {passed} passed, {failed} failed")
    return status


def test_explorers_in_a_browser():
    """The same check under pytest, skipped where Chromium or selenium is missing."""
    import pytest
    pytest.importorskip("selenium")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("no Chromium: run `bash ci/browser_test.sh`, which installs it")
    assert run() == 0, f"see the table above and {ARTIFACTS}"


def _stop_on_signal(signum, _frame):
    raise SystemExit(128 + signum)          # unwinds through run()'s cleanup


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    sys.exit(run())
