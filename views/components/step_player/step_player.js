// The step player: replays, in the browser, a convolution or pooling trace the server sent once
// (the data's format is described in views/components/step_player/payload.py). Stepping, playing and
// scrubbing only change this page: nothing is sent back to the server.

const FORMAT = "convscope.step_player/1";
const SPEEDS = [1, 2, 4, 8, 15, 30]; // steps per second
const DEFAULT_SPEED = 2;
const SMALLEST_NUMBER_PX = 8; // below this a grid shows colours only

// The presenter view's numbers: narrow figures (a subset of Roboto Condensed Bold: digits, point, minus,
// infinity, NaN) give the tallest digits for the width a projector's screen has. __init__.py defines
// NUMBER_FONT_URL (the font inline, as a data URL); a font declared in the component's CSS would not be
// seen inside its shadow root, so it is added to the document from here.
const NUMBER_FONT_FAMILY = "ConvScope Digits";
const numberFont = typeof NUMBER_FONT_URL === "string"
  ? new FontFace(NUMBER_FONT_FAMILY, `url(${NUMBER_FONT_URL})`, { weight: "100 900" })
  : null;
if (numberFont) document.fonts.add(numberFont);

const remembered = new Map(); // data.memory -> {step, speed}: survives reruns and rebuilt components
const PLAYER_KINDS = new Map(); // data.kind -> a player class for it (volume_player.js adds "conv3d"); else Player
const players = new WeakMap(); // the component's parent element -> its Player
const onPage = new Set(); // every live player, so that only one plays at a time

// ---- data ----------------------------------------------------------------------------------------

