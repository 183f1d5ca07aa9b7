"""Widgets and session state of the convolution lesson: the region, the kernel and the settings.

Every choice is kept under a session-state key no widget owns ("conv__..."), copied into its widget's
key before the widget is drawn, so it survives reruns and a visit to another page. The kernel itself
lives in ``st.session_state[KERNEL_GRID]`` (a list of rows): the kernel grid, the filter bank, the random
and the cut-from-the-image buttons all write there, and so can a test.
"""

from typing import NamedTuple

import numpy as np
import streamlit as st

from kernels import KERNELS, MAX_KERNEL_SIZE, PADDING_MODES, make_kernel, output_size
from lessons.matching import Box, cut_box, zero_mean_kernel
from views.caching import computed, image_key  # noqa: F401  the lesson's names for the one cache rule
from views.components.kernel_grid import edit_of, kernel_grid

KERNEL_GRID = "conv_kernel_grid"  # the kernel in use: list of rows of floats (tests may set it)
KERNEL_EDITOR = "conv_kernel_editor"  # the grid of number fields that edits it
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
# Persistent widgets


def stored_key(key):
    """The session-state key of widget ``key``'s persistent value (tests read and set it)."""
    return f"{key}__value"


def init_state():
    """Create every persistent value once per session."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(stored_key(key), value)
    if KERNEL_GRID not in st.session_state:
        st.session_state[KERNEL_GRID] = make_kernel(DEFAULTS["conv_kernel_name"]).tolist()


def value(key):
    """The current persistent value behind widget ``key``."""
    return st.session_state[stored_key(key)]


def _prepare(key, bounds=None):
    """Copy the persistent value into the widget's key before the widget exists (allowed).

    ``bounds`` (lowest, highest) clamp it to a slider's current range, so a smaller image never makes the
    slider refuse its value. The copy is made only when needed (the widget's state was dropped by a
    visit to another page, a click or a link moved the value, or the slider's range changed, which
    makes it a new widget): a value written on every run makes Streamlit treat every widget as newly set.
    """
    current = st.session_state[stored_key(key)]
    if bounds is not None:
        current = int(np.clip(current, *bounds))
        st.session_state[stored_key(key)] = current
    bounds_key = f"conv__bounds_{key}"
    if st.session_state.get(key, None) != current or st.session_state.get(bounds_key) != bounds:
        st.session_state[key] = current
        st.session_state[bounds_key] = bounds


def _copy(key, then=None):
    st.session_state[stored_key(key)] = st.session_state[key]
    if then is not None:
        then()


def persistent(widget, label, key, *args, bounds=None, then=None, **kwargs):
    """Draw ``widget`` bound to a persistent value; ``then`` runs after a change (in the callback)."""
    _prepare(key, bounds)
    return widget(label, *args, key=key, on_change=_copy, args=(key, then), **kwargs)


# ---------------------------------------------------------------------------------------------------
# Region


def region_sliders(image_shape):
    """Size, top and left sliders of the region; returns the Region (always inside the image)."""
    height, width = image_shape
    largest = int(min(REGION_SIZES[1], height, width))
    smallest = int(min(REGION_SIZES[0], largest))
    st.session_state.setdefault(stored_key("conv_region_top"), max(0, height // 2 - DEFAULTS["conv_region_size"] // 2))
    st.session_state.setdefault(stored_key("conv_region_left"), max(0, width // 2 - DEFAULTS["conv_region_size"] // 2))
    columns = st.columns(3)
    with columns[0]:
        size = _bounded_slider("Region size (pixels)", "conv_region_size", smallest, largest,
                               help_text="5 to 32 pixels square: small enough to read every number.",
                               fixed=f"Region size: {largest} pixels, as large as the image allows.")
    with columns[1]:
        top = _bounded_slider("Top row", "conv_region_top", 0, height - size,
                              help_text="Row 0 is the top of the image.",
                              fixed="Top row: 0, the region is as tall as the image.")
    with columns[2]:
        left = _bounded_slider("Left column", "conv_region_left", 0, width - size,
                               help_text="Column 0 is the left edge of the image.",
                               fixed="Left column: 0, the region is as wide as the image.")
    return Region(int(top), int(left), int(size))


def _bounded_slider(label, key, lowest, highest, *, help_text, fixed):
    """A persistent slider over lowest..highest; when the range holds one value (a tiny image), that value
    with the sentence ``fixed`` instead, since a slider needs two ends."""
    if lowest >= highest:
        st.session_state[stored_key(key)] = int(lowest)
        st.caption(fixed)
        return int(lowest)
    return persistent(st.slider, label, key, lowest, highest, bounds=(lowest, highest), help=help_text)


def centre_region_on(row, col, image_shape):
    """Move the region so it is centred on image pixel (row, col), staying inside the image."""
    height, width = image_shape
    size = int(value("conv_region_size"))
    st.session_state[stored_key("conv_region_top")] = int(np.clip(row - size // 2, 0, max(height - size, 0)))
    st.session_state[stored_key("conv_region_left")] = int(np.clip(col - size // 2, 0, max(width - size, 0)))


def click_to_region():
    """Callback of the clickable image (key "conv_click"): centre the region on the clicked pixel.

    The click arrives in displayed pixels with the displayed size; the image's own size is left in
    ``st.session_state["conv__image_shape"]`` by the page (the component passes no callback arguments).
    """
    click = st.session_state.get("conv_click")
    image_shape = st.session_state.get("conv__image_shape")
    if not click or not image_shape or not click.get("width") or not click.get("height"):
        return
    height, width = image_shape
    row = int(click["y"] * height / click["height"])
    col = int(click["x"] * width / click["width"])
    centre_region_on(row, col, image_shape)


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
    """The kernel's source widgets (bank / random / cut) and their one-line explanation."""
    source = persistent(st.radio, "Where the kernel comes from", "conv_kernel_source", SOURCES, horizontal=True,
                        then=_kernel_from_source)
    name = value("conv_kernel_name")
    fixed = source == "Filter bank" and not KERNELS[name].resizable
    if source == "Filter bank":
        persistent(st.selectbox, "Kernel", "conv_kernel_name", list(KERNELS), then=_kernel_from_source)
        st.caption(KERNELS[value("conv_kernel_name")].description)
        fixed = not KERNELS[value("conv_kernel_name")].resizable
    persistent(st.slider, "Kernel size", "conv_kernel_size", 1, MAX_KERNEL_SIZE, then=_kernel_from_source,
               disabled=fixed, help="Even sizes too: the radiology blog's figure uses a 4 x 4 kernel. "
                                    "Fixed kernels (Sobel, Laplacian, ...) have one size.")
    if source == "Random":
        seed_column, button_column = st.columns(2, vertical_alignment="bottom")
        with seed_column:
            persistent(st.number_input, "Random seed", "conv_random_seed", min_value=0, max_value=10**6, step=1,
                       then=_kernel_from_source, help="The same seed always gives the same kernel.")
        with button_column:
            st.button("New random kernel", key="conv_random_new", on_click=_new_random)
    elif source == "Cut from the image":
        st.button("Cut a kernel from the centre of the region", key="conv_cut",
                  on_click=st.session_state.__setitem__, args=("conv__cut_pending", True))
        st.caption("The pixels under the green box, minus their mean (scaled to length 1): the map is "
                   "brightest where the image looks like that piece, which is how a kernel finds an object "
                   "wherever it is.")


