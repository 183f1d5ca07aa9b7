"""Widgets and session state of the convolution lesson: the region, the kernel and the settings.

Every choice is kept under a session-state key no widget owns (``stored_key``), so it survives reruns and a
visit to another page. The kernel's source, the region and the settings are three control panels (one
element each instead of fourteen widgets in columns: a click costs the shared server a fifth less),
whose changes write those keys. The kernel itself
lives in ``st.session_state[KERNEL_GRID]`` (a list of rows): the kernel grid, the filter bank, the random
and the cut-from-the-image buttons all write there, and so can a test.
"""

from typing import NamedTuple

import numpy as np
import streamlit as st

from kernels import KERNELS, MAX_KERNEL_SIZE, PADDING_MODES, make_kernel, output_size
from lessons.matching import Box, cut_box, zero_mean_kernel
from lessons.receptive_field import conv_geometry, input_region
from views.caching import computed, image_key  # noqa: F401  the lesson's names for the one cache rule
from views.components.control_panel import button, buttons, control_panel, fixed, menu, number, slider, switch
from views.components.kernel_grid import edit_of, kernel_grid

KERNEL_GRID = "conv_kernel_grid"  # the kernel in use: list of rows of floats (tests may set it)
KERNEL_EDITOR = "conv_kernel_editor"  # the grid of number fields that edits it
KERNEL_PANEL = "conv_kernel_panel"  # where the kernel comes from, which one, its size
REGION_PANEL = "conv_region_panel"  # the region's size, top and left
SETTINGS_PANEL = "conv_settings_panel"  # stride, dilation, padding, bias and the flip
KERNEL_LIMIT = 100.0  # the editor's bounds for one weight
SOURCES = ("Filter bank", "Random", "Cut from the image")
PADDING_KINDS = ("number", "same", "valid")
REGION_SIZES = (5, 32)
DEFAULTS = {
    "conv_region_size": 8, "conv_kernel_source": SOURCES[0], "conv_kernel_name": "sobel x",
    "conv_kernel_size": 3, "conv_random_seed": 0, "conv_stride": 1, "conv_padding_kind": "number",
    "conv_padding": 1, "conv_padding_mode": "replicate", "conv_dilation": 1, "conv_bias": 0.0, "conv_flip": False,
}


class Settings(NamedTuple):
    """Everything but the kernel that decides a convolution's output (hashable: a cache key part)."""

    stride: int
    padding: object  # int, "same" or "valid"
    padding_mode: str
    dilation: int
    bias: float
    flip: bool

    def as_kwargs(self):
        return {"stride": self.stride, "padding": self.padding, "padding_mode": self.padding_mode,
                "dilation": self.dilation, "flip": self.flip}


class Region(NamedTuple):
    """The square of the image the step-by-step view works on, in image pixels."""

    top: int
    left: int
    size: int

    def crop(self, image):
        return image[self.top:self.top + self.size, self.left:self.left + self.size]

    @property
    def centre(self):
        return self.top + self.size // 2, self.left + self.size // 2


# ---------------------------------------------------------------------------------------------------
# Persistent values


def stored_key(key):
    """The session-state key of control ``key``'s persistent value (tests read and set it)."""
    return f"{key}__value"


def init_state():
    """Create every persistent value once per session."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(stored_key(key), value)
    if KERNEL_GRID not in st.session_state:
        st.session_state[KERNEL_GRID] = make_kernel(DEFAULTS["conv_kernel_name"]).tolist()


def value(key):
    """The current persistent value of control ``key``."""
    return st.session_state[stored_key(key)]


# ---------------------------------------------------------------------------------------------------
# Region


def _store(name, chosen):
    """A control panel's change: the new value of persistent ``name``."""
    st.session_state[stored_key(name)] = chosen


