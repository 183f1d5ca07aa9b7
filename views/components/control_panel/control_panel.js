// The control panel: sliders, choices, number fields and switches drawn from a list (see __init__.py).
// A change is sent as one event {name, value}; a number field's text that is not a number is refused here.

function parseNumber(text) {
  const cleaned = text.trim().replace(",", "."); // a decimal comma is a decimal point
  if (cleaned === "" || !/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(cleaned)) return null;
  const number = Number(cleaned);
  return Number.isFinite(number) ? number : null;
}

function shownNumber(control, value) {
  return Number(value).toFixed(control.decimals ?? 0);
}

function make(tag, attributes = {}, text) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
  if (text !== undefined) made.textContent = text;
  return made;
}

function head(control, id) {
  const line = make("div", { class: "head" });
  line.append(id ? make("label", { for: id }, control.label) : make("span", { class: "label" }, control.label));
  if (control.help) line.append(make("span", { class: "help", title: control.help, "aria-label": control.help }, "?"));
  return line;
}

// One control's elements; `field` is what set() updates when new data arrive.
const BUILDERS = {
  slider(control, id) {
    const box = make("div", { class: "control" });
    const top = head(control, id);
    const shown = make("output", { for: id });
    top.append(shown);
    const field = make("input", { type: "range", id, min: control.low, max: control.high, step: control.step ?? 1 });
    field.addEventListener("input", () => { shown.textContent = field.value; });
    const ends = make("div", { class: "ends" });
    ends.append(make("span", {}, String(control.low)), make("span", {}, String(control.high)));
    box.append(top, field, ends);
    return { box, set: (value) => { field.value = value; shown.textContent = String(value); }, inputs: [field],
             read: () => Number(field.value) };
  },
  buttons(control, id) {
    const box = make("div", { class: "control" });
    box.append(head(control));
    const group = make("div", { class: "segments", role: "radiogroup", "aria-label": control.label });
    const inputs = control.options.map((option, index) => {
      const label = make("label");
      const input = make("input", { type: "radio", name: id, value: index });
      label.append(input, document.createTextNode(control.labels[index]));
      group.append(label);
      return input;
    });
    box.append(group);
    return {
      box, inputs,
      set: (value) => inputs.forEach((input, index) => { input.checked = control.options[index] === value; }),
      read: () => control.options[Number(inputs.find((input) => input.checked)?.value ?? 0)],
    };
  },
  menu(control, id) {
    const box = make("div", { class: "control" });
    const field = make("select", { id });
    control.labels.forEach((label, index) => field.append(make("option", { value: index }, label)));
    box.append(head(control, id), field);
    return { box, inputs: [field], set: (value) => { field.value = String(control.options.indexOf(value)); },
             read: () => control.options[Number(field.value)] };
  },
  number(control, id) {
    const box = make("div", { class: "control" });
    const field = make("input", { type: "text", id, inputmode: "decimal", spellcheck: "false" });
    box.append(head(control, id), field);
    return { box, inputs: [field], typed: true,
             set: (value) => { field.value = shownNumber(control, value); field.classList.remove("refused"); },
             read: () => parseNumber(field.value) };
  },
  switch(control, id) {
    const box = make("div", { class: "control" });
    const label = make("label", { class: "switch" });
    const field = make("input", { type: "checkbox", role: "switch", id });
    label.append(field, document.createTextNode(control.label));
    if (control.help) label.append(make("span", { class: "help", title: control.help, "aria-label": control.help }, "?"));
    box.append(label);
    return { box, inputs: [field], set: (value) => { field.checked = Boolean(value); }, read: () => field.checked };
  },
  button(control, id) {
    const box = make("div", { class: "control" });
    const field = make("button", { type: "button", id, class: "action" }, control.label);
    if (control.help) field.title = control.help;
    box.append(field);
    return { box, inputs: [field], set: () => {}, read: () => true };
  },
  fixed(control) {
    const box = make("div", { class: "control" });
    box.append(make("p", { class: "fixed" }, control.text));
    return { box, inputs: [], set: () => {}, read: () => null };
  },
};

// Called again whenever the data change; listeners are installed once per panel and read what the latest
// call left in `panels`. Streamlit keeps the cleanup of the latest call and runs it when the panel goes.
const panels = new WeakMap(); // root element -> {controls: name -> {control, parts}, shape, setTriggerValue, cleanup}

