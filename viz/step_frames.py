"""Slide frames of a convolution or pooling step: the step player's picture, drawn into uint8 RGB arrays.

Each frame shows what the browser's step player shows (views/components/step_player/), with the same
numbers: the padded input with the window on it, the window's values (times the kernel, equal to the
products), the output map filling in, and the step's equation. A :class:`StepFrames` draws everything
that does not change from step to step once, so one frame costs a copy and a few small grids.

Pure drawing: arrays in (shaped like kernels.trace's ``all_steps()``), RGB uint8 (H, W, 3) out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from viz.images import COLOUR_SCHEMES, diverging_rgb, grey_rgb
from viz.steps import BACKGROUND, TEXT_COLOUR, outline_box, stamp_text, stamp_text_left, text_size

SLIDE = (1080, 1920)  # rows, columns: a 16:9 slide
MARGIN = 40
GAP = 36
TITLE_FONT = 40
CAPTION_FONT = 26
NATURAL_CELL = 64  # the cell side of a frame drawn at its natural size
_SMALLEST_NUMBER_FONT = 11  # below this a grid shows its colours only
_LARGEST_WORK_FONT = 46


@dataclass(frozen=True)
class StepData:
    """One trace's steps, as the frames need them (all arrays as in kernels.trace's ``all_steps()``).

    ``kind`` is "conv" or "pool". ``rows`` (N, kh) and ``cols`` (N, kw) index ``padded`` (Hp, Wp);
    ``values`` (N,) is each step's output value, ``output`` (H', W') the map. Convolution: ``kernel``
    (kh, kw), ``bias``, ``products`` (N, kh, kw), ``sums`` (N,). Pooling: ``mode``; ``argmax`` (N, 2) for
    "max", ``sums`` (N,) for "avg". ``decimals``: name -> decimal places for "input", "patch", "kernel",
    "products", "output" and "equation". ``input_range``: (low, high) drawn black and white when
    ``kind`` is "conv" (a windowed scan); pooling inputs are signed maps. ``title`` heads every frame.
    """

    kind: str
    padded: np.ndarray
    pad: tuple
    output: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    decimals: dict
    title: str
    sums: np.ndarray | None = None
    kernel: np.ndarray | None = None
    bias: float = 0.0
    products: np.ndarray | None = None
    mode: str = "max"
    argmax: np.ndarray | None = None
    input_range: tuple = (0.0, 1.0)

    @property
    def count(self):
        return int(self.values.shape[0])


def number_text(value, decimals):
    """A value as the player writes it: ``decimals`` places, "-0.00" as "0.00", -inf as "-∞"."""
    value = float(value)
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "-∞" if value < 0 else "∞"
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def _signed_limit(values):
    finite = np.asarray(values, dtype=np.float32)
    finite = finite[np.isfinite(finite)]
    return float(np.max(np.abs(finite))) if finite.size and np.max(np.abs(finite)) > 0 else 1.0


@dataclass(frozen=True)
class _Layout:
    height: int
    width: int
    cell: int  # input and output grids' cell side
    number_font: int  # 0: no numbers in those grids
    input_origin: tuple
    output_origin: tuple
    work_left: int
    work_top: int
    work_cell: tuple  # (height, width) of an arithmetic cell
    work_font: int
    equation_top: int
    equation_left: int
    equation_font: int


def _widest(texts, size):
    return max((text_size(text, size)[0] for text in texts), default=1)


class StepFrames:
    """Draws frame ``i`` of a step sequence: ``frame(i)`` is (H, W, 3) uint8.

    Parameters
    ----------
    data : StepData
    scheme : str
        A name of viz.images.COLOUR_SCHEMES.
    size : (rows, columns) or None
        The frame's size, e.g. ``SLIDE``; None for the natural size (cells of ``NATURAL_CELL`` pixels).
    """

    def __init__(self, data: StepData, *, scheme="standard", size=SLIDE):
        self.data = data
        self.scheme = COLOUR_SCHEMES[scheme]
        self.scheme_name = scheme
        self.window_shape = (data.rows.shape[1], data.cols.shape[1])
        self.stack = 3 if data.kind == "conv" else 1
        self.layout = self._plan(size)
        self._draw_static()

    # ---- texts and colours -------------------------------------------------------------------

    def _input_colours(self, values):
        values = np.asarray(values, dtype=np.float32)
        if self.data.kind == "conv":
            return grey_rgb(values, *self.data.input_range)
        rgb = diverging_rgb(np.nan_to_num(values, neginf=0.0), _signed_limit(self.data.padded),
                            scheme=self.scheme_name)
        rgb[~np.isfinite(values)] = BACKGROUND  # max pooling's -inf padding
        return rgb

    def _signed_colours(self, values, limit):
        return diverging_rgb(np.asarray(values, dtype=np.float32), limit, scheme=self.scheme_name)

    def _work_texts(self):
        data = self.data
        texts = [number_text(value, data.decimals["patch"]) for value in data.padded.ravel()]
        if data.kind == "conv":
            texts += [number_text(value, data.decimals["kernel"]) for value in data.kernel.ravel()]
            extremes = (np.min(data.products), np.max(data.products))
            texts += [number_text(value, data.decimals["products"]) for value in extremes]
        return texts

    # ---- layout --------------------------------------------------------------------------------

    def _plan(self, size):
        data = self.data
        in_rows, in_cols = data.padded.shape
        out_rows, out_cols = data.output.shape
        kh, kw = self.window_shape
        work_texts = self._work_texts()
        title_band = TITLE_FONT + 30
        caption_band = CAPTION_FONT + 16
        em = _widest(work_texts, 100) / 100  # widest arithmetic number, in font sizes

        def work_size(font):
            cell = (int(1.75 * font), int(em * font + 0.8 * font))
            height = self.stack * (kh * cell[0] + caption_band) + (self.stack - 1) * int(1.6 * font)
            return cell, height, kw * cell[1]

        natural = size is None
        if natural:
            work_font = 34
            cell = NATURAL_CELL
        else:
            height, width = size
            grid_height = height - title_band - caption_band - MARGIN
            work_font = _LARGEST_WORK_FONT
            while work_font > 12:
                _, work_height, work_width = work_size(work_font)
                if work_height <= grid_height - 3 * work_font and work_width <= 0.3 * width:
                    break
                work_font -= 1
        equation_font = max(18, min(40, work_font))
        equation_band = int(2.4 * equation_font) + 20
        work_cell, work_height, work_width = work_size(work_font)
        if not natural:
            across = (width - 2 * MARGIN - work_width - 2 * GAP) / (in_cols + out_cols)
            cell = int(max(4, min(140, across, grid_height / in_rows, (grid_height - equation_band) / out_rows)))
        cell_texts = [number_text(value, data.decimals["input"]) for value in (
            np.min(np.where(np.isfinite(data.padded), data.padded, 0)), np.max(data.padded))]
        cell_texts += [number_text(value, data.decimals["output"]) for value in (data.output.min(), data.output.max())]
        if not np.all(np.isfinite(data.padded)):
            cell_texts.append("-∞")
        cell_em = _widest(cell_texts, 100) / 100
        number_font = int(min(0.42 * cell, 0.82 * cell / cell_em))
        number_font = number_font if number_font >= _SMALLEST_NUMBER_FONT else 0

        grid_top = title_band + caption_band
        input_width, output_width = in_cols * cell, out_cols * cell
        content_width = input_width + GAP + work_width + GAP + output_width
        content_height = max(in_rows * cell, work_height + equation_band, out_rows * cell + equation_band)
        if natural:
            width = content_width + 2 * MARGIN
            height = grid_top + content_height + MARGIN
            width, height = width + width % 2, height + height % 2  # video encoders want even sizes
        left = max(MARGIN, (width - content_width) // 2)
        work_left = left + input_width + GAP
        output_left = work_left + work_width + GAP
        equation_top = grid_top + max(work_height, out_rows * cell) + 16
        return _Layout(height=height, width=width, cell=cell, number_font=number_font,
                       input_origin=(grid_top, left), output_origin=(grid_top, output_left),
                       work_left=work_left, work_top=grid_top - caption_band, work_cell=work_cell,
                       work_font=work_font, equation_top=equation_top, equation_left=work_left,
                       equation_font=equation_font)

    # ---- grids -----------------------------------------------------------------------------------

    def _grid(self, values, colours, cell, font, decimals, *, cell_width=None):
        """A grid of coloured cells (h*cell, w*cell_width, 3) with a line between cells and centred numbers."""
        cell_width = cell if cell_width is None else cell_width
        rows, cols = values.shape
        canvas = np.repeat(np.repeat(colours, cell, axis=0), cell_width, axis=1)
        line = np.asarray(self.scheme.line, dtype=np.uint8)
        canvas[::cell, :] = line
        canvas[:, ::cell_width] = line
        canvas[-1, :] = line
        canvas[:, -1] = line
        if font:
            luminance = colours[..., 0] * 0.299 + colours[..., 1] * 0.587 + colours[..., 2] * 0.114
            for row in range(rows):
                for col in range(cols):
                    ink = TEXT_COLOUR if luminance[row, col] >= 140 else (255, 255, 255)
                    stamp_text(canvas, number_text(values[row, col], decimals), row * cell + cell / 2,
                               col * cell_width + cell_width / 2, font, ink)
        return canvas

    def _hatch(self, canvas, mask, cell):
        """Diagonal lines of the padding colour over every True cell of ``mask``."""
        offsets = np.add.outer(np.arange(cell), np.arange(cell))
        lines = offsets % max(6, cell // 3) < max(1, cell // 24)
        colour = np.asarray(self.scheme.padding, dtype=np.float32)
        for row, col in zip(*np.nonzero(mask)):
            block = canvas[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell]
            block[lines] = np.rint(block[lines] * 0.45 + colour * 0.55).astype(np.uint8)

    def _draw_static(self):
        data, layout = self.data, self.layout
        cell = layout.cell
        canvas = np.empty((layout.height, layout.width, 3), dtype=np.uint8)
        canvas[:] = BACKGROUND

        # The input with its padding.
        values = np.asarray(data.padded, dtype=np.float32)
        input_grid = self._grid(values, self._input_colours(values), cell, layout.number_font, data.decimals["input"])
        top, bottom, left, right = (int(side) for side in data.pad)
        is_padding = np.ones(values.shape, dtype=bool)
        is_padding[top:values.shape[0] - bottom, left:values.shape[1] - right] = False
        if is_padding.any() and cell >= 6:
            self._hatch(input_grid, is_padding, cell)
            outline_box(input_grid, top * cell, left * cell, (values.shape[0] - bottom) * cell,
                        (values.shape[1] - right) * cell, self.scheme.padding, max(2, cell // 20))
        self._paste(canvas, input_grid, layout.input_origin)

        # The output: every value, and the same grid before any step (pending cells).
        limit = _signed_limit(data.output)
        output = np.asarray(data.output, dtype=np.float32)
        self.output_done = self._grid(output, self._signed_colours(output, limit), cell, layout.number_font,
                                      data.decimals["output"])
        pending = np.empty(output.shape + (3,), dtype=np.uint8)
        pending[:] = self.scheme.pending
        self.output_pending = self._grid(output, pending, cell, 0, 0)
        rows, cols = output.shape
        cell_index = (np.arange(rows)[:, None] * cols + np.arange(cols)[None, :])
        self.output_cell = np.repeat(np.repeat(cell_index, cell, axis=0), cell, axis=1)

        # Captions, and the kernel (it never changes).
        caption_top = layout.input_origin[0] - CAPTION_FONT - 12
        window_word, kept_word, padding_word = self.scheme.names
        what = "the kernel's window" if data.kind == "conv" else "the pooling window"
        input_caption = ("The region, padded" if data.kind == "conv" else "The activated map")
        stamp_text_left(canvas, f"{input_caption}. {window_word.capitalize()}: {what}", caption_top,
                        layout.input_origin[1], CAPTION_FONT)
        stamp_text_left(canvas, f"The {'output' if data.kind == 'conv' else 'pooled map'} ({rows} x {cols})",
                        caption_top, layout.output_origin[1], CAPTION_FONT)
        self.work_places = self._work_places()
        if data.kind == "conv":
            kernel = np.asarray(data.kernel, dtype=np.float32)
            kernel_grid = self._work_grid(kernel, self._signed_colours(kernel, _signed_limit(kernel)),
                                          data.decimals["kernel"])
            self._paste(canvas, kernel_grid, self.work_places["kernel"])
        for name, (grid_top, grid_left) in self.work_places.items():
            caption = {"patch": "window", "kernel": "kernel", "products": "products"}[name]
            width = self.window_shape[1] * layout.work_cell[1]
            stamp_text(canvas, caption, grid_top - CAPTION_FONT / 2 - 10, grid_left + width / 2, CAPTION_FONT)
        operator_font = layout.work_font + 8
        for index, symbol in enumerate(("×", "=")[: self.stack - 1]):
            below = list(self.work_places.values())[index]
            centre_y = below[0] + self.window_shape[0] * layout.work_cell[0] + int(0.8 * layout.work_font) - 6
            width = self.window_shape[1] * layout.work_cell[1]
            stamp_text(canvas, symbol, centre_y, below[1] + width / 2, operator_font)
        self.products_limit = _signed_limit(data.products) if data.products is not None else 1.0
        self.base = canvas

    def _work_places(self):
        layout = self.layout
        kh = self.window_shape[0]
        band = CAPTION_FONT + 16
        step = kh * layout.work_cell[0] + band + int(1.6 * layout.work_font)
        names = ("patch", "kernel", "products") if self.stack == 3 else ("patch",)
        top = layout.work_top + band
        return {name: (top + index * step, layout.work_left) for index, name in enumerate(names)}

    def _work_grid(self, values, colours, decimals):
        cell_height, cell_width = self.layout.work_cell
        return self._grid(values, colours, cell_height, self.layout.work_font, decimals, cell_width=cell_width)

    @staticmethod
    def _paste(canvas, picture, origin):
        top, left = origin
        canvas[top:top + picture.shape[0], left:left + picture.shape[1]] = picture

    # ---- one step ----------------------------------------------------------------------------------

    def frame(self, step):
        """Frame of step ``step`` (0-based), (H, W, 3) uint8."""
        data, layout, cell = self.data, self.layout, self.layout.cell
        if not 0 <= step < data.count:
            raise ValueError(f"step must be from 0 to {data.count - 1}, got {step}")
        canvas = self.base.copy()
        stamp_text_left(canvas, f"{data.title}: step {step + 1} of {data.count}", MARGIN // 2 + 4, MARGIN,
                        TITLE_FONT)

        # The output filled up to this step, the current cell outlined.
        done = (self.output_cell <= step)[..., None]
        self._paste(canvas, np.where(done, self.output_done, self.output_pending), layout.output_origin)
        out_row, out_col = divmod(step, data.output.shape[1])
        top, left = layout.output_origin
        thickness = max(3, cell // 10)
        outline_box(canvas, top + out_row * cell, left + out_col * cell, top + (out_row + 1) * cell + 1,
                    left + (out_col + 1) * cell + 1, self.scheme.window, thickness)

        # The window on the input (the cells it reads, when dilation spreads them), and the kept value.
        rows, cols = data.rows[step], data.cols[step]
        top, left = layout.input_origin
        if rows[-1] - rows[0] + 1 > len(rows) or cols[-1] - cols[0] + 1 > len(cols):
            for row in rows:
                for col in cols:
                    outline_box(canvas, top + row * cell, left + col * cell, top + (row + 1) * cell,
                                left + (col + 1) * cell, self.scheme.window, max(2, cell // 18))
        outline_box(canvas, top + rows[0] * cell - 1, left + cols[0] * cell - 1, top + (rows[-1] + 1) * cell + 2,
                    left + (cols[-1] + 1) * cell + 2, self.scheme.window, thickness)
        kept = None
        if data.argmax is not None:
            kept = (int(data.argmax[step][0]), int(data.argmax[step][1]))
            self._kept_ring(canvas, top + kept[0] * cell, left + kept[1] * cell, cell, cell)

        # The arithmetic.
        patch = np.asarray(data.padded[np.ix_(rows, cols)], dtype=np.float32)
        places = self.work_places
        self._paste(canvas, self._work_grid(patch, self._input_colours(patch), data.decimals["patch"]),
                    places["patch"])
        if kept is not None:
            cell_height, cell_width = layout.work_cell
            row, col = list(rows).index(kept[0]), list(cols).index(kept[1])
            self._kept_ring(canvas, places["patch"][0] + row * cell_height, places["patch"][1] + col * cell_width,
                            cell_height, cell_width)
        if data.kind == "conv":
            products = np.asarray(data.products[step], dtype=np.float32)
            self._paste(canvas, self._work_grid(products, self._signed_colours(products, self.products_limit),
                                                data.decimals["products"]), places["products"])
        self._equation(canvas, step, out_row, out_col)
        return canvas

    def _kept_ring(self, canvas, top, left, height, width):
        thickness = max(3, min(height, width) // 10)
        outline_box(canvas, top, left, top + height, left + width, self.scheme.kept, thickness)
        outline_box(canvas, top + thickness, left + thickness, top + height - thickness, left + width - thickness,
                    (255, 255, 255), max(1, thickness // 2))

    def _equation(self, canvas, step, out_row, out_col):
        data, layout = self.data, self.layout
        decimals = data.decimals["equation"]
        value = number_text(data.values[step], decimals)
        size = len(data.rows[step]) * len(data.cols[step])
        if data.kind == "conv":
            line = (f"sum {number_text(data.sums[step], decimals)} + bias {number_text(data.bias, decimals)} "
                    f"= {value}")
        elif data.mode == "avg":
            line = f"sum {number_text(data.sums[step], decimals)} / {size} = {value}"
        else:
            line = f"largest of the {size} values = {value}"
        font = _fitting_font(line, layout.equation_font, layout.width - layout.equation_left - MARGIN)
        stamp_text_left(canvas, line, layout.equation_top, layout.equation_left, font)
        where = f"goes to row {out_row}, column {out_col} of the {'output' if data.kind == 'conv' else 'pooled map'}"
        stamp_text_left(canvas, where, layout.equation_top + int(1.4 * font), layout.equation_left,
                        max(16, int(0.7 * font)))


@lru_cache(maxsize=256)
def _fitting_font(text, size, width):
    while size > 14 and text_size(text, size)[0] > width:
        size -= 1
    return size
