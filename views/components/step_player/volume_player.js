// The step player for volumes: a 3-D convolution trace (payload kind "conv3d") replayed voxel by voxel.
// It extends the 2-D player (step_player.js, joined before this file into one component): the controls,
// the keyboard, playing and the remembered step are that player's. What differs is drawn here: the
// input and the output are rows of slices, and the arithmetic has one row per slice of the kernel, each
// with its own sum; the slices' sums plus the bias make the voxel.

function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text !== undefined) made.textContent = text;
  return made;
}

class VolumePlayer extends Player {
  load(data) {
    // Read before the 2-D player's load, which builds and shows the first step with them.
    this.windowSlices = decode(data.steps.slices);
    this.sliceSums = decode(data.steps.slice_sums);
    this.windowDepth = data.steps.slices.shape[1];
    [this.inputDepth, this.sliceRows, this.sliceCols] = data.input.values.shape;
    [this.outputDepth, this.outputSliceRows, this.outputSliceCols] = data.output.values.shape;
    super.load(data);
  }

  build() {
    const { data, root, elements } = this;
    const titles = data.titles ?? {};
    root.classList.add("volume");
    this.volumeStage?.remove();
    const stage = element("div", "volume-stage");
    this.volumeStage = stage;

    // Four slices a line on a page; six on the presenter's wide screen, so the region takes one line.
    const slicesPerLine = Math.min(this.inputDepth, root.classList.contains("presenting") ? 6 : 4);
    const lines = (count) => Math.ceil(count / slicesPerLine);
    root.style.setProperty("--slices-per-line", slicesPerLine);
    root.style.setProperty("--slice-cols", this.sliceCols);
    root.style.setProperty("--slice-rows",
      lines(this.inputDepth) * this.sliceRows + lines(this.outputDepth) * this.outputSliceRows);

    // The padded region, slice by slice.
    const [front, back, top, bottom, left, right] = data.input.pad;
    const inputPanel = element("figure", "panel volume-panel");
    inputPanel.appendChild(element("figcaption", "input-title", titles.input ?? ""));
    const inputRow = element("div", "slice-row");
    inputPanel.appendChild(inputRow);
    this.inputCells = [];
    this.inputSlices = [];
    this.grids = [];
    for (let depth = 0; depth < this.inputDepth; depth += 1) {
      const padSlice = depth < front || depth >= this.inputDepth - back;
      const name = titles.slices?.[depth] ?? (padSlice ? "padding" : `slice ${depth - front + 1}`);
      const figure = element("figure", "slice");
      const caption = element("figcaption", "", name);
      const grid = element("div", "grid slice-grid");
      figure.append(caption, grid);
      const cells = makeGrid(grid, this.sliceRows, this.sliceCols);
      cells.forEach((cell, index) => {
        const row = Math.floor(index / this.sliceCols);
        const col = index % this.sliceCols;
        const value = this.input[depth * this.sliceRows * this.sliceCols + index];
        this.colours.paint(cell, value, data.input.colour, data.input.decimals);
        if (padSlice || row < top || row >= this.sliceRows - bottom || col < left || col >= this.sliceCols - right) {
          cell.classList.add("pad");
        }
      });
      if (!padSlice && top + bottom + left + right > 0) {
        overlay(grid, "inside").style.gridArea =
          `${top + 1} / ${left + 1} / ${this.sliceRows - bottom + 1} / ${this.sliceCols - right + 1}`;
      }
      const windowBox = overlay(grid, "window");
      this.inputCells.push(...cells);
      this.inputSlices.push({ figure, caption, name, windowBox });
      this.grids.push(grid);
      inputRow.appendChild(figure);
    }

    // The output volume, slice by slice: the flat list of its cells is in step order.
    const outputPanel = element("figure", "panel volume-panel");
    outputPanel.appendChild(element("figcaption", "output-title", titles.output ?? ""));
    const outputRow = element("div", "slice-row");
    outputPanel.appendChild(outputRow);
    this.outputCells = [];
    for (let depth = 0; depth < this.outputDepth; depth += 1) {
      const figure = element("figure", "slice");
      const grid = element("div", "grid slice-grid output-slice");
      figure.append(element("figcaption", "", titles.output_slices?.[depth] ?? `output slice ${depth + 1}`), grid);
      const cells = makeGrid(grid, this.outputSliceRows, this.outputSliceCols);
      cells.forEach((cell) => cell.classList.add("pending"));
      this.outputCells.push(...cells);
      this.grids.push(grid);
      outputRow.appendChild(figure);
    }

    // The arithmetic: one row per kernel slice, window slice x kernel slice = products, and their sum.
    const work = element("div", "volume-work");
    const height = this.windowHeight;
    const width = this.windowWidth;
    const size = height * width;
    this.sliceWork = [];
    for (let a = 0; a < this.windowDepth; a += 1) {
      const block = element("div", "slice-work");
      const caption = element("div", "slice-work-title");
      const patchGrid = element("div", "grid work-grid");
      const kernelGrid = element("div", "grid work-grid");
      const productsGrid = element("div", "grid work-grid");
      const patchCells = makeGrid(patchGrid, height, width);
      const kernelCells = makeGrid(kernelGrid, height, width);
      kernelCells.forEach((cell, index) => {
        this.colours.paint(cell, this.kernel[a * size + index], data.kernel.colour, data.kernel.decimals);
      });
      const productCells = makeGrid(productsGrid, height, width);
      const sum = element("b", "slice-sum");
      const row = element("div", "slice-work-row");
      row.append(patchGrid, element("span", "operator", "×"), kernelGrid, element("span", "operator", "="),
        productsGrid, element("span", "slice-sum-label", "sum "), sum);
      block.append(caption, row);
      work.appendChild(block);
      this.sliceWork.push({ caption, patchCells, productCells, sum });
    }

    stage.append(inputPanel, outputPanel, work, elements.equation);
    root.appendChild(stage);
    root.style.setProperty("--work-cols", 3 * width + 2); // window, kernel and products, and room for the sum
    root.style.setProperty("--work-rows", height);
    this.measureNumbers();
    this.buildEquation();
    elements.stepCount.textContent = String(this.count);
    elements.scrubber.max = String(this.count);
    this.marked = [];
  }

