"""Helpers for browser tests: wait for a Streamlit run to finish, check for errors, save screenshots."""

from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

RERUN_START_MS = 1000
SCREENSHOT_DIR = Path(__file__).resolve().parent / "screenshots"


def wait_for_app(page):
    """Wait until the app is connected and its script has finished its current run.

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
