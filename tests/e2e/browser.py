"""A headless Chromium, driven with Selenium through Debian's chromedriver, that reads Label Studio's labeling editor.

Nothing is downloaded: Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``) and
Selenium Manager is never asked for a driver, because the driver's path is given. Every wait has a time limit, every
WebDriver HTTP call has a read timeout, and a watchdog ends chromedriver and its Chromium (one process group) when
the browser outlives ``lifetime_s``, so a stuck page fails the tests instead of hanging them.

Selenium is imported only when a browser starts, so collecting the test suite never needs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-crash-reporter",
    "--window-size=1400,1300",
)
#: The Label Studio admin made by ``scripts/label_studio.sh start`` (same variables, same defaults).
LS_USERNAME = os.environ.get("LS_USERNAME", "admin@example.com")
LS_PASSWORD = os.environ.get("LS_PASSWORD", "ls-al-e2e-password")

COMMAND_TIMEOUT_S = 60  # read timeout of each WebDriver HTTP call
PAGE_LOAD_TIMEOUT_S = 60
SCRIPT_TIMEOUT_S = 30
LOGIN_TIMEOUT_S = 30
EDITOR_TIMEOUT_S = 60
SELECT_TIMEOUT_S = 10

#: Reads the editor's region list ("outliner"). It is a virtual list that renders only the rows in view, so the
#: script scrolls it from top to bottom and keeps every row it saw, keyed by the row's index number.
READ_OUTLINER_JS = """
const done = arguments[arguments.length - 1];
const holder = document.querySelector('.lsf-outliner .lsf-tree-list-holder');
const rows = {};
const read = () => document.querySelectorAll('.lsf-outliner .lsf-tree__node').forEach(node => {
  const text = selector => { const el = node.querySelector(selector); return el ? el.textContent.trim() : null; };
  const type = [...node.classList].find(name => name.startsWith('lsf-tree__node_type_'));
  const index = text('.lsf-outliner-item__index');
  rows[index] = {
    index: Number(index),
    kind: type ? type.slice('lsf-tree__node_type_'.length) : '',
    label: text('.lsf-outliner-item__title') || '',
    score: text('.lsf-outliner-item__control_type_score'),
    from_prediction: !!node.querySelector('.lsf-outliner-item__control_type_predict'),
  };
});
(async () => {
  read();
  if (holder) {
    for (let top = 0; top <= holder.scrollHeight; top += 100) {
      holder.scrollTop = top;
      holder.dispatchEvent(new Event('scroll'));
      await new Promise(resolve => setTimeout(resolve, 50));
      read();
    }
    holder.scrollTop = 0;
    holder.dispatchEvent(new Event('scroll'));
  }
  done(Object.values(rows).sort((a, b) => a.index - b.index));
})().catch(error => done({error: String(error)}));
"""

#: The annotation tabs above the editor: the annotator's annotations or drafts, and the predictions.
READ_TABS_JS = """
return [...document.querySelectorAll('.lsf-annotation-button')].map(button => ({
  name: (button.querySelector('.lsf-annotation-button__name') || {}).textContent || '',
  selected: button.classList.contains('lsf-annotation-button_selected'),
  draft: button.classList.contains('lsf-annotation-button_draft'),
}));
"""

#: Scrolls the region list until a row of the given region class shows (whose text lacks the label to skip, if
#: one is given), and clicks it (selects the region).
CLICK_ROW_JS = """
const [kind, done] = [arguments[0], arguments[arguments.length - 1]];
const holder = document.querySelector('.lsf-outliner .lsf-tree-list-holder');
const skip = arguments.length > 2 ? arguments[1] : null;
const find = () => [...document.querySelectorAll('.lsf-outliner .lsf-tree__node_type_' + kind)]
  .filter(node => !skip || !node.textContent.includes(skip))
  .map(node => node.querySelector('.lsf-tree-node-content-wrapper')).find(Boolean);
