"""Benchmark: one student in headless Chromium doing bench/classroom.py's interactions; click to page at rest.

Each interaction is done the way a person does it (a click on the button, on the picture or on an
option; an arrow key on a slider) and timed in the page, from the release of the mouse button or key
to the page at rest: the app's script state back at "notRunning" after a run that started after the
input, no element still marked stale (a fragment's run in progress) or drawn as a placeholder while
its code loads, and every image loaded. That is the wait a student sees, the browser's own work
(receiving, rendering, downloading images) included.

"Play" (convolution lesson): at the top speed, how many steps per second the shown "Step k of N"
actually advances over 5 s, against the speed asked for.

Run: ``python -m bench.browser_clicks`` (convolution lesson, 20 interactions); ``--page stacks``;
``--clicks 5`` for a quick check; ``--server-flag runner.postScriptGC=false`` or ``--url`` as for
bench/classroom.py. Chromium is Debian's (``chromium`` on the PATH), driven by Playwright.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from collections import defaultdict

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import sync_playwright

from bench._common import (OPEN_PAGE, PAGE_INTERACTIONS, PAGE_PATHS, Summary, Unavailable, app_server,
                           machine_line, pick_interaction)
from tests.e2e.conftest import CHROMIUM_FLAGS  # the browser tests' settings (no sandbox, no network services)

VIEWPORT = {"width": 1400, "height": 1000}

# Runs in every frame before the page's own scripts: stamps the app's script-state changes and the
# last input release with one clock (milliseconds since the epoch, comparable across frames).
PROBE_SCRIPT = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const top = (() => { try { return window.top.document && window.top; } catch (error) { return window; } })();
  const noteInput = () => { top.__benchLastInput = now(); };
  window.addEventListener("pointerup", noteInput, true);
  window.addEventListener("keyup", noteInput, true);
  if (window !== top) return;
  window.__benchStates = [];
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      const state = mutation.target.getAttribute("data-test-script-state");
      if (mutation.target.getAttribute("data-testid") === "stApp" && state) {
        window.__benchStates.push({state, at: now()});
      }
    }
  }).observe(document, {attributes: true, attributeFilter: ["data-test-script-state"], subtree: true});
})();
"""
# True (as the time it became so) once a run started after ``since`` and the page is at rest again.
AT_REST_SINCE = """
(since) => {
  const app = document.querySelector("[data-testid='stApp']");
  const ran = window.__benchStates.some((change) => change.at >= since && change.state !== "notRunning");
  if (!ran || !app || app.getAttribute("data-test-script-state") !== "notRunning") return false;
  if (document.querySelector("[data-stale='true'], [data-testid='stSkeleton']")) return false;
  if (Array.from(document.images).some((image) => !image.complete)) return false;
  return performance.timeOrigin + performance.now();
}
"""
# (k, N) of the first "Step k of N" text in ``root``, looked for in open shadow roots and same-origin
# frames too (the stepping may move into a browser component).
FIND_STEP_SCRIPT = """
function findStep(root) {
  const pattern = /^\\s*Step (\\d+) of (\\d+)/;
  for (const element of root.querySelectorAll("*")) {
    let inner = null;
    if (element.shadowRoot) inner = findStep(element.shadowRoot);
    if (!inner && element.tagName === "IFRAME") {
      try { inner = element.contentDocument && findStep(element.contentDocument); } catch (error) { inner = null; }
    }
    if (inner) return inner;
    // Only elements whose own text begins with "Step": reading every element's whole text is slow.
    const head = element.firstChild;
    if (head && head.nodeType === Node.TEXT_NODE && head.nodeValue.trimStart().startsWith("Step")) {
      const match = pattern.exec(element.textContent);
      if (match) return [Number(match[1]), Number(match[2])];
    }
  }
  return null;
}
"""
# Wait (up to startTimeoutMs) for the shown step to move, then sample it every 50 ms for ``seconds``:
# {total: N, samples: [[ms since the epoch, k], ...]} starting at the first move; null if it never moved.
WATCH_PLAY_SCRIPT = f"""
async ({{seconds, startTimeoutMs}}) => {{
  const findStep = {FIND_STEP_SCRIPT};
  const now = () => performance.timeOrigin + performance.now();
  const pause = () => new Promise((resolve) => setTimeout(resolve, 50));
  const first = findStep(document);
  const giveUp = now() + startTimeoutMs;
  let shown = first;
  while (!shown || shown[0] === first[0]) {{
    if (now() > giveUp) return null;
    await pause();
    shown = findStep(document) || shown;
  }}
  const samples = [[now(), shown[0]]];
  const end = now() + 1000 * seconds;
  while (now() < end) {{
    await pause();
    shown = findStep(document) || shown;
    samples.push([now(), shown[0]]);
  }}
  return {{total: first[1], samples}};
}}
"""