def region_controls(image_shape):
    """Size, top and left of the region in one panel; returns the Region (always inside the image)."""
    height, width = image_shape
    largest = int(min(REGION_SIZES[1], height, width))
    smallest = int(min(REGION_SIZES[0], largest))
    st.session_state.setdefault(stored_key("conv_region_top"), max(0, height // 2 - DEFAULTS["conv_region_size"] // 2))
    st.session_state.setdefault(stored_key("conv_region_left"), max(0, width // 2 - DEFAULTS["conv_region_size"] // 2))
    size = _kept_in("conv_region_size", smallest, largest)
    top = _kept_in("conv_region_top", 0, height - size)
    left = _kept_in("conv_region_left", 0, width - size)
    controls = [
        _bounded("conv_region_size", "Region size (pixels)", size, smallest, largest,
                 help_text="5 to 32 pixels square: small enough to read every number.",
                 fixed_text=f"Region size: {largest} pixels, as large as the image allows."),
        _bounded("conv_region_top", "Top row", top, 0, height - size, help_text="Row 0 is the top of the image.",
                 fixed_text="Top row: 0, the region is as tall as the image."),
        _bounded("conv_region_left", "Left column", left, 0, width - size,
                 help_text="Column 0 is the left edge of the image.",
                 fixed_text="Left column: 0, the region is as wide as the image."),
    ]
    control_panel(controls, key=REGION_PANEL, on_change=_store, columns=3)
    return Region(top, left, size)


def _kept_in(name, lowest, highest):
    """The persistent whole number ``name``, moved into lowest..highest (a smaller image, a larger region)."""
    kept = int(np.clip(value(name), lowest, highest))
    st.session_state[stored_key(name)] = kept
    return kept


def _bounded(name, label, current, lowest, highest, *, help_text, fixed_text):
    """A slider over lowest..highest; when the range holds one value (a tiny image), the sentence
    ``fixed_text`` instead, since a slider needs two ends."""
    if lowest >= highest:
        return fixed(name, fixed_text)
    return slider(name, label, lowest, highest, current, help_text=help_text)


def centre_region_on(row, col, image_shape):
    """Move the region so it is centred on image pixel (row, col), staying inside the image."""
    height, width = image_shape
    size = int(value("conv_region_size"))
    st.session_state[stored_key("conv_region_top")] = int(np.clip(row - size // 2, 0, max(height - size, 0)))
    st.session_state[stored_key("conv_region_left")] = int(np.clip(col - size // 2, 0, max(width - size, 0)))


def click_to_region(click):
    """Callback of the image (key "conv_click"): centre the region on the clicked pixel.

    ``click`` is in the image's pixels (views.components.picture), its width and height the image's.
    """
    centre_region_on(int(click["y"]), int(click["x"]), (click["height"], click["width"]))


def click_on_map(kernel_shape, settings, image_shape, click):
    """Callback of the whole image's map (key "conv_whole_map"): centre the region on the pixels the
    clicked value was computed from (its kernel window, clipped to the image)."""
    layer = conv_geometry(kernel_shape, stride=settings.stride, padding=settings.padding, dilation=settings.dilation)
    top, bottom, left, right = input_region([layer], image_shape, int(click["y"]), int(click["x"]))
    centre_region_on((top + bottom) // 2, (left + right) // 2, image_shape)


# ---------------------------------------------------------------------------------------------------
# Kernel


def random_kernel(size, seed):
    """A reproducible random kernel (size, size): weights uniform in [-1, 1], two decimals."""
    weights = np.random.default_rng(int(seed)).uniform(-1.0, 1.0, (size, size))
    return np.round(weights, 2).astype(np.float32)


def cut_kernel(image, centre, size):
    """The template-matching kernel of the (size, size) box of ``image`` centred on ``centre``.

    lessons.matching does the work: the pixels minus their mean, scaled to unit length, so flat areas
    answer 0 and the strongest response is where the image looks like the cut piece. Near the border the
    box is moved inside the image. Returns (kernel, box); a flat box raises ValueError.
    """
    box = Box(centre[0] - (size - 1) // 2, centre[1] - (size - 1) // 2, size, size).clipped(image.shape)
    return zero_mean_kernel(cut_box(image, box)), box


def _set_kernel(weights):
    st.session_state[KERNEL_GRID] = np.asarray(weights, dtype=np.float32).tolist()


def _kernel_from_source():
    """Callback: rebuild the kernel from the source controls (a cut waits for the image, see body)."""
    source = value("conv_kernel_source")
    size = int(value("conv_kernel_size"))
    if source == "Filter bank":
        name = value("conv_kernel_name")
        if KERNELS[name].resizable:
            _set_kernel(make_kernel(name, size))
        else:
            weights = make_kernel(name)
            st.session_state[stored_key("conv_kernel_size")] = int(weights.shape[0])  # show its one size
            _set_kernel(weights)
    elif source == "Random":
        _set_kernel(random_kernel(size, value("conv_random_seed")))
    else:
        st.session_state["conv__cut_pending"] = True


kernel_from_source = _kernel_from_source  # also what a lesson link without kernel values asks for


def _new_random():
    st.session_state[stored_key("conv_random_seed")] = int(value("conv_random_seed")) + 1
    _kernel_from_source()


def _apply_edit():
    """Callback of the kernel grid: write the typed or pasted weights into the kernel (cut to the grid's
    edges and to +-KERNEL_LIMIT)."""
    edit = edit_of(st.session_state.get(KERNEL_EDITOR))
    if edit is None:
        return
    row, col, weights = edit
    grid = np.array(st.session_state[KERNEL_GRID], dtype=np.float64)
    if not (0 <= row < grid.shape[0] and 0 <= col < grid.shape[1]):
        return
    block = weights[:grid.shape[0] - row, :grid.shape[1] - col]
    grid[row:row + block.shape[0], col:col + block.shape[1]] = np.clip(block, -KERNEL_LIMIT, KERNEL_LIMIT)
    st.session_state[KERNEL_GRID] = grid.tolist()


def current_kernel():
    """The kernel grid as float32 (kh, kw); a malformed grid (e.g. set by hand) falls back to the default.

    Returns
    -------
    (ndarray, str or None)
        The kernel and, if the stored grid was refused, the reason.
    """
    try:
        grid = np.asarray(st.session_state[KERNEL_GRID], dtype=np.float32)
        if grid.ndim != 2 or not (1 <= grid.shape[0] <= MAX_KERNEL_SIZE and 1 <= grid.shape[1] <= MAX_KERNEL_SIZE):
            raise ValueError(f"the kernel must be a grid from 1x1 to {MAX_KERNEL_SIZE}x{MAX_KERNEL_SIZE}, "
                             f"got shape {grid.shape}")
        if not np.all(np.isfinite(grid)):
            raise ValueError("the kernel holds a missing or infinite value")
        return np.clip(grid, -KERNEL_LIMIT, KERNEL_LIMIT), None
    except (TypeError, ValueError) as error:
        fallback = make_kernel(DEFAULTS["conv_kernel_name"])
        _set_kernel(fallback)
        return fallback, f"The kernel grid was not usable ({error}); the default kernel is back."


def take_pending_cut(image, region):
    """Do a cut requested by a callback, now that the image and the region are known."""
    if st.session_state.pop("conv__cut_pending", False):
        try:
            weights, box = cut_kernel(image, region.centre, int(value("conv_kernel_size")))
        except ValueError as error:
            st.warning(f"No kernel was cut: {error}.")
            return
        _set_kernel(weights)
        st.session_state["conv__cut_box"] = (box.row, box.col, box.height)


def kernel_controls():
    """The kernel's source (bank / random / cut) and what each source needs, in one panel."""
    source, name = value("conv_kernel_source"), value("conv_kernel_name")
    controls = [buttons("conv_kernel_source", "Where the kernel comes from", list(SOURCES), source, wide=True)]
    if source == "Filter bank":
        controls += [menu("conv_kernel_name", "Kernel", list(KERNELS), name, wide=True),
                     fixed("conv_kernel_about", KERNELS[name].description, wide=True)]
    controls.append(slider("conv_kernel_size", "Kernel size", 1, MAX_KERNEL_SIZE, value("conv_kernel_size"),
                           disabled=source == "Filter bank" and not KERNELS[name].resizable, wide=True,
                           help_text="Even sizes too: the radiology blog's figure uses a 4 x 4 kernel. "
                                     "Fixed kernels (Sobel, Laplacian, ...) have one size."))
    if source == "Random":
        controls += [number("conv_random_seed", "Random seed", 0, 10**6, int(value("conv_random_seed")),
                            help_text="The same seed always gives the same kernel."),
                     button("conv_random_new", "New random kernel")]
    elif source == "Cut from the image":
        controls += [button("conv_cut", "Cut a kernel from the centre of the region", wide=True),
                     fixed("conv_cut_about", "The pixels under the green box, minus their mean (scaled to length "
                           "1): the map is brightest where the image looks like that piece, which is how a kernel "
                           "finds an object wherever it is.", wide=True)]
    control_panel(controls, key=KERNEL_PANEL, on_change=_kernel_change, columns=2)


def _kernel_change(name, chosen):
    """A change in the kernel's panel: a new source, bank kernel, size or seed rebuilds the kernel."""
    if name == "conv_random_new":
        _new_random()
    elif name == "conv_cut":
        st.session_state["conv__cut_pending"] = True  # done once the image and the region are known
    else:
        _store(name, chosen)
        _kernel_from_source()


def kernel_editor(kernel, *, large=False):
    """The editable grid of weights; returns nothing (an edit goes to the kernel grid through a callback)."""
    kernel_grid(kernel.astype(np.float64).tolist(), key=KERNEL_EDITOR, limit=KERNEL_LIMIT, on_edit=_apply_edit,
                large=large)


def settings_controls():
    """Stride, padding, padding mode, dilation, bias and the flip switch in one panel; returns Settings."""
    kind = value("conv_padding_kind")
    controls = [
        buttons("conv_stride", "Stride", [1, 2, 3, 4], value("conv_stride"),
                help_text="How many pixels the kernel moves between two positions."),
        buttons("conv_dilation", "Dilation", [1, 2, 3], value("conv_dilation"),
                help_text="Spread the kernel's taps apart: a wider view with the same weights."),
        buttons("conv_padding_kind", "Padding", list(PADDING_KINDS), kind,
                help_text='"same" keeps the size (stride 1 only); "valid" adds none.'),
        number("conv_padding", "Padding on each side", 0, 4, int(value("conv_padding")), disabled=kind != "number"),
        menu("conv_padding_mode", "Padding values", list(PADDING_MODES), value("conv_padding_mode"),
             help_text="zeros: a frame of 0; reflect: the image mirrored; replicate: edge pixels repeated."),
        number("conv_bias", "Bias", -10.0, 10.0, float(value("conv_bias")), step=0.1, decimals=2,
               help_text="Added to every output value."),
        switch("conv_flip", "True convolution (flip the kernel)", value("conv_flip"), wide=True),
    ]
    control_panel(controls, key=SETTINGS_PANEL, on_change=_store, columns=2)
    padding = int(value("conv_padding")) if kind == "number" else kind
    return Settings(int(value("conv_stride")), padding, str(value("conv_padding_mode")), int(value("conv_dilation")),
                    float(value("conv_bias")), bool(value("conv_flip")))


# ---------------------------------------------------------------------------------------------------
# The output-size formula


def output_size_equation(n, k, before, after, stride, dilation):
    """The output-size formula with the numbers filled in, e.g. "floor((64 + 2*1 - 3) / 2) + 1 = 32".

    The result comes from ``kernels.output_size``; a ValueError from it (kernel larger than the padded
    input) is passed on.
    """
    result = output_size(n, k, stride=stride, padding=(before, after), dilation=dilation)
    padding = f"2*{before}" if before == after else f"{before} + {after}"
    extent = f"{k}" if dilation == 1 else f"{dilation}*({k} - 1) - 1"
    return f"floor(({n} + {padding} - {extent}) / {stride}) + 1 = {result}"
