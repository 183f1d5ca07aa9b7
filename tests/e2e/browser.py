"""Helpers for browser tests: wait for a Streamlit run to finish, check for errors, save screenshots."""

from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError, expect

RERUN_START_MS = 1000
SCREENSHOT_DIR = Path(__file__).resolve().parent / "screenshots"


def wait_for_app(page):
    """Wait until the app is connected, its script has finished its current run and every element is drawn.

    After a click the rerun may not have started yet (a busy server takes a moment): first give it up
    to RERUN_START_MS to start, then wait for it to finish.
    """
    page.wait_for_selector("[data-testid='stApp']", state="attached")
    try:
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='running']", state="attached",
                               timeout=RERUN_START_MS)
    except PlaywrightTimeoutError:
        pass  # the run was quicker than the poll, or nothing reran
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached")
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached")
    # A widget whose code the browser is still loading stands as a grey placeholder for a few seconds
    # after the run has finished.
    page.wait_for_selector("[data-testid='stSkeleton']", state="detached")


def assert_no_exception(page):
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()


def save_screenshot(page, name, *, full_page=True):
    """Save tests/e2e/screenshots/<name>.png; ``full_page`` captures the whole page, not just the window.

    Streamlit scrolls inside its own container, so Playwright's full_page option alone sees only the
    window: the viewport is stretched to the content's height for the shot, then restored.
    """
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    viewport = page.viewport_size
    if full_page and viewport is not None:
        content_height = page.evaluate(
            """() => Math.max(...['[data-testid="stMain"]', '[data-testid="stAppViewContainer"]',
                                  '[data-testid="stSidebarContent"]']
                .map((selector) => document.querySelector(selector))
                .filter((element) => element !== null)
                .map((element) => element.scrollHeight), 0)"""
        )
        page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], content_height)})
        page.wait_for_timeout(300)
        page.screenshot(path=str(path))
        page.set_viewport_size(viewport)
    else:
        page.screenshot(path=str(path))
    return path


# What a table shows, cell by cell: {"column" (its title), "row" (0 = first data row, -1 = the header),
# "text", "need", "room"}, widths in CSS pixels. A cell is shown whole when need <= room.
# - st.table is HTML: the text is in the DOM, and a cell (or the table in its frame) is cut when its content
#   is wider than its box (scrollWidth > clientWidth).
# - st.dataframe and st.data_editor draw on a canvas (glide-data-grid), and its hidden accessibility table
#   holds raw values, not the drawn text. So this reads what the grid itself draws: its own cell contents
#   (displayData) and column widths, from the props of the grid's React component, and measures each text
#   in the grid's font (CSS variables on the grid) plus the cell padding on both sides. Room is the column's
#   width, or less where the column runs past the grid's right edge (reachable only by scrolling sideways).
_TABLE_CELLS_JS = """
element => {
  const cells = [];
  const grid = element.querySelector(".stDataFrameGlideDataEditor");
  if (grid === null) {
    const frame = element.getBoundingClientRect();
    const table = element.querySelector("table");
    const titles = Array.from(table.tHead ? table.tHead.rows[0].cells : [], (cell) => cell.innerText.trim());
    const headerRows = table.tHead ? table.tHead.rows.length : 0;
    for (const row of table.rows) {
      for (const cell of row.cells) {
        const box = cell.getBoundingClientRect();
        cells.push({column: titles[cell.cellIndex] ?? String(cell.cellIndex), row: row.rowIndex - headerRows,
                    text: cell.innerText.trim(), need: cell.scrollWidth,
                    room: Math.min(cell.clientWidth, frame.right - box.left)});
      }
    }
    return cells;
  }
  const canvas = grid.querySelector("canvas[data-testid='data-grid-canvas']");
  const fiberKey = Object.keys(canvas).find((key) => key.startsWith("__reactFiber"));
  let fiber = fiberKey === undefined ? null : canvas[fiberKey];
  let props = null;
  for (; fiber && props === null; fiber = fiber.return) {
    const candidate = fiber.memoizedProps;
    if (candidate && typeof candidate.getCellContent === "function" && Array.isArray(candidate.columns)
        && candidate.columns.every((column) => typeof column.width === "number")) {
      props = candidate;
    }
  }
  if (props === null) {
    throw new Error("cannot find the grid's columns and cells: Streamlit's dataframe has changed");
  }
  const style = getComputedStyle(grid);
  const measure = document.createElement("canvas").getContext("2d");
  measure.font = `${style.getPropertyValue("--gdg-base-font-style")} ${style.getPropertyValue("--gdg-font-family")}`;
  const padding = parseFloat(style.getPropertyValue("--gdg-cell-horizontal-padding"));
  const gridWidth = canvas.getBoundingClientRect().width;
  let left = 0;
  props.columns.forEach((column, index) => {
    const room = Math.min(column.width, gridWidth - left);
    left += column.width;
    for (let row = 0; row < props.rows; row++) {
      const content = props.getCellContent([index, row]);
      const text = String(content.displayData ?? "");
      cells.push({column: column.title || String(index), row, text,
                  need: text === "" ? 0 : measure.measureText(text).width + 2 * padding, room});
    }
  });
  return cells;
}
"""

TABLE_SELECTOR = "[data-testid='stTable'], [data-testid='stDataFrame']"


def table_cells(table):
    """The cells of one st.table / st.dataframe / st.data_editor as drawn (see _TABLE_CELLS_JS)."""
    table.scroll_into_view_if_needed()
    if table.get_attribute("data-testid") == "stDataFrame":
        table.locator("canvas[data-testid='data-grid-canvas']").wait_for()  # a grid is drawn once in view
    return table.evaluate(_TABLE_CELLS_JS)