# ---------------------------------------------------------------------------------------------------
# Waiting


def wait_at_rest(page, since, timeout_ms):
    """Milliseconds since the epoch at which the page was at rest after a run that began after ``since``."""
    return page.wait_for_function(AT_REST_SINCE, arg=since, polling=10, timeout=timeout_ms).json_value()


def last_input_at(page):
    return page.evaluate("window.__benchLastInput")


def open_page(page, base_url, page_name, timeout_ms):
    """Load the page; returns seconds from navigation start to the page at rest."""
    page.goto(f"{base_url}/{PAGE_PATHS[page_name]}")
    start = page.evaluate("performance.timeOrigin")
    return (wait_at_rest(page, start, timeout_ms) - start) / 1000.0


# ---------------------------------------------------------------------------------------------------
# Doing an interaction the way a person does


def _container(page, key):
    # Streamlit marks a keyed element's container with the class "st-key-<key>".
    container = page.locator(f".st-key-{key}")
    if container.count() == 0:
        raise Unavailable("absent")
    return container.first


def _click_button(page, interaction, rng):
    key = interaction.key
    button = _container(page, key).get_by_role("button").first
    if button.is_disabled():
        raise Unavailable("disabled")
    button.click()


def _choose_in_selectbox(page, selectbox, rng):
    # Opened from the keyboard: a click opens the list too, but the scrolling Playwright does before
    # clicking can close it again at once.
    selectbox.get_by_role("combobox").focus()
    page.keyboard.press("ArrowDown")
    dropdown = page.get_by_test_id("stSelectboxVirtualDropdown")
    dropdown.get_by_role("option").first.wait_for()
    others = dropdown.locator("[role='option'][aria-selected='false']").all()
    if not others:
        page.keyboard.press("Escape")
        raise Unavailable("only one option")
    rng.choice(others).click()


def _choose_in_radio(radio, rng):
    others = radio.locator("[data-testid='stRadioOption']:not([data-selected='true'])").all()
    if not others:
        raise Unavailable("only one option")
    rng.choice(others).click()


def _move_slider(page, slider, rng):
    _nudge(page, slider.get_by_role("slider").first, rng)


def _nudge(page, thumb, rng):
    # One arrow key on a slider's thumb: the next value up or down, as a student nudges it.
    value, low, high = float(thumb.input_value()), float(thumb.get_attribute("min")), float(thumb.get_attribute("max"))
    if low == high:
        raise Unavailable("only one option")
    right = value < high and (value == low or rng.random() < 0.5)
    thumb.focus()
    page.keyboard.press("ArrowRight" if right else "ArrowLeft")


def _choose(page, interaction, rng):
    key = interaction.key
    container = _container(page, key)
    for test_id, choose in (("stSelectbox", lambda widget: _choose_in_selectbox(page, widget, rng)),
                            ("stRadio", lambda widget: _choose_in_radio(widget, rng)),
                            ("stSlider", lambda widget: _move_slider(page, widget, rng))):
        widget = container.get_by_test_id(test_id)
        if widget.count():
            choose(widget.first)
            return
    raise Unavailable("not a selectbox, radio or slider")


def _toggle(page, interaction, rng):
    key = interaction.key
    _container(page, key).locator("label").first.click()


def _picture_box(page, key):
    picture = _container(page, key).locator(".picture img")
    picture.scroll_into_view_if_needed()  # the mouse only reaches what is on screen
    return picture.bounding_box()  # in the page's coordinates