def kernel_editor(kernel, *, large=False):
    """The editable grid of weights; returns nothing (an edit goes to the kernel grid through a callback)."""
    kernel_grid(kernel.astype(np.float64).tolist(), key=KERNEL_EDITOR, limit=KERNEL_LIMIT, on_edit=_apply_edit,
                large=large)


def settings_controls():
    """Stride, padding, padding mode, dilation, bias and the flip switch; returns Settings."""
    first, second = st.columns(2)
    with first:
        stride = persistent(st.select_slider, "Stride", "conv_stride", options=[1, 2, 3, 4],
                            help="How many pixels the kernel moves between two positions.")
        kind = persistent(st.radio, "Padding", "conv_padding_kind", PADDING_KINDS, horizontal=True,
                          help='"same" keeps the size (stride 1 only); "valid" adds none.')
        amount = persistent(st.number_input, "Padding on each side", "conv_padding", min_value=0, max_value=4,
                            step=1, disabled=kind != "number")
        mode = persistent(st.selectbox, "Padding values", "conv_padding_mode", list(PADDING_MODES),
                          help="zeros: a frame of 0; reflect: the image mirrored; replicate: edge pixels repeated.")
    with second:
        dilation = persistent(st.select_slider, "Dilation", "conv_dilation", options=[1, 2, 3],
                              help="Spread the kernel's taps apart: a wider view with the same weights.")
        bias = persistent(st.number_input, "Bias", "conv_bias", min_value=-10.0, max_value=10.0, step=0.1,
                          format="%.2f", help="Added to every output value.")
    # Under both columns: in one of them the label would be cut at 1280 pixels.
    flip = persistent(st.toggle, "True convolution (flip the kernel)", "conv_flip")
    padding = int(amount) if kind == "number" else kind
    return Settings(int(stride), padding, str(mode), int(dilation), float(bias), bool(flip))


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
