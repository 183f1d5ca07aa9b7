// The kernel grid: one number field per weight (see __init__.py). A field whose text is a number is sent
// when it is left; any other text is refused here, with a note, and the weight stays as it was.

const DECIMALS = 3; // shown; the field's title holds the weight in full

function shown(weight) {
  return String(Number(weight.toFixed(DECIMALS)));
}

function parse(text) {
  const cleaned = text.trim().replace(",", "."); // a decimal comma is a decimal point
  if (cleaned === "" || !/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(cleaned)) return null;
  const number = Number(cleaned);
  return Number.isFinite(number) ? number : null;
}

function build(body, rows) {
  body.replaceChildren();
  rows.forEach((weights, row) => {
    const line = document.createElement("tr");
    weights.forEach((_, col) => {
      const cell = document.createElement("td");
      const field = document.createElement("input");
      field.type = "text";
      field.inputMode = "decimal";
      field.spellcheck = false;
      field.dataset.row = row;
      field.dataset.col = col;
      field.setAttribute("aria-label", `Weight at row ${row + 1}, column ${col + 1}`);
      cell.append(field);
      line.append(cell);
    });
    body.append(line);
  });
}

// Called again whenever the data change; the listeners are installed once per grid and read what the
// latest call left in `grids`. Streamlit keeps the cleanup of the latest call and runs it when the grid
// leaves the page.
const grids = new WeakMap(); // root element -> {limit, setTriggerValue, cleanup}

function send(root, field) {
  const { limit, setTriggerValue } = grids.get(root);
  const note = root.querySelector(".note");
  const typed = parse(field.value);
  if (typed === null) {
    field.classList.add("refused");
    note.className = "note refused";
    note.textContent = `"${field.value}" is not a number: type one such as -1, 0.25 or 2e-3.`;
    return;
  }
  field.classList.remove("refused");
  const weight = Math.max(-limit, Math.min(limit, typed));
  note.className = "note";
  note.textContent = weight === typed ? "" : `Weights stay between -${limit} and ${limit}: ${typed} became ${weight}.`;
  field.value = shown(weight);
  if (weight === Number(field.dataset.weight)) return;
  field.dataset.weight = String(weight);
  setTriggerValue("edit", { row: Number(field.dataset.row), col: Number(field.dataset.col), values: [[weight]] });
}

// Several numbers pasted at once (a row or rows copied from a spreadsheet, a slide or a paper): they fill
// the grid from the field pasted into, rightwards and downwards; what falls outside the grid is left out.
// Numbers are separated by tabs, spaces or semicolons (a comma inside a number is its decimal point).
function paste(root, field, event) {
  const text = event.clipboardData?.getData("text") ?? "";
  const lines = text.trim().split(/\r?\n/).map((line) => line.trim().split(/[\s;]+/).filter(Boolean));
  if (lines.length === 1 && lines[0].length <= 1) return; // one number: the field takes it as typed
  event.preventDefault();
  const { limit, setTriggerValue } = grids.get(root);
  const note = root.querySelector(".note");
  const numbers = lines.map((cells) => cells.map(parse));
  const refused = lines.flat().find((cell, index) => numbers.flat()[index] === null);
  if (refused !== undefined) {
    note.className = "note refused";
    note.textContent = `"${refused}" is not a number: paste numbers separated by spaces, tabs or semicolons.`;
    return;
  }
  const values = numbers.map((cells) => cells.map((number) => Math.max(-limit, Math.min(limit, number))));
  note.className = "note";
  note.textContent = "";
  setTriggerValue("edit", { row: Number(field.dataset.row), col: Number(field.dataset.col), values });
  field.blur();
}

function listen(root) {
  const onChange = (event) => { if (event.target.matches("input")) send(root, event.target); };
  const onKey = (event) => {
    const field = event.target;
    if (!field.matches("input")) return;
    if (event.key === "Enter") field.blur(); // leaving the field sends it
    if (event.key === "Escape") { // back to the weight in use
      field.value = shown(Number(field.dataset.weight));
      field.classList.remove("refused");
      field.blur();
    }
  };
  const onPaste = (event) => { if (event.target.matches("input")) paste(root, event.target, event); };
  root.addEventListener("change", onChange);
  root.addEventListener("keydown", onKey);
  root.addEventListener("paste", onPaste);
  return () => {
    root.removeEventListener("change", onChange);
    root.removeEventListener("keydown", onKey);
    root.removeEventListener("paste", onPaste);
    grids.delete(root);
  };
}

export default function kernelGrid(component) {
  const { parentElement, setTriggerValue } = component;
  const data = JSON.parse(new TextDecoder().decode(component.data)); // JSON in bytes (views/components/__init__.py)
  const root = parentElement.querySelector(".weight-fields");
  const cleanup = grids.get(root)?.cleanup ?? listen(root);
  grids.set(root, { limit: data.limit, setTriggerValue, cleanup });
  const body = root.querySelector("tbody");
  const { rows, large } = data;
  root.classList.toggle("large", Boolean(large));
  const columns = rows[0]?.length ?? 0;
  if (body.rows.length !== rows.length || body.rows[0]?.cells.length !== columns) build(body, rows);
  const focused = root.getRootNode().activeElement;
  for (const field of body.querySelectorAll("input")) {
    const weight = rows[field.dataset.row][field.dataset.col];
    field.title = String(weight);
    field.dataset.weight = String(weight);
    // The field being typed in keeps its text: the rerun that the previous field started must not wipe it.
    if (field !== focused) {
      field.value = shown(weight);
      field.classList.remove("refused");
    }
  }
  return cleanup;
}