def _click_picture(page, interaction, rng):
    key = interaction.key
    box = _picture_box(page, key)
    page.mouse.click(box["x"] + rng.uniform(0.05, 0.95) * box["width"],
                     box["y"] + rng.uniform(0.05, 0.95) * box["height"])


def _drag_on_picture(page, interaction, rng):
    key = interaction.key
    box = _picture_box(page, key)
    start_x = box["x"] + rng.uniform(0.1, 0.7) * box["width"]
    start_y = box["y"] + rng.uniform(0.1, 0.7) * box["height"]
    page.mouse.move(start_x, start_y)
    page.mouse.down()
    page.mouse.move(start_x + rng.uniform(20, 80), start_y + rng.uniform(20, 80), steps=4)
    page.mouse.up()


def _rerun(page, interaction, rng):
    page.locator("body").press("r")  # Streamlit's own shortcut


def _set_control(page, interaction, rng):
    # The control panel's own elements: a slider nudged by one arrow key, another button or menu option
    # clicked, a number stepped by an arrow key, a switch clicked.
    box = _container(page, interaction.key).locator(f"[data-control='{interaction.control}']")
    if box.count() == 0 or box.locator(".fixed").count():
        raise Unavailable("absent")
    field = box.locator("input, select").first
    if field.is_disabled():
        raise Unavailable("disabled")
    kind = field.evaluate("(element) => element.type")
    if kind == "range":
        _nudge(page, field, rng)
    elif kind == "radio":
        others = box.locator("label:not(:has(input:checked))").all()
        if not others:
            raise Unavailable("only one option")
        rng.choice(others).click()
    elif kind.startswith("select"):
        # From the keyboard, as the step to the next or previous option a student makes (a closed list).
        count, chosen = field.locator("option").count(), int(field.input_value())
        if count < 2:
            raise Unavailable("only one option")
        down = chosen < count - 1 and (chosen == 0 or rng.random() < 0.5)
        field.focus()
        page.keyboard.press("ArrowDown" if down else "ArrowUp")
    elif kind == "checkbox":
        field.click()
    else:
        field.focus()
        page.keyboard.press(rng.choice(("ArrowUp", "ArrowDown")))


ACTIONS = {"click": _click_button, "choose": _choose, "toggle": _toggle, "click_image": _click_picture,
           "drag_image": _drag_on_picture, "set": _set_control, "rerun": _rerun}


def do_interaction(page, interaction, rng, timeout_ms):
    """Do ``interaction``; returns seconds from the input's release to the page at rest."""
    page.evaluate("window.__benchLastInput = null")
    ACTIONS[interaction.action](page, interaction, rng)
    since = last_input_at(page)
    if since is None:
        raise RuntimeError(f"'{interaction.name}': no mouse or key release was seen")
    return (wait_at_rest(page, since, timeout_ms) - since) / 1000.0


# ---------------------------------------------------------------------------------------------------
# Play


def shown_step(page):
    """(k, N) of the "Step k of N" text shown; None when there is none."""
    return page.evaluate(f"() => ({FIND_STEP_SCRIPT})(document)")


PLAYER = ".step-player[data-kind='conv']"  # the convolution's step player (views/components/step_player/)

# A real click on the player's Next: from the browser receiving it to the step number changing and the
# next animation frame after that (the player answers in the browser; the server is not involved).
# Kept on window, not returned: Playwright waits for a returned promise, and this one waits for the click.
WATCH_PLAYER_NEXT = """(root) => { window.__convscopeNext = new Promise((resolve) => {
  const times = {};
  root.querySelector('[data-action=next]').addEventListener('click', (event) => {
    times.receivedAt = event.timeStamp;
  }, {capture: true, once: true});
  const observer = new MutationObserver(() => {
    observer.disconnect();
    times.changedAt = performance.now();
    requestAnimationFrame(() => { times.frameAt = performance.now(); resolve(times); });
  });
  observer.observe(root.querySelector('.step-number'), {childList: true, characterData: true, subtree: true});
}); }"""