(async () => {
  for (let top = 0; holder && !find() && top <= holder.scrollHeight; top += 100) {
    holder.scrollTop = top;
    holder.dispatchEvent(new Event('scroll'));
    await new Promise(resolve => setTimeout(resolve, 50));
  }
  const row = find();
  if (row) row.click();
  done(!!row);
})().catch(error => done(String(error)));
"""

#: The selected region: the details panel's text (index, label, region id, ...) and the per-region choices shown.
#: The per-region choices the editor shows for the selected region: ``{name: {"hotkey": key or None, "checked"}}``.
READ_CHOICES_JS = """
const found = {};
for (const input of document.querySelectorAll('.lsf-choices input[name]')) {
  const text = (input.closest('label') || input.parentElement).textContent;
  const hotkey = text.match(/\\[(.)\\]/);
  found[input.name] = {hotkey: hotkey ? hotkey[1] : null, checked: input.checked};
}
return found;
"""

#: The label buttons of the editor's Labels tags: ``{label: hotkey or null}``.
READ_LABEL_HOTKEYS_JS = """
const found = {};
for (const label of document.querySelectorAll('.lsf-label')) {
  const hotkey = label.querySelector('.lsf-label__hotkey');
  const text = label.querySelector('.lsf-label__text') || label;
  found[text.textContent.replace(hotkey ? hotkey.textContent : '', '').trim()] =
    hotkey ? hotkey.textContent.trim() : null;
}
return found;
"""

READ_SELECTION_JS = """
const details = document.querySelector('.lsf-detailed-region');
if (!details || !document.querySelector('.lsf-outliner .lsf-tree-treenode-selected')) return null;
return {
  details: details.textContent,
  choices: [...document.querySelectorAll('.lsf-choices input[name]')].map(input => input.name),
};
"""

#: The labeling editor has loaded a task: its region list has rows and its image has been decoded.
EDITOR_READY_JS = """
const image = document.querySelector('img[alt="' + arguments[0] + '"]');
return (!arguments[1] || document.querySelectorAll('.lsf-outliner .lsf-tree__node').length > 0)
  && !!image && image.complete && image.naturalWidth > 0;
"""


#: Where the editor shows the image: its rectangle in screenshot pixels (CSS pixels times the device pixel ratio).
IMAGE_RECT_JS = """
const image = document.querySelector('img[alt="' + arguments[0] + '"]');
if (!image) return null;
const box = image.getBoundingClientRect(), ratio = window.devicePixelRatio || 1;
return [box.left * ratio, box.top * ratio, box.width * ratio, box.height * ratio];
"""


class BrowserError(RuntimeError):
    """Chromium, chromedriver or Selenium is missing, or the browser did not do what it was asked in time."""


@dataclass(frozen=True)
class OutlinerRow:
    """One region as the editor's region list shows it."""

    index: int
    #: The region class, lower case: ``brushregion``, ``polygonregion``, ``keypointregion``, ...
    kind: str
    #: The label text shown for the region (its labels, joined).
    label: str
    #: The region's score as printed (two decimals), or None.
    score: str | None
    #: The row carries the "predicted" sparkle icon: the region came from a prediction.
    from_prediction: bool


@dataclass(frozen=True)
class SelectedRegion:
    #: The text of the region details panel ("Info" tab): index, labels, the region's id, its results.
    details: str
    #: The ``name`` of every choice input the editor shows for it (per-region Choices appear on selection).
    choices: list[str]


@dataclass(frozen=True)
class AnnotationTab:
    name: str
    selected: bool
    draft: bool


