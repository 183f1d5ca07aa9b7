"""Frames of numbers and maps: value grids, the multiply step of one position, feature-map grids, overlays.

Every function here is pure drawing: NumPy arrays (shaped like the engine's step trace) in, RGB uint8
arrays (H, W, 3) out. Numbers are rendered into the pixels, large enough to read on a projector, so a
frame shown with ``st.image`` at its own size stays crisp. (The convolution lesson's step-by-step
players draw in the browser instead: views/components/step_player/.)

Grid frames (:func:`value_grid_frame`) share one layout: cell ``(row, col)`` of an
``(h, w)`` grid drawn with ``cell`` pixels per side occupies rows ``row*cell .. (row+1)*cell - 1`` and
columns ``col*cell .. (col+1)*cell - 1`` of a frame of exactly ``(h*cell, w*cell, 3)``; outlines are drawn
inside the cells they surround. :func:`cell_box` returns those bounds.
"""

from functools import lru_cache

import html

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from viz.images import diverging_rgb, fit_factor, grey_rgb, heat_rgb, upscale_nearest

# Colours chosen to stay distinct from the grey scan and from the blue-white-red signed map.
WINDOW_COLOUR = (255, 140, 0)  # the region, a kernel's window: orange
CHOSEN_COLOUR = (0, 170, 60)  # a chosen spot (a cut kernel's box, a map's peak): green
MARK_COLOUR = (105, 105, 105)  # the cross on cells an activation set to zero (grey: numbers stay legible)
GRID_COLOUR = (150, 150, 150)
BLANK_COLOUR = (236, 236, 236)  # pixels a map leaves out (e.g. set to zero by ReLU)
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (20, 20, 20)

_FONT_FILES = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "LiberationSans-Bold.ttf")
_MIN_NUMBER_FONT = 11  # below this a number is unreadable anyway: the cell shows colour only


# ----------------------------------------------------------------------------------------------
# Text: each (string, size) is rendered once by Pillow and kept as an alpha mask; stamping a
# cached mask with NumPy is several times faster than asking Pillow to draw text on every frame.
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _font(size):
    """A bold sans-serif font at ``size`` pixels: DejaVu when installed, else Pillow's bundled font."""
    for file_name in _FONT_FILES:
        try:
            return ImageFont.truetype(file_name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


_COMPOSABLE = frozenset("0123456789.-+e")


@lru_cache(maxsize=512)
def _glyph(character, size):
    """Alpha mask of one character in a box of the font's full line height (so glyphs share a baseline)."""
    font = _font(size)
    ascent, descent = font.getmetrics()
    width = max(int(np.ceil(font.getlength(character))), 1)
    image = Image.new("L", (width, ascent + descent), 0)
    ImageDraw.Draw(image).text((0, 0), character, fill=255, font=font)
    return np.asarray(image, dtype=np.uint8)


@lru_cache(maxsize=8192)
def _text_mask(text, size):
    """Alpha mask (h, w) uint8 of ``text`` at ``size`` pixels, tightly cropped (read-only).

    Numbers are assembled from cached glyphs (digits have no kerning), so a new number costs a
    concatenation instead of a font rasterisation; other text is rendered by Pillow.
    """
    if text and set(text) <= _COMPOSABLE:
        line = np.concatenate([_glyph(character, size) for character in text], axis=1)
    else:
        font = _font(size)
        ascent, descent = font.getmetrics()
        width = max(int(np.ceil(font.getlength(text))), 1)
        image = Image.new("L", (width, ascent + descent), 0)
        ImageDraw.Draw(image).text((0, 0), text, fill=255, font=font)
        line = np.asarray(image, dtype=np.uint8)
    inked_rows = np.flatnonzero(line.max(axis=1))
    inked_cols = np.flatnonzero(line.max(axis=0))
    if inked_rows.size == 0:
        mask = np.zeros((1, 1), dtype=np.uint8)
    else:
        mask = line[inked_rows[0]:inked_rows[-1] + 1, inked_cols[0]:inked_cols[-1] + 1].copy()
    mask.setflags(write=False)
    return mask


def text_size(text, size):
    """Width and height in pixels of ``text`` drawn at font ``size``."""
    mask = _text_mask(text, size)
    return mask.shape[1], mask.shape[0]


def _line_height(size):
    # The height of a digit at this size, so every line of numbers sits on the same baseline.
    return _text_mask("0", size).shape[0]


def stamp_text(canvas, text, centre_y, centre_x, size, colour=TEXT_COLOUR):
    """Draw ``text`` centred at (centre_y, centre_x) into ``canvas`` (H, W, 3) uint8, in place.

    Text that would fall outside the canvas is clipped. Returns the canvas.
    """
    mask = _text_mask(text, size)
    height, width = mask.shape
    top = int(round(centre_y - height / 2))
    left = int(round(centre_x - width / 2))
    return _blend_mask(canvas, mask, top, left, colour, _alpha(text, size))


def stamp_text_left(canvas, text, top, left, size, colour=TEXT_COLOUR):
    """Draw ``text`` with its top-left corner at (top, left) into ``canvas``, in place; returns it."""
    return _blend_mask(canvas, _text_mask(text, size), top, left, colour)


@lru_cache(maxsize=8192)
def _alpha(text, size):
    """The text mask as float32 opacity (h, w, 1) in [0, 1], cached beside the mask."""
    alpha = (_text_mask(text, size).astype(np.float32) / 255.0)[..., None]
    alpha.setflags(write=False)
    return alpha


def _blend_mask(canvas, mask, top, left, colour, alpha=None):
    height, width = mask.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, canvas.shape[0]), min(left + width, canvas.shape[1])
    if y0 >= y1 or x0 >= x1:
        return canvas
    if alpha is None:
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
    alpha = alpha[y0 - top:y1 - top, x0 - left:x1 - left]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    # region + (ink - region) * alpha: the ink laid over the background with the glyph's coverage.
    region += (np.asarray(colour, dtype=np.float32) - region) * alpha
    canvas[y0:y1, x0:x1] = region + 0.5  # + 0.5 then truncation by the uint8 cast rounds to nearest
    return canvas