  measureNumbers() {
    super.measureNumbers();
    // The 2-D player measured the input's and output's widest numbers onto its own grids: the slices take them.
    const { inputGrid, outputGrid } = this.elements;
    for (const grid of this.grids ?? []) {
      const source = grid.classList.contains("output-slice") ? outputGrid : inputGrid;
      grid.style.setProperty("--text-em", source.style.getPropertyValue("--text-em"));
    }
  }

  fitNumbers() {
    for (const grid of this.grids ?? []) {
      const cell = grid.querySelector(".cell");
      if (cell) grid.classList.toggle("no-numbers", parseFloat(getComputedStyle(cell).fontSize) < SMALLEST_NUMBER_PX);
    }
  }

  windowSlicesOf(step) {
    return this.windowSlices.subarray(step * this.windowDepth, (step + 1) * this.windowDepth);
  }

  drawWindow(step) {
    const slices = this.windowSlicesOf(step);
    const [rows, cols] = this.windowOf(step);
    const lastRow = rows[rows.length - 1];
    const lastCol = cols[cols.length - 1];
    const area = `${rows[0] + 1} / ${cols[0] + 1} / ${lastRow + 2} / ${lastCol + 2}`;
    this.inputSlices.forEach((slice, depth) => {
      const under = slices.indexOf(depth);
      slice.figure.classList.toggle("under", under >= 0);
      slice.figure.classList.toggle("outside", under < 0);
      slice.windowBox.hidden = under < 0;
      if (under >= 0) slice.windowBox.style.gridArea = area;
      slice.caption.textContent = under >= 0 ? `${slice.name} · kernel slice ${under + 1}` : slice.name;
    });
    for (const cell of this.marked) cell.classList.remove("sampled");
    this.marked = [];
    // With dilation the window skips cells: mark the ones it reads.
    if (lastRow - rows[0] + 1 > rows.length || lastCol - cols[0] + 1 > cols.length) {
      const plane = this.sliceRows * this.sliceCols;
      for (const depth of slices) {
        for (const row of rows) {
          for (const col of cols) this.mark(this.inputCells[depth * plane + row * this.sliceCols + col], "sampled");
        }
      }
    }
  }

  drawWork(step) {
    const { data, colours } = this;
    const slices = this.windowSlicesOf(step);
    const [rows, cols] = this.windowOf(step);
    const width = this.windowWidth;
    const size = this.windowHeight * width;
    const plane = this.sliceRows * this.sliceCols;
    const decimals = data.equation_decimals;
    this.sliceWork.forEach((work, a) => {
      const depth = slices[a];
      work.caption.textContent = `kernel slice ${a + 1} on ${this.inputSlices[depth].name}`;
      for (let index = 0; index < size; index += 1) {
        const row = rows[Math.floor(index / width)];
        const col = cols[index % width];
        colours.paint(work.patchCells[index], this.input[depth * plane + row * this.sliceCols + col], data.input.colour,
          data.input.patch_decimals);
        colours.paint(work.productCells[index], this.products[(step * this.windowDepth + a) * size + index],
          data.products.colour, data.products.decimals);
      }
      work.sum.textContent = format(this.sliceSums[step * this.windowDepth + a], decimals);
    });
    const { equation } = this;
    equation.sum.textContent = format(this.sums[step], decimals);
    equation.bias.textContent = format(data.bias, decimals);
    equation.value.textContent = format(this.values[step], decimals);
    const perSlice = this.outputSliceRows * this.outputSliceCols;
    const outSlice = Math.floor(step / perSlice);
    const outRow = Math.floor((step % perSlice) / this.outputSliceCols);
    const outCol = step % this.outputSliceCols;
    equation.target.textContent =
      `the ${this.windowDepth} slice sums added; goes to output slice ${outSlice + 1}, row ${outRow + 1}, column ${outCol + 1}`;
  }

  destroy() {
    super.destroy();
    this.volumeStage?.remove();
  }
}

PLAYER_KINDS.set("conv3d", VolumePlayer);