function decode(encoded) {
  const binary = atob(encoded.base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  const view = new DataView(bytes.buffer);
  const count = encoded.shape.reduce((product, size) => product * size, 1);
  if (encoded.dtype === "float32") {
    const values = new Float32Array(count);
    for (let i = 0; i < count; i += 1) values[i] = view.getFloat32(4 * i, true);
    return values;
  }
  if (encoded.dtype === "int32") {
    const values = new Int32Array(count);
    for (let i = 0; i < count; i += 1) values[i] = view.getInt32(4 * i, true);
    return values;
  }
  throw new Error(`step player: unknown dtype ${encoded.dtype}`);
}

// toFixed rounds the exact value correctly; "-0.00" (a tiny negative) is written "0.00".
function format(value, decimals) {
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value < 0 ? "-∞" : "∞";
  const text = value.toFixed(decimals);
  return /^-0(\.0*)?$/.test(text) ? text.slice(1) : text;
}

// The widest text of a grid is that of its most negative or its largest value (or of -∞ padding).
function extremeTexts(values, decimals) {
  let low = Infinity;
  let high = -Infinity;
  let infinite = false;
  for (const value of values) {
    if (Number.isFinite(value)) {
      if (value < low) low = value;
      if (value > high) high = value;
    } else {
      infinite = true;
    }
  }
  const texts = low > high ? [] : [format(low, decimals), format(high, decimals)];
  if (infinite) texts.push("-∞");
  return texts;
}

// Width in em of the widest of ``texts`` in the player's number font (measured, not guessed).
function widthInEm(texts, font) {
  const context = widthInEm.canvas.getContext("2d");
  context.font = `${font.weight} 100px ${font.family}`;
  let widest = 1;
  for (const text of texts) widest = Math.max(widest, context.measureText(text).width / 100);
  return widest;
}
widthInEm.canvas = document.createElement("canvas");

class Colours {
  // ``substitutes``: palette name -> the palette the chosen colour scheme uses instead.
  constructor(palettes, substitutes = {}) {
    this.palettes = palettes;
    this.substitutes = substitutes;
    this.lightInk = new Map();
  }

  // Background colour of ``value`` on a {palette, low, high} scale; null for -inf padding.
  of(value, scale) {
    if (!Number.isFinite(value)) return null;
    const palette = this.palettes[this.substitutes[scale.palette] ?? scale.palette];
    const unit = (value - scale.low) / (scale.high - scale.low || 1);
    return palette[Math.round(Math.min(1, Math.max(0, unit)) * (palette.length - 1))];
  }

  // White text on dark backgrounds, black on light ones.
  needsLightInk(colour) {
    if (colour === null) return false;
    if (!this.lightInk.has(colour)) {
      const red = parseInt(colour.slice(1, 3), 16);
      const green = parseInt(colour.slice(3, 5), 16);
      const blue = parseInt(colour.slice(5, 7), 16);
      this.lightInk.set(colour, red * 0.299 + green * 0.587 + blue * 0.114 < 140);
    }
    return this.lightInk.get(colour);
  }

  paint(cell, value, scale, decimals) {
    const colour = this.of(value, scale);
    cell.style.backgroundColor = colour ?? "";
    cell.classList.toggle("light-ink", this.needsLightInk(colour));
    cell.textContent = format(value, decimals);
  }
}

// ---- drawing helpers ------------------------------------------------------------------------------

function makeGrid(container, rows, cols) {
  container.replaceChildren();
  container.style.setProperty("--cols", cols);
  container.style.setProperty("--rows", rows);
  const cells = [];
  const fragment = document.createDocumentFragment();
  for (let i = 0; i < rows * cols; i += 1) {
    const cell = document.createElement("div");
    cell.className = "cell";
    fragment.appendChild(cell);
    cells.push(cell);
  }
  container.appendChild(fragment);
  return cells;
}

function overlay(container, className) {
  const box = document.createElement("div");
  box.className = className;
  container.appendChild(box);
  return box;
}

function span(className, text = "") {
  const element = document.createElement("span");
  if (className) element.className = className;
  element.textContent = text;
  return element;
}

// ---- the player -----------------------------------------------------------------------------------

class Player {
  constructor(parentElement) {
    this.root = parentElement.querySelector(".step-player");
    if (!this.root) throw new Error("step player: its HTML is missing");
    const find = (selector) => this.root.querySelector(selector);
    this.elements = {
      previous: find("[data-action=previous]"),
      next: find("[data-action=next]"),
      play: find("[data-action=play]"),
      playLabel: find(".play-label"),
      speeds: [...this.root.querySelectorAll("[data-speed]")],
      stepNumber: find(".step-number"),
      stepCount: find(".step-count"),
      scrubber: find(".scrubber"),
      inputGrid: find(".input-grid"),
      outputGrid: find(".output-grid"),
      patchGrid: find(".patch-grid"),
      kernelGrid: find(".kernel-grid"),
      productsGrid: find(".products-grid"),
      equation: find(".equation"),
      outputPanel: find(".output-grid").closest(".panel"),
      link: find("[data-action=link]"),
    };
    this.reportStep = null; // set by the component: sends the step to the server, only on request
    this.playing = false;
    this.frame = 0;
    this.step = -1;
    this.listen();
    this.resizeObserver = new ResizeObserver(() => {
      this.measureSpace();
      this.fitNumbers();
    });
    this.resizeObserver.observe(this.root);
    this.onWindowResize = () => this.measureSpace();
    window.addEventListener("resize", this.onWindowResize);
    onPage.add(this);
  }

  listen() {
    const { previous, next, play, speeds, scrubber } = this.elements;
    previous.addEventListener("click", () => this.moveBy(-1));
    next.addEventListener("click", () => this.moveBy(1));
    play.addEventListener("click", () => (this.playing ? this.pause() : this.play()));
    this.elements.link.addEventListener("click", () => {
      this.pause();
      this.reportStep?.(this.step);
      this.elements.link.classList.add("sent");
    });
    for (const button of speeds) {
      button.addEventListener("click", () => this.setSpeed(Number(button.dataset.speed)));
    }
    scrubber.addEventListener("input", () => {
      this.pause();
      this.show(Number(scrubber.value) - 1);
    });
    // Clicking a button keeps the keyboard on the player (a focused button would take the space bar).
    this.root.addEventListener("pointerdown", (event) => {
      if (event.target.closest("button")) event.preventDefault();
      if (event.target !== scrubber) this.root.focus({ preventScroll: true });
    });
    this.root.addEventListener("keydown", (event) => this.onKey(event));
    // A space released on a focused button would click it too.
    this.root.addEventListener("keyup", (event) => {
      if (event.key === " ") event.preventDefault();
    });
  }

  onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const actions = {
      ArrowRight: () => this.moveBy(1),
      PageDown: () => this.moveBy(1),
      ArrowLeft: () => this.moveBy(-1),
      PageUp: () => this.moveBy(-1),
      Home: () => this.moveTo(0),
      End: () => this.moveTo(this.count - 1),
      " ": () => (this.playing ? this.pause() : this.play()),
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    event.stopPropagation();
    action();
  }

  // ---- data ----

  load(data) {
    if (data?.format !== FORMAT) {
      throw new Error(`step player: expected data in format ${FORMAT}, got ${data?.format}`);
    }
    this.pause();
    this.data = data;
    const view = data.view ?? {};
    // A lesson link's step counts only when this browser has no step of its own for this player.
    this.memory = remembered.get(data.memory) ?? { step: view.initial_step ?? 0, speed: DEFAULT_SPEED };
    this.colours = new Colours(data.palettes, view.scheme?.palettes);
    this.applyView(view);
    this.input = decode(data.input.values);
    [this.inputRows, this.inputCols] = data.input.values.shape;
    this.output = decode(data.output.values);
    [this.outputRows, this.outputCols] = data.output.values.shape;
    this.count = data.steps.count;
    this.windowRows = decode(data.steps.rows);
    this.windowCols = decode(data.steps.cols);
    this.windowHeight = data.steps.rows.shape[1];
    this.windowWidth = data.steps.cols.shape[1];
    this.values = decode(data.steps.values);
    this.sums = data.steps.sums ? decode(data.steps.sums) : null;
    this.products = data.steps.products ? decode(data.steps.products) : null;
    this.argmax = data.steps.argmax ? decode(data.steps.argmax) : null;
    this.kernel = data.kernel ? decode(data.kernel.values) : null;
    this.root.classList.toggle("pool", data.kind === "pool");
    this.root.dataset.kind = data.kind;
    this.build();
    this.step = -1;
    this.setSpeed(this.memory.speed);
    this.show(Math.min(Math.max(this.memory.step, 0), this.count - 1));
  }

  // Presenter layout, colour scheme and the link button, as the page asks (payload.py's ``view``).
  applyView(view) {
    const { root, elements } = this;
    root.classList.toggle("presenting", Boolean(view.presenting));
    this.wholeScreen = Boolean(view.whole_screen);
    root.dataset.scheme = view.scheme?.name ?? "standard";
    for (const [name, colour] of Object.entries(view.scheme?.colours ?? {})) {
      root.style.setProperty(`--${name}`, colour);
    }
    elements.link.hidden = !view.link_button;
    elements.link.classList.remove("sent");
    // Presenting, the equation spans the arithmetic and output columns under them.
    if (view.presenting) root.appendChild(elements.equation);
    else elements.outputPanel.appendChild(elements.equation);
    this.measureSpace();
  }

  // The height the player may fill when presenting: the rest of the first screen for a player near the page's
  // top, a whole screen for one further down (the lecturer scrolls it to the top).
  measureSpace() {
    if (!this.root.classList.contains("presenting")) return;
    let top = this.root.getBoundingClientRect().top;
    for (let node = this.root; node; node = node.parentNode ?? node.host) {
      if (node instanceof Element && node.scrollTop) top += node.scrollTop;
    }
    const below = top < window.innerHeight / 2 && !this.wholeScreen ? top : 0;
    const space = Math.max(240, window.innerHeight - below - 8);
    this.root.style.setProperty("--avail-height", `${space}px`);
  }

  build() {
    const { data, elements, root } = this;
    const titles = data.titles ?? {};
    root.querySelector(".input-title").textContent = titles.input ?? "";
    root.querySelector(".output-title").textContent = titles.output ?? "";
    root.querySelector(".patch-title").textContent = titles.patch ?? "window";
    root.querySelector(".kernel-title").textContent = titles.kernel ?? "kernel";
    root.querySelector(".products-title").textContent = titles.products ?? "products";

    this.inputCells = makeGrid(elements.inputGrid, this.inputRows, this.inputCols);
    const [top, bottom, left, right] = data.input.pad;
    this.inputCells.forEach((cell, index) => {
      const row = Math.floor(index / this.inputCols);
      const col = index % this.inputCols;
      this.colours.paint(cell, this.input[index], data.input.colour, data.input.decimals);
      if (row < top || row >= this.inputRows - bottom || col < left || col >= this.inputCols - right) {
        cell.classList.add("pad");
      }
    });
    if (top + bottom + left + right > 0) {
      overlay(elements.inputGrid, "inside").style.gridArea =
        `${top + 1} / ${left + 1} / ${this.inputRows - bottom + 1} / ${this.inputCols - right + 1}`;
    }
    this.windowBox = overlay(elements.inputGrid, "window");

    this.outputCells = makeGrid(elements.outputGrid, this.outputRows, this.outputCols);
    this.outputCells.forEach((cell) => cell.classList.add("pending"));

    const height = this.windowHeight;
    const width = this.windowWidth;
    this.patchCells = makeGrid(elements.patchGrid, height, width);
    if (this.kernel) {
      const kernelCells = makeGrid(elements.kernelGrid, height, width);
      kernelCells.forEach((cell, index) => {
        this.colours.paint(cell, this.kernel[index], data.kernel.colour, data.kernel.decimals);
      });
      this.productCells = makeGrid(elements.productsGrid, height, width);
    }

    root.style.setProperty("--in-cols", this.inputCols);
    root.style.setProperty("--in-rows", this.inputRows);
    root.style.setProperty("--out-cols", this.outputCols);
    root.style.setProperty("--out-rows", this.outputRows);
    root.style.setProperty("--work-cols", this.kernel ? 3 * width : width);
    root.style.setProperty("--work-rows", height);
    root.style.setProperty("--window-cols", width);
    root.style.setProperty("--work-stack", this.kernel ? 3 : 1);
    this.measureNumbers();
    // Measured again once the presenter view's number font has arrived (the first measure used another).
    if (numberFont && numberFont.status !== "loaded" && root.classList.contains("presenting")) {
      numberFont.load().then(() => this.measureNumbers(), () => {});
    }

    this.buildEquation();
    elements.stepCount.textContent = String(this.count);
    elements.scrubber.max = String(this.count);
    this.marked = [];
  }

  // Each grid's widest number, in em of the number font, which sizes its cells (see the CSS).
  measureNumbers() {
    const { data, elements, root } = this;
    const style = getComputedStyle(root);
    const font = { family: style.getPropertyValue("--number-font").trim() || style.fontFamily,
                   weight: style.getPropertyValue("--number-weight").trim() || "600" };
    const inputEm = widthInEm(extremeTexts(this.input, data.input.decimals), font);
    const outputEm = widthInEm(extremeTexts(this.output, data.output.decimals), font);
    const workTexts = extremeTexts(this.input, data.input.patch_decimals);
    if (this.kernel) {
      workTexts.push(...extremeTexts(this.kernel, data.kernel.decimals),
        ...extremeTexts(this.products, data.products.decimals));
    }
    const workEm = widthInEm(workTexts, font);
    const grids = [[elements.inputGrid, inputEm], [elements.outputGrid, outputEm], [elements.patchGrid, workEm],
      [elements.kernelGrid, workEm], [elements.productsGrid, workEm]];
    for (const [grid, em] of grids) grid.style.setProperty("--text-em", em.toFixed(3));
    root.style.setProperty("--work-em", workEm.toFixed(3));
    root.style.setProperty("--in-em", inputEm.toFixed(3));
    root.style.setProperty("--out-em", outputEm.toFixed(3));
    this.fitNumbers();
  }

  // "sum S + bias B = V" (convolution), "sum S / n = V" (average) or "largest of the n values = V" (max),
  // each term kept on one line, then where V goes.
  buildEquation() {
    const { equation } = this.elements;
    equation.replaceChildren();
    this.equation = {};
    const term = (label, name) => {
      const group = span("term", label);
      const number = document.createElement("b");
      number.className = name;
      group.appendChild(number);
      this.equation[name] = number;
      equation.append(group, " ");
    };
    const size = this.windowHeight * this.windowWidth;
    if (this.kernel) {
      term("sum ", "sum");
      term("+ bias ", "bias");
      term("= ", "value");
    } else if (this.data.mode === "avg") {
      term("sum ", "sum");
      term(`/ ${size} = `, "value");
    } else {
      term(`largest of the ${size} values = `, "value");
    }
    this.equation.target = span("target");
    equation.appendChild(this.equation.target);
  }

  // Hide the numbers of a grid whose cells became too small to read them (colours stay).
  fitNumbers() {
    for (const grid of [this.elements.inputGrid, this.elements.outputGrid]) {
      const cell = grid.querySelector(".cell");
      if (!cell) continue;
      const size = parseFloat(getComputedStyle(cell).fontSize);
      grid.classList.toggle("no-numbers", size < SMALLEST_NUMBER_PX);
    }
  }

  // ---- stepping ----

  moveBy(delta) {
    this.moveTo(this.step + delta);
  }

  moveTo(step) {
    this.pause();
    this.show(step);
  }

  show(step) {
    const target = Math.min(Math.max(step, 0), this.count - 1);
    if (target === this.step) return;
    const previous = this.step;
    this.step = target;
    this.drawWindow(target);
    this.fillOutput(previous, target);
    this.drawWork(target);
    const { stepNumber, scrubber, previous: back, next } = this.elements;
    stepNumber.textContent = String(target + 1);
    scrubber.value = String(target + 1);
    back.disabled = target === 0;
    next.disabled = target === this.count - 1;
    this.memory.step = target;
    remembered.set(this.data.memory, this.memory);
  }

  windowOf(step) {
    const rows = this.windowRows.subarray(step * this.windowHeight, (step + 1) * this.windowHeight);
    const cols = this.windowCols.subarray(step * this.windowWidth, (step + 1) * this.windowWidth);
    return [rows, cols];
  }

  drawWindow(step) {
    const [rows, cols] = this.windowOf(step);
    const lastRow = rows[rows.length - 1];
    const lastCol = cols[cols.length - 1];
    this.windowBox.style.gridArea = `${rows[0] + 1} / ${cols[0] + 1} / ${lastRow + 2} / ${lastCol + 2}`;
    for (const cell of this.marked) cell.classList.remove("sampled", "kept");
    this.marked = [];
    // With dilation the window skips cells: mark the ones it reads.
    if (lastRow - rows[0] + 1 > rows.length || lastCol - cols[0] + 1 > cols.length) {
      for (const row of rows) {
        for (const col of cols) this.mark(this.inputCells[row * this.inputCols + col], "sampled");
      }
    }
    if (this.argmax) {
      const row = this.argmax[2 * step];
      const col = this.argmax[2 * step + 1];
      this.mark(this.inputCells[row * this.inputCols + col], "kept");
    }
  }

  mark(cell, className) {
    cell.classList.add(className);
    this.marked.push(cell);
  }

  // Cells up to ``step`` show their values; only the cells between the last step shown and this one change.
  fillOutput(previous, step) {
    const { output, outputCells, data } = this;
    if (previous >= 0) outputCells[previous].classList.remove("current");
    const from = previous < 0 ? 0 : Math.min(previous, step) + 1;
    const to = previous < 0 ? this.count - 1 : Math.max(previous, step);
    for (let index = from; index <= to; index += 1) {
      const cell = outputCells[index];
      if (index <= step) {
        cell.classList.remove("pending");
        this.colours.paint(cell, output[index], data.output.colour, data.output.decimals);
      } else {
        cell.classList.add("pending");
        cell.classList.remove("light-ink");
        cell.style.backgroundColor = "";
        cell.textContent = "";
      }
    }
    outputCells[step].classList.add("current");
  }

  drawWork(step) {
    const { data, colours } = this;
    const [rows, cols] = this.windowOf(step);
    const size = this.windowHeight * this.windowWidth;
    let kept = -1;
    if (this.argmax) {
      kept = rows.indexOf(this.argmax[2 * step]) * this.windowWidth + cols.indexOf(this.argmax[2 * step + 1]);
    }
    for (let index = 0; index < size; index += 1) {
      const row = rows[Math.floor(index / this.windowWidth)];
      const col = cols[index % this.windowWidth];
      const cell = this.patchCells[index];
      colours.paint(cell, this.input[row * this.inputCols + col], data.input.colour, data.input.patch_decimals);
      cell.classList.toggle("kept", index === kept);
      if (this.products) {
        colours.paint(this.productCells[index], this.products[step * size + index], data.products.colour,
          data.products.decimals);
      }
    }
    const decimals = data.equation_decimals;
    const { equation } = this;
    if (equation.sum) equation.sum.textContent = format(this.sums[step], decimals);
    if (equation.bias) equation.bias.textContent = format(data.bias, decimals);
    equation.value.textContent = format(this.values[step], decimals);
    const outRow = Math.floor(step / this.outputCols);
    const outCol = step % this.outputCols;
    const mapName = data.kind === "conv" ? "output" : "pooled map";
    equation.target.textContent = `goes to row ${outRow}, column ${outCol} of the ${mapName}`;
  }

  // ---- playing ----

  setSpeed(speed) {
    const chosen = SPEEDS.includes(speed) ? speed : DEFAULT_SPEED;
    this.memory.speed = chosen;
    for (const button of this.elements.speeds) {
      button.setAttribute("aria-checked", String(Number(button.dataset.speed) === chosen));
    }
    if (this.playing) this.startClock();
  }

  play() {
    for (const other of onPage) if (other !== this) other.pause();
    if (this.step >= this.count - 1) this.show(0); // play from the start again
    this.playing = true;
    this.root.classList.add("playing");
    this.elements.playLabel.textContent = "Pause";
    this.startClock();
    const tick = (now) => {
      if (!this.playing) return;
      const due = this.startStep + Math.floor(((now - this.startTime) * this.memory.speed) / 1000);
      this.show(due);
      if (due >= this.count - 1) {
        this.pause();
        return;
      }
      this.frame = requestAnimationFrame(tick);
    };
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(tick);
  }

  // Steps are counted from the last start or speed change, so a slow frame never slows playback down.
  startClock() {
    this.startTime = performance.now();
    this.startStep = this.step;
  }

  pause() {
    if (!this.playing) return;
    this.playing = false;
    cancelAnimationFrame(this.frame);
    this.root.classList.remove("playing");
    this.elements.playLabel.textContent = "Play";
  }

  destroy() {
    this.pause();
    this.resizeObserver.disconnect();
    window.removeEventListener("resize", this.onWindowResize);
    onPage.delete(this);
  }
}

// Streamlit calls this on the first show and again, on the same parent element, whenever the data
// changes; the player is built once and reloaded with the new data (the step stays where it was).
export default function stepPlayer(component) {
  const { parentElement, setTriggerValue } = component;
  const data = JSON.parse(new TextDecoder().decode(component.data)); // JSON in bytes (views/components/__init__.py)
  let player = players.get(parentElement);
  if (!player) {
    player = new (PLAYER_KINDS.get(data.kind) ?? Player)(parentElement);
    players.set(parentElement, player);
  }
  player.reportStep = (step) => setTriggerValue("link_step", step);
  player.load(data);
  return () => {
    player.destroy();
    players.delete(parentElement);
  };
}