def measure_player_next(page, clicks):
    """Seconds from each real click on the player's Next to the frame showing the new step."""
    player = page.locator(PLAYER)
    if player.count() == 0:
        raise Unavailable("no step player on the page")
    player.scroll_into_view_if_needed()
    waits = []
    for _ in range(clicks):
        player.evaluate(WATCH_PLAYER_NEXT)
        player.locator("[data-action=next]").click()
        times = page.evaluate("() => window.__convscopeNext")
        waits.append((times["frameAt"] - times["receivedAt"]) / 1000.0)
    return waits


def measure_play(page, seconds, timeout_ms):
    """Play at the player's top speed; returns (steps per second shown, the speed asked, seconds until the first step).

    The rate counts from the first step the player takes over ``seconds``, or until the last step if it
    comes sooner. Raises Unavailable when the page has no step player.
    """
    player = page.locator(PLAYER)
    if player.count() == 0 or shown_step(page) is None:
        raise Unavailable("no step player with a 'Step k of N' text on the page")
    speeds = player.locator("[data-speed]")
    top = speeds.nth(speeds.count() - 1)
    top_speed = float(top.get_attribute("data-speed"))
    top.click()
    play = player.locator("[data-action=play]")
    play.click()
    pressed_at = last_input_at(page)
    watch = page.evaluate(WATCH_PLAY_SCRIPT, {"seconds": seconds, "startTimeoutMs": timeout_ms})
    play.click()  # pause
    if watch is None:
        raise Unavailable("the shown step did not move after Play")
    return _steps_per_second(watch), top_speed, (watch["samples"][0][0] - pressed_at) / 1000.0


def _steps_per_second(watch):
    (start, first_step), (end, last_step) = watch["samples"][0], watch["samples"][-1]
    if last_step == watch["total"]:  # stopped at the last step: count up to when it got there
        end = next(at for at, step in watch["samples"] if step == last_step)
    if end <= start:
        return float("nan")  # the first step seen was already the last one
    return (last_step - first_step) / ((end - start) / 1000.0)


# ---------------------------------------------------------------------------------------------------


class StudentRecord:
    """One student's timings by interaction name, skipped interactions, timeouts, exceptions shown."""

    def __init__(self):
        self.timings = defaultdict(list)
        self.skipped = defaultdict(int)   # (interaction name, reason) -> count
        self.timeouts = []                # names of the interactions that timed out
        self.exceptions = []              # texts of the exceptions on the page at the end


def new_page(browser, timeout_ms):
    """A page in a fresh browser context (its own cookies and cache: a new student), with the probe."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(PROBE_SCRIPT)
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    return page


def _one_interaction(page, interactions, rng, record, timeout_ms):
    # A student who cannot do what they meant (widget absent or disabled) does another thing instead.
    unavailable = set()
    while (interaction := pick_interaction(interactions, rng, unavailable)) is not None:
        try:
            record.timings[interaction.name].append(do_interaction(page, interaction, rng, timeout_ms))
            return
        except Unavailable as reason:
            record.skipped[(interaction.name, str(reason))] += 1
            unavailable.add(interaction.name)
        except PlaywrightTimeoutError:
            record.timeouts.append(interaction.name)
            return


def run_student(browser, arguments, base_url):
    """One student's session: open the page, then the interactions with think times; returns a StudentRecord."""
    rng = random.Random(arguments.seed)
    timeout_ms = arguments.timeout * 1000
    page = new_page(browser, timeout_ms)
    record = StudentRecord()
    record.timings[OPEN_PAGE].append(open_page(page, base_url, arguments.page, timeout_ms))
    for _ in range(arguments.clicks):
        time.sleep(rng.uniform(*arguments.think))
        _one_interaction(page, PAGE_INTERACTIONS[arguments.page], rng, record, timeout_ms)
    record.exceptions = page.get_by_test_id("stException").all_inner_texts()
    if arguments.screenshot:
        page.screenshot(path=arguments.screenshot)
    page.context.close()
    return record


def first_visit(browser, arguments, base_url):
    """Seconds to load the page once after the server started (imports, engine warm-up), not a student's wait."""
    page = new_page(browser, arguments.timeout * 1000)
    seconds = open_page(page, base_url, arguments.page, arguments.timeout * 1000)
    page.context.close()
    return seconds