class Browser:
    """One headless Chromium with a fresh profile; use as a context manager."""

    def __init__(self, log_path: Path, lifetime_s: float = 600):
        self.log_path = log_path
        self.lifetime_s = lifetime_s
        self.profile_dir: Path | None = None
        self.driver: Any = None
        self._service: Any = None
        self._watchdog: threading.Timer | None = None
        self.killed_by_watchdog = False

    # --- life cycle ---

    def __enter__(self) -> Browser:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
            if not Path(path).exists():
                raise BrowserError(f"{path} does not exist: `apt-get install -y chromium chromium-driver` ({package})")
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError as error:
            raise BrowserError(f"Selenium is not installed: `pip install -e '.[test]'` ({error})") from error

        self.profile_dir = Path(tempfile.mkdtemp(prefix="ls-al-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={self.profile_dir}"):
            options.add_argument(flag)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Its own session: chromedriver and every Chromium process it starts share one process group to kill.
        self._service = Service(CHROMEDRIVER, log_output=str(self.log_path), popen_kw={"start_new_session": True})
        self._watchdog = threading.Timer(self.lifetime_s, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()
        try:
            self.driver = webdriver.Chrome(options=options, service=self._service)
        except Exception as error:
            self.close()
            raise BrowserError(f"Chromium did not start: {error}\n{self.log_tail()}") from error
        self.driver.command_executor.client_config.timeout = COMMAND_TIMEOUT_S
        self.driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        self.driver.set_script_timeout(SCRIPT_TIMEOUT_S)

    def _expire(self) -> None:
        self.killed_by_watchdog = True
        self._kill_processes()

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception:  # the processes are killed below anyway
                pass
            self.driver = None
        self._kill_processes()
        if self.profile_dir is not None:
            shutil.rmtree(self.profile_dir, ignore_errors=True)

    def _kill_processes(self) -> None:
        """SIGKILL chromedriver's process group, then any process still using this browser's profile folder."""
        process = getattr(self._service, "process", None)
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(timeout=10)
            except Exception:
                pass
        if self.profile_dir is None:
            return
        marker = str(self.profile_dir).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return f"({self.log_path} does not exist)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # --- Label Studio ---

    def login(self, url: str, username: str = LS_USERNAME, password: str = LS_PASSWORD) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.get(url.rstrip("/") + "/user/login/")
        self.driver.find_element(By.NAME, "email").send_keys(username)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "form").submit()
        try:
            WebDriverWait(self.driver, LOGIN_TIMEOUT_S).until(lambda driver: "/user/login" not in driver.current_url)
        except Exception as error:
            raise BrowserError(f"login as {username} failed; page {self.driver.current_url}") from error

    def open_task(
        self, url: str, project_id: int, task_id: int, image_name: str = "image", with_regions: bool = True
    ) -> float:
        """Open a task in the labeling editor (Data Manager with ``?task=``); wait until its image is shown and
        (``with_regions``) its regions are listed.

        On a project's first visit the Data Manager creates its first view and can navigate to it (``?tab=N``),
        dropping ``?task=``, so the editor never opens (seen once in CI). Then the task URL is loaded once more.

        Returns the seconds the editor took to show them, the retry included.
        """
        from selenium.webdriver.support.ui import WebDriverWait

        task_url = f"{url.rstrip('/')}/projects/{project_id}/data?task={task_id}"
        started = time.monotonic()
        pages = []
        last_error: Exception | None = None
        for _attempt in range(2):
            self.driver.get(task_url)
            try:
                WebDriverWait(self.driver, EDITOR_TIMEOUT_S, poll_frequency=0.25).until(
                    lambda driver: driver.execute_script(EDITOR_READY_JS, image_name, with_regions)
                )
                return time.monotonic() - started
            except Exception as error:  # any failed wait is retried once, then reported below
                last_error = error
                pages.append(f"{self.driver.current_url}: {self.page_text()!r}")
        raise BrowserError(
            f"the editor for task {task_id} showed no {'regions' if with_regions else 'image'} within "
            f"{EDITOR_TIMEOUT_S} s, twice; pages: {' | '.join(pages)}"
        ) from last_error

    def page_text(self, characters: int = 300) -> str:
        """The start of the page's visible text (for error messages); '' when it cannot be read."""
        try:
            return str(self.driver.execute_script("return document.body ? document.body.innerText : ''"))[:characters]
        except Exception:  # a broken page must not hide the error being reported
            return ""

    def outliner(self) -> list[OutlinerRow]:
        rows = self.driver.execute_async_script(READ_OUTLINER_JS)
        if isinstance(rows, dict):
            raise BrowserError(f"reading the region list failed: {rows.get('error')}")
        return [OutlinerRow(**row) for row in rows]

    def select_region(self, kind: str, skip_label: str | None = None) -> SelectedRegion:
        """Click the first region-list row of region class ``kind`` (e.g. ``polygonregion``), leaving out rows that
        show ``skip_label``, and read the details."""
        from selenium.webdriver.support.ui import WebDriverWait

        args = (kind, skip_label) if skip_label else (kind,)
        clicked = self.driver.execute_async_script(CLICK_ROW_JS, *args)
        if clicked is not True:
            raise BrowserError(f"no {kind} row to click in the region list ({clicked})")
        try:
            selection = WebDriverWait(self.driver, SELECT_TIMEOUT_S, poll_frequency=0.2).until(
                lambda driver: driver.execute_script(READ_SELECTION_JS)
            )
        except Exception as error:
            raise BrowserError(f"clicking a {kind} row selected no region within {SELECT_TIMEOUT_S} s") from error
        return SelectedRegion(**selection)

    def press(self, *keys: str) -> None:
        """Press a key chord on the editor, e.g. ``press(Keys.ALT, ".")`` (modifiers held while the last key goes)."""
        from selenium.webdriver.common.action_chains import ActionChains

        chain = ActionChains(self.driver)
        for modifier in keys[:-1]:
            chain.key_down(modifier)
        chain.send_keys(keys[-1])
        for modifier in reversed(keys[:-1]):
            chain.key_up(modifier)
        chain.perform()

    def selected_region(self) -> SelectedRegion | None:
        """The region selected in the editor now (its details panel and choices), or None."""
        selection = self.driver.execute_script(READ_SELECTION_JS)
        return SelectedRegion(**selection) if selection else None

    def region_choices(self) -> dict[str, dict[str, Any]]:
        """The selected region's per-region choices: ``{class: {"hotkey": key or None, "checked": bool}}``."""
        return self.driver.execute_script(READ_CHOICES_JS) or {}

    def label_hotkeys(self) -> dict[str, str | None]:
        """The editor's label buttons (BrushLabels, PolygonLabels, ...): ``{label: hotkey or None}``."""
        return self.driver.execute_script(READ_LABEL_HOTKEYS_JS) or {}

    def annotation_tabs(self) -> list[AnnotationTab]:
        return [AnnotationTab(**tab) for tab in self.driver.execute_script(READ_TABS_JS)]

    def click_image(self, x: float, y: float, image_name: str = "image") -> None:
        """One mouse click on the task's image at ``(x, y)``, fractions of its width and height from the top left."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        image = self.driver.find_element(By.CSS_SELECTOR, f'img[alt="{image_name}"]')
        box = image.rect  # CSS pixels; the offset counts from the element's centre
        offset = (round((x - 0.5) * box["width"]), round((y - 0.5) * box["height"]))
        ActionChains(self.driver).move_to_element_with_offset(image, *offset).click().perform()

    def image_rect(self, image_name: str = "image") -> tuple[int, int, int, int]:
        """``(left, top, width, height)`` of the task's image on the page, in screenshot pixels."""
        rect = self.driver.execute_script(IMAGE_RECT_JS, image_name)
        if not rect:
            raise BrowserError(f"no image {image_name!r} in the editor")
        left, top, width, height = (int(round(value)) for value in rect)
        return left, top, width, height

    def screenshot(self, path: Path, settle_s: float = 1.0) -> Path:
        """Save a PNG of the page after ``settle_s`` (the canvas draws brush masks after the region list)."""
        time.sleep(settle_s)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise BrowserError(f"could not save a screenshot to {path}")
        return path