function say(root, text, refused = false) {
  const note = root.querySelector(".note");
  note.className = refused ? "note refused" : "note";
  note.textContent = text;
}

function send(root, name) {
  const { controls, setTriggerValue } = panels.get(root);
  const { control, parts } = controls.get(name);
  let value = parts.read();
  if (control.kind === "number") {
    const field = parts.inputs[0];
    if (value === null) {
      field.classList.add("refused");
      say(root, `"${field.value}" is not a number: type one such as ${shownNumber(control, control.low)}.`, true);
      return;
    }
    const kept = Math.min(control.high, Math.max(control.low, value));
    say(root, kept === value ? "" : `${control.label} stays between ${control.low} and ${control.high}: ${value} became ${kept}.`);
    value = kept;
    parts.set(value);
  } else {
    say(root, "");
  }
  if (value === control.value) return;
  control.value = value;
  setTriggerValue("change", { name, value });
}

function step(root, field, direction) {
  const { controls } = panels.get(root);
  const { control, parts } = controls.get(field.dataset.name);
  const current = parts.read() ?? control.value;
  const next = Math.round((current + direction * (control.step ?? 1)) * 1e6) / 1e6;
  parts.set(Math.min(control.high, Math.max(control.low, next)));
  send(root, field.dataset.name);
}

function listen(root) {
  const onChange = (event) => { if (event.target.dataset.name) send(root, event.target.dataset.name); };
  const onClick = (event) => {
    const button = event.target.closest("button.action");
    if (button) panels.get(root).setTriggerValue("change", { name: button.dataset.name, value: true });
  };
  const onKey = (event) => {
    const field = event.target;
    if (!field.dataset.typed) return;
    if (event.key === "Enter") field.blur(); // leaving the field sends it
    if (event.key === "ArrowUp" || event.key === "ArrowDown") {
      event.preventDefault();
      step(root, field, event.key === "ArrowUp" ? 1 : -1);
    }
    if (event.key === "Escape") { // back to the value in use
      const { control, parts } = panels.get(root).controls.get(field.dataset.name);
      parts.set(control.value);
      say(root, "");
      field.blur();
    }
  };
  root.addEventListener("change", onChange);
  root.addEventListener("keydown", onKey);
  root.addEventListener("click", onClick);
  return () => {
    root.removeEventListener("click", onClick);
    root.removeEventListener("change", onChange);
    root.removeEventListener("keydown", onKey);
    panels.delete(root);
  };
}

function build(root, list, prefix) {
  const grid = root.querySelector(".controls");
  grid.replaceChildren();
  const controls = new Map();
  for (const control of list) {
    const id = `${prefix}-${control.name}`;
    const parts = BUILDERS[control.kind](control, id);
    if (control.wide) parts.box.classList.add("wide");
    parts.box.dataset.control = control.name;
    for (const input of parts.inputs) {
      input.dataset.name = control.name;
      if (parts.typed) input.dataset.typed = "yes";
    }
    grid.append(parts.box);
    controls.set(control.name, { control, parts });
  }
  return controls;
}

// What decides the elements: everything but the values and whether a control is usable.
function shapeOf(list) {
  return JSON.stringify(list.map(({ value, disabled, ...rest }) => rest));
}

let panelCount = 0;

export default function controlPanel(component) {
  const { parentElement, setTriggerValue } = component;
  const data = JSON.parse(new TextDecoder().decode(component.data)); // JSON in bytes (views/components/__init__.py)
  const root = parentElement.querySelector(".control-panel");
  const known = panels.get(root);
  const cleanup = known?.cleanup ?? listen(root);
  root.style.setProperty("--columns", String(data.columns ?? 1));
  const shape = shapeOf(data.controls);
  const controls = known && known.shape === shape
    ? known.controls
    : build(root, data.controls, root.dataset.prefix ??= `panel${(panelCount += 1)}`);
  panels.set(root, { controls, shape, setTriggerValue, cleanup });
  const focused = root.getRootNode().activeElement;
  for (const control of data.controls) {
    const entry = controls.get(control.name);
    entry.control = control;
    entry.parts.box.classList.toggle("disabled", Boolean(control.disabled));
    for (const input of entry.parts.inputs) input.disabled = Boolean(control.disabled);
    // A field being typed in keeps its text: a rerun started elsewhere must not wipe it.
    if (!(entry.parts.typed && entry.parts.inputs.includes(focused))) entry.parts.set(control.value);
  }
  return cleanup;
}