def report_player(browser, arguments, base_url):
    """A fresh convolution lesson (default settings): Next in the step player, then Play at the top speed."""
    page = new_page(browser, arguments.timeout * 1000)
    open_page(page, base_url, "convolution", arguments.timeout * 1000)
    try:
        waits = measure_player_next(page, arguments.clicks)
        summary = Summary.of(waits)
        print(f"Next in the step player ({summary.count} clicks), click to the new step on screen: median "
              f"{summary.p50:.1f} ms, p95 {summary.p95:.1f} ms, max {summary.largest:.1f} ms")
        rate, asked, start = measure_play(page, arguments.play_seconds, arguments.timeout * 1000)
        print(f"Play (convolution lesson) at the top speed, {asked:g} steps/s asked: {rate:.2f} steps/s shown "
              f"over {arguments.play_seconds:g} s = {rate / asked:.2f} of the speed asked; first step "
              f"{start:.2f} s after the click")
    except Unavailable as reason:
        print(f"Step player: skipped ({reason})")
    finally:
        page.context.close()


def print_record(record):
    timings = record.timings
    print(f"{'interaction':<22}{'count':>6}{'median':>9}{'p95':>9}{'max':>9}"
          "   ms from the input's release to the page at rest")
    names = [OPEN_PAGE] + sorted(name for name in timings if name != OPEN_PAGE)
    every_click = [seconds for name in names if name != OPEN_PAGE for seconds in timings[name]]
    rows = [(name, timings[name]) for name in names if timings[name]] + [("all interactions", every_click)]
    for name, seconds in rows:
        summary = Summary.of(seconds)
        print(f"{name:<22}{summary.count:>6}{summary.p50:>9.1f}{summary.p95:>9.1f}{summary.largest:>9.1f}")
    for (name, reason), count in sorted(record.skipped.items()):
        print(f"  skipped {count} x '{name}': widget {reason} (another interaction was done instead)")
    print(f"Errors: {len(record.timeouts) + len(record.exceptions)} (timeouts {len(record.timeouts)}"
          + (f": {', '.join(record.timeouts)}" if record.timeouts else "")
          + f"; exceptions on the page at the end {len(record.exceptions)})")
    for text in record.exceptions:
        print(f"  {text.splitlines()[0][:200]}")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", choices=sorted(PAGE_INTERACTIONS), default="convolution")
    parser.add_argument("--clicks", type=int, default=20, help="interactions (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN", "MAX"),
                        help="seconds paused before each interaction, uniform (default 1 3)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a wait fails")
    parser.add_argument("--play-seconds", type=float, default=5.0, help="how long Play is watched (default 5)")
    parser.add_argument("--no-play", action="store_true", help="skip the step player's Next and Play measurements")
    parser.add_argument("--url", help="use the server at this URL instead of starting one")
    parser.add_argument("--server-flag", action="append", default=[], metavar="SECTION.OPTION=VALUE",
                        help="passed to the server started here, e.g. runner.postScriptGC=false (repeatable)")
    parser.add_argument("--screenshot", help="save the page as PNG here after the interactions")
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Chromium not found: install Debian's package ('apt-get install -y chromium').")
    print(machine_line())
    with app_server(arguments.url, arguments.server_flag) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        print(f"Server: {server.command}; browser: Chromium {browser.version}, "
              f"{VIEWPORT['width']}x{VIEWPORT['height']}")
        print(f"One student on page '{arguments.page}', {arguments.clicks} interactions, think time "
              f"{arguments.think[0]:g}-{arguments.think[1]:g} s, seed {arguments.seed}")
        try:
            print(f"First visit (on a fresh server: imports, engine warm-up): "
                  f"{first_visit(browser, arguments, server.url):.1f} s")
            record = run_student(browser, arguments, server.url)
            print()
            print_record(record)
            if not arguments.no_play:
                report_player(browser, arguments, server.url)
        except PlaywrightError as error:
            raise SystemExit(f"The browser failed: {error}") from error
        finally:
            browser.close()
    return 1 if record.timeouts or record.exceptions else 0


if __name__ == "__main__":
    raise SystemExit(main())