def is_cut(cell):
    return cell["need"] > cell["room"] + 0.5  # half a pixel of rounding


def cut_cells(page):
    """Every cell of every table on the page that is not shown whole, as (table index, cell) pairs."""
    tables = page.locator(TABLE_SELECTOR)
    return [(index, cell) for index in range(tables.count()) for cell in table_cells(tables.nth(index))
            if is_cut(cell)]


# Every visible text node of the page, measured against each ancestor that clips (overflow other than
# visible), up to the first that scrolls: a text reaching past such a box is cut off, whether the cut
# shows as an ellipsis or mid-word. A box that scrolls sideways counts too (nobody scrolls a label
# sideways); one that scrolls down does not, since the page itself does. Boxes under 2 pixels hold
# screen-reader-only text, not something a person reads. Text inside components' iframes is not seen.
_CUT_TEXTS_SCRIPT = r"""
() => {
    const testId = (element) => {
        const owner = element.closest('[data-testid]');
        return owner ? owner.getAttribute('data-testid') : element.tagName.toLowerCase();
    };
    const cut = [];
    const root = document.querySelector('[data-testid="stApp"]');
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const text = node.textContent.trim();
        const parent = node.parentElement;
        if (!text || !parent || !parent.checkVisibility({visibilityProperty: true, opacityProperty: true})) {
            continue;
        }
        const range = document.createRange();
        range.selectNodeContents(node);
        const rects = [...range.getClientRects()].filter((rect) => rect.width > 0 && rect.height > 0);
        if (rects.length === 0) continue;
        // A chart's SVG text box spans the font's whole ascent and descent, blank beside the glyphs
        // across the line: a quarter of the font size on those two sides is not text.
        let insetX = 0, insetY = 0;
        if (parent instanceof SVGElement) {
            const blank = 0.25 * (parseFloat(getComputedStyle(parent).fontSize) || 10);
            const turned = /rotate\(\s*-?(90|270)/.test(parent.getAttribute('transform') || '');
            [insetX, insetY] = turned ? [blank, 0] : [0, blank];
        }
        const left = Math.min(...rects.map((rect) => rect.left)) + insetX;
        const right = Math.max(...rects.map((rect) => rect.right)) - insetX;
        const top = Math.min(...rects.map((rect) => rect.top)) + insetY;
        const bottom = Math.max(...rects.map((rect) => rect.bottom)) - insetY;
        for (let box = parent; box && box !== document.body; box = box.parentElement) {
            const style = getComputedStyle(box);
            const clipsX = style.overflowX !== 'visible';
            const scrolls = [style.overflowX, style.overflowY].some((way) => way === 'auto' || way === 'scroll');
            const hidesY = style.overflowY === 'hidden' || style.overflowY === 'clip';
            if (!clipsX && !hidesY) continue;
            const frame = box.getBoundingClientRect();
            const innerLeft = frame.left + box.clientLeft;
            const innerTop = frame.top + box.clientTop;
            if (box.clientWidth < 2 || box.clientHeight < 2) break;
            const pastX = clipsX && (left < innerLeft - 1 || right > innerLeft + box.clientWidth + 1);
            const pastY = hidesY && (top < innerTop - 1 || bottom > innerTop + box.clientHeight + 1);
            if (pastX || pastY) {
                cut.push({text: text.slice(0, 80), element: testId(parent), clipped_by: testId(box),
                          text_width: Math.round(right - left), room: box.clientWidth,
                          how: [pastX ? 'width' : '', pastY ? 'height' : ''].join(' ').trim()});
                break;
            }
            if (scrolls) break;
        }
    }
    // A select box or a number field shows its value in an input, whose text is no text node.
    for (const field of root.querySelectorAll('input, textarea')) {
        if (['checkbox', 'radio', 'range', 'file', 'hidden'].includes(field.type) || !field.value
            || !field.checkVisibility({visibilityProperty: true, opacityProperty: true})) continue;
        if (field.scrollWidth > field.clientWidth + 1) {
            cut.push({text: field.value.slice(0, 80), element: testId(field), clipped_by: 'input',
                      text_width: field.scrollWidth, room: field.clientWidth, how: 'width'});
        }
    }
    return cut;
}
"""


def cut_texts(page):
    """Visible texts of the page that are cut off by a box too small for them (list of dicts, empty if none)."""
    return page.evaluate(_CUT_TEXTS_SCRIPT)


def render_tables(page):
    """Scroll every table into view until its grid is drawn: Streamlit draws a table only once it is seen."""
    tables = page.locator("[data-testid='stDataFrame']")
    for index in range(tables.count()):
        table = tables.nth(index)
        if table.is_visible():
            table.scroll_into_view_if_needed()
            table.locator(".dvn-scroller").wait_for(state="attached")
    page.locator("[data-testid='stMain']").evaluate("main => main.scrollTo(0, 0)")


def scrolling_tables(page):
    """Tables (st.dataframe, st.data_editor) that need a horizontal scroll to show all their columns."""
    return page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
            .filter((table) => table.checkVisibility())
            .map((table) => ({table, scroller: table.querySelector('.dvn-scroller')}))
            .filter(({scroller}) => scroller && scroller.scrollWidth > scroller.clientWidth + 1)
            .map(({table, scroller}) => ({columns: table.querySelectorAll('[role="columnheader"]').length,
                                          content_width: scroller.scrollWidth, room: scroller.clientWidth}))"""
    )


def students_link(page):
    """The link in the page's "Link for students" popover, opened for the reading and closed again."""
    page.get_by_role("button", name="Link for students").click()
    block = page.get_by_test_id("stCode").filter(has_text="http")
    text = block.inner_text().strip()
    page.keyboard.press("Escape")
    expect(block).to_have_count(0)
    wait_for_app(page)
    return text