# ----------------------------------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------------------------------


def grid_decimals(values, significant=3, max_decimals=4):
    """Decimal places that give the largest magnitude in ``values`` ``significant`` digits (0..max_decimals).

    A grid of whole numbers (e.g. a Sobel kernel) gets 0. One count for the whole grid keeps the
    columns of numbers aligned and the same width.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    largest = float(np.max(np.abs(finite))) if finite.size else 0.0
    if largest == 0.0 or (np.all(finite == np.round(finite)) and largest < 1e5):
        return 0
    return int(np.clip(significant - 1 - np.floor(np.log10(largest)), 0, max_decimals))


# Digits of the step-by-step numbers, shared by the browser's player and the slide frames.
CELL_SIGNIFICANT = 2  # in the cells of the input and output grids, where space is tight
WORK_SIGNIFICANT = 3  # in the window, kernel and products grids of the arithmetic
EQUATION_DECIMALS = 4  # of the sums, the bias and the step's value in the equation


def finite_decimals(values, significant):
    """:func:`grid_decimals` of the finite values only (max pooling's -inf padding has no digits)."""
    values = np.asarray(values, dtype=np.float32)
    return grid_decimals(values[np.isfinite(values)], significant)


def format_grid(values, significant=3, max_decimals=4):
    """Texts (h, w) list of lists for a grid of values, all with the decimals of :func:`grid_decimals`."""
    values = np.asarray(values, dtype=np.float64)
    decimals = grid_decimals(values, significant, max_decimals)
    # Adding 0.0 after rounding turns -0.0 into 0.0, so a tiny negative never prints as "-0.000".
    rounded = np.round(values, decimals) + 0.0
    return [[f"{value:.{decimals}f}" for value in row] for row in rounded.tolist()]


_COMFORTABLE_FONT = 15  # below this, a grid drops to two significant digits to get bigger numbers


def _fitted_grid_texts(values, cell, largest):
    """Texts for a grid of square cells and the font size they fit at (0: none fit).

    Three significant digits when they fit comfortably, otherwise two (the larger font wins).
    """
    best_texts, best_size = None, 0
    for significant in (3, 2):
        texts = format_grid(values, significant, max_decimals=3)
        size = _number_font_size([text for row in texts for text in row], cell, cell, largest=largest)
        if size > best_size:
            best_texts, best_size = texts, size
        if best_size >= _COMFORTABLE_FONT:
            break
    return best_texts, best_size


def _contrasting_ink(rgb_cells):
    """Black or white text colour for each background colour in ``rgb_cells`` (..., 3) uint8."""
    luminance = rgb_cells[..., 0] * 0.299 + rgb_cells[..., 1] * 0.587 + rgb_cells[..., 2] * 0.114
    return luminance >= 140.0


def _number_font_size(texts, cell_width, cell_height, largest=30):
    """The largest font size (<= ``largest``) at which every text fits its cell, or 0 if under the minimum."""
    by_height = int(cell_height * 0.45)
    if min(by_height, largest) < _MIN_NUMBER_FONT:
        return 0
    longest = max((len(text) for text in texts), default=1)
    # Width grows with the character count: measuring only the longest texts is enough and cheap.
    candidates = {text for text in texts if len(text) >= longest - 1}
    widest = max((text_size(text, 20)[0] for text in candidates), default=1)
    by_width = int(20 * (cell_width * 0.8) / max(widest, 1))  # room for a highlight outline
    size = min(by_width, by_height, largest)
    return size if size >= _MIN_NUMBER_FONT else 0


# ----------------------------------------------------------------------------------------------
# Grid geometry
# ----------------------------------------------------------------------------------------------


def cell_box(row, col, cell):
    """Pixel bounds (top, left, bottom, right) of grid cell (row, col), bottom/right exclusive."""
    return row * cell, col * cell, (row + 1) * cell, (col + 1) * cell


def fit_cell(grid_height, grid_width, target, *, smallest=2, largest=96):
    """Cell size in pixels so a (grid_height, grid_width) grid is at most ``target`` pixels on its long side."""
    cell = int(target) // max(int(grid_height), int(grid_width), 1)
    return int(min(max(cell, smallest), largest))


def _cells_to_pixels(cell_rgb, cell, cell_width=None):
    """(h, w, 3) per-cell colours -> (h*cell, w*cell_width, 3) writable frame."""
    cell_width = cell if cell_width is None else cell_width
    # Two np.repeat passes copy whole rows at a time: faster than one broadcast into a 5-D view,
    # whose innermost axis (3 colour bytes) is too short for NumPy's copy loops.
    return np.repeat(np.repeat(cell_rgb, cell, axis=0), cell_width, axis=1)


def _draw_grid_lines(canvas, cell):
    if cell < 8:
        return  # lines would hide small cells
    canvas[::cell, :] = GRID_COLOUR
    canvas[:, ::cell] = GRID_COLOUR
    canvas[-1, :] = GRID_COLOUR
    canvas[:, -1] = GRID_COLOUR


def outline_box(canvas, top, left, bottom, right, colour, thickness):
    """Draw a rectangle outline inside pixel bounds [top, bottom) x [left, right) of ``canvas``, in place.

    Returns the canvas. Bounds are clipped to the canvas.
    """
    height, width = canvas.shape[:2]
    top, left = max(int(top), 0), max(int(left), 0)
    bottom, right = min(int(bottom), height), min(int(right), width)
    if top >= bottom or left >= right:
        return canvas
    thickness = max(1, min(int(thickness), (bottom - top + 1) // 2, (right - left + 1) // 2))
    canvas[top:top + thickness, left:right] = colour
    canvas[bottom - thickness:bottom, left:right] = colour
    canvas[top:bottom, left:left + thickness] = colour
    canvas[top:bottom, right - thickness:right] = colour
    return canvas


def _cross_cells(canvas, mask, cell, colour):
    """Mark every True cell of ``mask`` (h, w): a cross in large cells, a filled square in small ones."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return
    if cell < 10:
        for row, col in zip(rows, cols):
            canvas[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = colour
        return
    # One cross shape, drawn once, stamped into every marked cell.
    inset = max(2, cell // 5)
    width = max(1, cell // 14)
    span = np.arange(cell)
    diagonal = np.abs(span[:, None] - span[None, :]) < width
    anti_diagonal = np.abs(span[:, None] + span[None, :] - (cell - 1)) < width
    inside = (span[:, None] >= inset) & (span[:, None] < cell - inset)
    inside = inside & inside.T
    cross = (diagonal | anti_diagonal) & inside
    for row, col in zip(rows, cols):
        block = canvas[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell]
        block[cross] = colour


# ----------------------------------------------------------------------------------------------
# Colouring
# ----------------------------------------------------------------------------------------------


def colour_cells(values, colour_map="diverging", *, limit=None, low=0.0, high=1.0):
    """Values (h, w) -> per-cell RGB (h, w, 3) uint8.

    ``colour_map``: "grey" (``low`` black, ``high`` white: windowed scans), "diverging" (signed, blue-white-
    red, ``limit`` = magnitude at full colour), "heat" (non-negative, dark to bright, ``low``..``high``).
    """
    if colour_map == "grey":
        return grey_rgb(values, low, high)
    if colour_map == "diverging":
        return diverging_rgb(values, limit)
    if colour_map == "heat":
        return heat_rgb(values, low, high)
    raise ValueError(f"colour_map must be 'grey', 'diverging' or 'heat', got {colour_map!r}")


def _stamp_numbers(canvas, values, cell, *, cell_rgb, largest=30):
    """Write each value (h, w) centred in its cell; returns the font size used (0 = none fit)."""
    texts, size = _fitted_grid_texts(values, cell, largest)
    if not size:
        return 0
    dark_ink = _contrasting_ink(cell_rgb)
    for row, row_texts in enumerate(texts):
        for col, text in enumerate(row_texts):
            colour = TEXT_COLOUR if dark_ink[row, col] else (255, 255, 255)
            stamp_text(canvas, text, row * cell + cell / 2, col * cell + cell / 2, size, colour)
    return size


# ----------------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------------


def value_grid_frame(values, *, cell, colour_map="diverging", limit=None, low=0.0, high=1.0, marked=None,
                     show_numbers=None):
    """A grid of values as coloured cells, optionally with numbers and marked cells.

    Parameters
    ----------
    values : ndarray, shape (h, w)
    cell : int
        Pixels per cell side.
    colour_map, limit, low, high
        See :func:`colour_cells`.
    marked : ndarray of bool, shape (h, w), optional
        Cells crossed out (e.g. the ones ReLU set to zero).
    show_numbers : bool, optional
        Default: when the numbers fit.

    Returns
    -------
    ndarray, shape (h*cell, w*cell, 3), uint8
    """
    values = np.asarray(values, dtype=np.float32)
    cell_rgb = colour_cells(values, colour_map, limit=limit, low=low, high=high)
    canvas = _cells_to_pixels(cell_rgb, cell)
    _draw_grid_lines(canvas, cell)
    if marked is not None:
        # Under the numbers, so a crossed cell still shows its (new) value.
        _cross_cells(canvas, np.asarray(marked, dtype=bool), cell, MARK_COLOUR)
    if (show_numbers is None or show_numbers) and cell * 0.45 >= _MIN_NUMBER_FONT:
        _stamp_numbers(canvas, values, cell, cell_rgb=cell_rgb)
    return canvas


def feature_map_grid(maps, titles, *, columns=4, tile=240, limit=None, colour_map="diverging",
                     marked=None):
    """Several feature maps side by side in a grid, each with its title: a bank of kernels at a glance.

    Parameters
    ----------
    maps : sequence of ndarray, each (h_i, w_i)
        Feature maps (shapes may differ, e.g. after pooling).
    titles : sequence of str
        One title per map.
    columns : int
        Maps per row.
    tile : int
        Each map is drawn inside a ``tile`` x ``tile`` square (nearest-neighbour scaled, aspect kept).
    limit : float or sequence of float, optional
        The magnitude drawn at full colour: one number for every map (one shared colour scale), one per
        map, or None for each map's own largest magnitude.
    colour_map : str
        "diverging" or "heat" (see :func:`colour_cells`; with "heat" a shared scale runs 0..``limit``).
    marked : sequence of ndarray of bool, optional
        Per map, pixels to paint in the mark colour (e.g. set to zero by ReLU).

    Returns
    -------
    ndarray, shape (rows*(tile + title band), columns*tile + gaps, 3), uint8
    """
    if len(maps) != len(titles):
        raise ValueError(f"need one title per map, got {len(maps)} maps and {len(titles)} titles")
    if not maps:
        raise ValueError("feature_map_grid needs at least one map")
    columns = max(1, min(int(columns), len(maps)))
    rows = -(-len(maps) // columns)
    title_size = max(14, tile // 13)
    title_lines = [wrap_text(title, title_size, tile) for title in titles]
    line_step = _line_height(title_size) + 6
    title_band = max(len(lines) for lines in title_lines) * line_step + 8
    gap = 10
    canvas = np.empty((rows * (tile + title_band + gap) - gap, columns * (tile + gap) - gap, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    limits = list(limit) if isinstance(limit, (list, tuple, np.ndarray)) else [limit] * len(maps)
    if len(limits) != len(maps):
        raise ValueError(f"need one limit per map, got {len(limits)} limits and {len(maps)} maps")
    for index, (feature_map, title) in enumerate(zip(maps, titles)):
        feature_map = np.asarray(feature_map, dtype=np.float32)
        if colour_map == "heat":
            rgb = heat_rgb(feature_map, 0.0 if limits[index] is not None else None, limits[index])
        else:
            rgb = diverging_rgb(feature_map, limits[index])
        if marked is not None and marked[index] is not None:
            rgb = np.where(np.asarray(marked[index], dtype=bool)[..., None],
                           np.asarray(BLANK_COLOUR, dtype=np.uint8), rgb)
        rgb = _fit_into(rgb, tile)
        row, col = divmod(index, columns)
        top = row * (tile + title_band + gap)
        left = col * (tile + gap)
        lines = title_lines[index]
        # Lines centred as a block at the bottom of the band, right above their map.
        first_centre = top + title_band - 4 - (len(lines) - 0.5) * line_step
        for line_index, line in enumerate(lines):
            stamp_text(canvas, line, first_centre + line_index * line_step, left + tile / 2, title_size)
        y0 = top + title_band + (tile - rgb.shape[0]) // 2
        x0 = left + (tile - rgb.shape[1]) // 2
        canvas[y0:y0 + rgb.shape[0], x0:x0 + rgb.shape[1]] = rgb
        outline_box(canvas, y0 - 1, x0 - 1, y0 + rgb.shape[0] + 1, x0 + rgb.shape[1] + 1, GRID_COLOUR, 1)
    return canvas


def wrap_text(text, size, width, *, max_lines=2):
    """``text`` broken at spaces into at most ``max_lines`` lines that fit ``width`` pixels at font ``size``.

    No-break spaces (U+00A0) hold their words together, e.g. a shape "640\u00a0x\u00a0603".

    Only what still does not fit (a very long word, or more than ``max_lines`` lines' worth) is cut, with '...'.
    """
    lines, current = [], ""
    for word in filter(None, text.split(" ")):
        candidate = f"{current} {word}" if current else word
        if current and text_size(candidate, size)[0] > width and len(lines) < max_lines - 1:
            lines.append(current)
            candidate = word
        current = candidate
    lines.append(current)
    return [_shorten(line, size, width) for line in lines]


def _shorten(text, size, width):
    """Cut ``text`` with '...' until it fits ``width`` pixels at font ``size``."""
    if text_size(text, size)[0] <= width:
        return text
    while len(text) > 1 and text_size(text + "...", size)[0] > width:
        text = text[:-1]
    return text + "..."


def _fit_into(rgb, box):
    """Scale an RGB image (h, w, 3) by nearest neighbour so its longer side is ``box`` pixels (or less)."""
    height, width = rgb.shape[:2]
    scale = box / max(height, width)
    new_height, new_width = max(1, int(height * scale)), max(1, int(width * scale))
    # Sample the centre of each target pixel: a plain decimation when shrinking, crisp blocks when enlarging.
    row_index = np.minimum(((np.arange(new_height) + 0.5) / scale).astype(np.intp), height - 1)
    col_index = np.minimum(((np.arange(new_width) + 0.5) / scale).astype(np.intp), width - 1)
    return rgb[row_index[:, None], col_index[None, :]]


def fit_into(rgb, box):
    """Public form of the nearest-neighbour fit: an RGB image (h, w, 3) scaled so its long side is ``box``."""
    if box < 1:
        raise ValueError(f"box must be at least 1 pixel, got {box}")
    return _fit_into(np.asarray(rgb), int(box))


def overlay_line_width(picture_shape):
    """Line width in pixels for boxes and rings drawn on a picture of ``picture_shape``: thin beside it, >= 2."""
    return max(2, max(picture_shape[:2]) // 256)


def region_overlay(rgb, top, left, height, width, *, scale=1.0, colour=WINDOW_COLOUR, thickness=None):
    """A copy of ``rgb`` (H, W, 3) with the region rows top..top+height, cols left..left+width outlined.

    ``scale`` converts image coordinates to the pixels of ``rgb`` (when it was resized for display);
    ``thickness`` defaults to :func:`overlay_line_width`.
    """
    canvas = np.array(rgb, dtype=np.uint8, copy=True)
    thickness = overlay_line_width(canvas.shape) if thickness is None else int(thickness)
    y0, x0 = int(np.floor(top * scale)), int(np.floor(left * scale))
    y1, x1 = int(np.ceil((top + height) * scale)), int(np.ceil((left + width) * scale))
    # Grow the box by the line width so the line never hides the region's own pixels.
    return outline_box(canvas, y0 - thickness, x0 - thickness, y1 + thickness, x1 + thickness, colour,
                       thickness)


def point_marker(rgb, row, col, *, scale=1, colour=CHOSEN_COLOUR, radius=None, thickness=None):
    """A copy of ``rgb`` with a square ring around image pixel (row, col): e.g. where a map is largest.

    ``scale`` is how many pixels of ``rgb`` one image pixel spans; the ring lies ``radius`` pixels of
    ``rgb`` outside that block, so the pixel itself stays visible. ``radius`` defaults to a 40th of the
    picture's long side, ``thickness`` to :func:`overlay_line_width`.
    """
    canvas = np.array(rgb, dtype=np.uint8, copy=True)
    thickness = overlay_line_width(canvas.shape) if thickness is None else int(thickness)
    radius = max(8, max(canvas.shape[:2]) // 40) if radius is None else int(radius)
    radius = max(radius, thickness + 1)  # a gap between the ring and the pixel it marks
    top, left = int(row * scale), int(col * scale)
    block = max(int(scale), 1)
    return outline_box(canvas, top - radius, left - radius, top + block + radius, left + block + radius, colour,
                       thickness)


OVERLAY_SIDE = 540  # a small picture is enlarged to about this long side before boxes and rings go on it


def marked_picture(rgb, *, boxes=(), peak=None, target=OVERLAY_SIDE):
    """The picture ready to show with its overlays: enlarged if small, then boxes and a ring drawn thin on it.

    A 10 x 10 dose grid drawn as is would vanish under lines a few pixels wide; enlarged by nearest
    neighbour to about ``target`` pixels first, its pixels stay crisp squares and the lines stay thin.

    Parameters
    ----------
    rgb : ndarray, shape (H, W, 3), uint8
    boxes : sequence of ((top, left, height, width), colour)
        Regions in pixels of ``rgb`` (fractions allowed), outlined just outside their pixels.
    peak : (row, col), optional
        A pixel of ``rgb`` ringed in green (:data:`CHOSEN_COLOUR`).
    target : int
        The long side a small picture is enlarged to at most (by a whole factor); larger ones keep their size.

    Returns
    -------
    ndarray, shape (H * f, W * f, 3), uint8, f the whole enlargement factor (1 when H, W >= target / 2)
    """
    rgb = np.asarray(rgb, dtype=np.uint8)
    factor = fit_factor(*rgb.shape[:2], target)
    # The overlays below draw on copies: a picture already large enough needs no enlarged copy of its own.
    picture = upscale_nearest(rgb, factor) if factor > 1 else rgb
    for (top, left, height, width), colour in boxes:
        picture = region_overlay(picture, top, left, height, width, scale=factor, colour=colour)
    if peak is not None:
        picture = point_marker(picture, *peak, scale=factor)
    return picture


def value_grid_html(values, *, colour_map="diverging", limit=None, low=0.0, high=1.0, marked=None,
                    caption="", decimals=None):
    """A grid of values as an HTML block: coloured cells with their numbers as text, crossed where ``marked``.

    Text, not pixels: the numbers stay sharp at any zoom or projector size, and building the HTML
    of a 32 x 32 grid takes about a millisecond where drawing the numbers into a JPEG took 20-40 ms
    (a tenth of a busy server's time). The digits scale with the grid's width (container query
    units); past 16 columns they would be too small to read, so the cells carry them as tooltips.

    Parameters
    ----------
    values : ndarray, shape (h, w)
    colour_map, limit, low, high
        See :func:`colour_cells`.
    marked : ndarray of bool, shape (h, w), optional
    caption : str
        Plain text under the grid.
    decimals : int, optional
        Decimal places of every number; default 2, fewer for magnitudes of 10 and more.

    Returns
    -------
    str
    """
    values = np.asarray(values, dtype=np.float32)
    rows, cols = values.shape
    cell_rgb = colour_cells(values, colour_map, limit=limit, low=low, high=high)
    dark_ink = _contrasting_ink(cell_rgb)
    crossed = np.zeros(values.shape, dtype=bool) if marked is None else np.asarray(marked, dtype=bool)
    largest = float(np.max(np.abs(values[np.isfinite(values)]))) if np.isfinite(values).any() else 0.0
    if decimals is None:
        decimals = 2 if largest < 10 else 1 if largest < 100 else 0
    show_numbers = cols <= 16
    mark = "#%02x%02x%02x" % MARK_COLOUR
    cells = []
    for row in range(rows):
        for col in range(cols):
            red, green, blue = (int(channel) for channel in cell_rgb[row, col])
            background = f"#{red:02x}{green:02x}{blue:02x}"
            if crossed[row, col]:
                background = (f"linear-gradient(to top right,transparent 46%,{mark} 47% 53%,transparent 54%),"
                              f"linear-gradient(to top left,transparent 46%,{mark} 47% 53%,transparent 54%),"
                              + background)
            text = f"{values[row, col]:.{decimals}f}"
            ink = "#1e1e1e" if dark_ink[row, col] else "#ffffff"
            cells.append(f'<div title="{text}" style="background:{background};color:{ink}">'
                         f'{text if show_numbers else ""}</div>')
    grid_style = (f"display:grid;grid-template-columns:repeat({cols},1fr);gap:1px;background:#969696;"
                  f"border:1px solid #969696;font-size:calc(100cqw / {cols} / 3.4);font-variant-numeric:tabular-nums;"
                  "text-align:center;line-height:2.6;font-weight:600")
    return (f'<figure style="container-type:inline-size;margin:0">'
            f'<div class="value-grid" style="{grid_style}">{"".join(cells)}</div>'
            f'<figcaption style="font-size:0.85rem;color:#555;margin-top:0.3rem">{html.escape(caption)}'
            '</figcaption></figure>')


def arithmetic_html(patch, kernel, products, *, low=0.0, high=1.0):
    """patch x kernel = products, as three grids of numbers in HTML: the multiply step of one position.

    Text, not pixels (see :func:`value_grid_html`): the grids sit side by side and wrap under one
    another on a narrow screen, each wide enough for its digits.

    Parameters
    ----------
    patch : ndarray, shape (kh, kw)
        The input values under the window, grey from ``low`` (black) to ``high`` (white).
    kernel : ndarray, shape (kh, kw)
        The kernel as applied, signed colours.
    products : ndarray, shape (kh, kw)
        ``patch * kernel``, signed colours.

    Returns
    -------
    str
    """
    patch, kernel, products = (np.asarray(array, dtype=np.float32) for array in (patch, kernel, products))
    if not patch.shape == kernel.shape == products.shape:
        raise ValueError(f"patch, kernel and products must have one shape, got {patch.shape}, "
                         f"{kernel.shape} and {products.shape}")
    grids = [value_grid_html(patch, colour_map="grey", low=low, high=high, caption="input patch",
                             decimals=grid_decimals(patch, WORK_SIGNIFICANT)),
             value_grid_html(kernel, caption="kernel", decimals=grid_decimals(kernel, WORK_SIGNIFICANT)),
             value_grid_html(products, caption="products", decimals=grid_decimals(products, WORK_SIGNIFICANT))]
    # Each grid at least 3.4 rem per column: room for 3 significant digits, a sign and a point.
    width = f"min-width:calc({patch.shape[1]} * 3.4rem);max-width:calc({patch.shape[1]} * 5rem);flex:1 1 0"
    operator = '<div style="align-self:center;font-size:1.8rem;font-weight:600;padding:0 0.2rem">{}</div>'
    boxed = [f'<div style="{width}">{grid}</div>' for grid in grids]
    parts = [boxed[0], operator.format("&times;"), boxed[1], operator.format("="), boxed[2]]
    return ('<div class="arithmetic" style="display:flex;flex-wrap:wrap;gap:0.4rem;align-items:flex-start">'
            f'{"".join(parts)}</div>')
