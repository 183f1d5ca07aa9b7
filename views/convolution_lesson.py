"""The sections of lesson 1, "A kernel scans the image": image and region, kernel, steps, activation, pooling, bank.

Every number shown comes from kernels/ (conv2d, the step traces, the activations, pooling and the
output-size formula); this module only chooses, lays out and explains. views/convolution.py runs
``main()``; keeping the code here means it is compiled once per process, not on every rerun.
Widgets and session state are in views/convolution_controls.py, drawing in viz/steps.py; the step-by-step
players run in the browser (views/components/step_player/).
"""

import inspect
from functools import partial

import numpy as np
import streamlit as st

from kernels import (KERNELS, MAX_KERNEL_SIZE, PADDING_MODES, conv2d, conv2d_trace, make_kernel, max_pool2d,
                     output_size, pool2d_trace, reference, relu, resolve_padding)
from lessons import activations
from lessons.exports import conv_steps, pool_steps
from lessons.links import Field, boolean, choice, grid, integer, number, record, whole_numbers
from views import convolution_controls as controls
from views import links
from views.caching import session_memo
from views.exports import png_download, step_export
from views.components.picture import picture
from views.components.step_player import conv_payload, pool_payload, step_player, view_options
from views.notices import show_teaching_notice
from views.presenter import colour_scheme, explain, explain_caption, is_presenting
from views.scan_picker import choose_image
from viz import steps
from viz.images import COLOUR_SCHEMES, grey_rgb, jpeg_bytes, magnitude_percentile

FRAME_SIZE = 540  # long side of an activation frame: two fit side by side at full size on a 1920-pixel projector
ACTIVATIONS = tuple(activations.ACTIVATIONS)
SLOPE_DEFAULT = 0.1  # leaky ReLU's
POOL_DEFAULTS = {"pool_mode": "max", "pool_size": 2, "pool_stride": 2, "pool_padding": 0}
BANK_STAGES = ("feature maps", "after ReLU", "after ReLU and 2 x 2 max pooling")
BANK_DEFAULT = ("sobel x", "sobel y", "laplacian", "laplacian of gaussian", "gaussian blur", "sharpen",
                "emboss", "outline")
SECTIONS = ("3. Step by step: multiply and add", "4. Activation: ReLU", "5. Pooling: a smaller map",
            "6. Many kernels at once")
SECTION_KEY = "conv_section"
MAP_COLOUR_PERCENTILE = 99.5  # whole-image maps: a few extreme pixels must not wash out the rest


# ---------------------------------------------------------------------------------------------------
# Computations on the whole image, remembered by controls.computed (shared cache for samples only)


def _kernel_key(kernel):
    return tuple(map(tuple, kernel.tolist()))


def _whole_map(image, parameters):
    """The whole image's feature map, its colours and where it is largest."""
    kernel_rows, settings = parameters
    feature_map = conv2d(image, np.asarray(kernel_rows, dtype=np.float32), settings.bias, **settings.as_kwargs())
    peak = np.unravel_index(int(np.argmax(feature_map)), feature_map.shape)
    return {"map": feature_map, "rgb": steps.colour_cells(feature_map, "diverging", limit=_colour_limit(feature_map)),
            "peak": (int(peak[0]), int(peak[1])), "peak_value": float(feature_map[peak])}


def _whole_map_summary(image, parameters):
    """What the lesson shows of the whole map: its picture (JPEG bytes), its shape, where it peaks and the peak.

    Kept apart from :func:`_whole_map`: a class choosing the same preset reads ~100 kB of JPEG from the
    shared cache instead of each student unpickling the map and its colours (~2.7 MB) and encoding them again.
    """
    whole = _whole_map(image, parameters)
    return {"encoded": jpeg_bytes(steps.marked_picture(whole["rgb"])), "shape": whole["map"].shape,
            "peak": whole["peak"], "peak_value": whole["peak_value"]}


def _region_trace(image, parameters):
    """The region's convolution step by step ("trace") and the step player's data for it ("player").

    A sample's are shared: a class opening the lesson starts on the same region, and students who then
    pick the same preset there read it instead of tracing it again.
    """
    region, kernel_rows, settings = parameters
    trace = conv2d_trace(region.crop(image), np.asarray(kernel_rows, dtype=np.float32), settings.bias,
                         **settings.as_kwargs())
    return {"trace": trace, "player": conv_payload(trace, titles={}, memory="conv")}


def _colour_limit(feature_map):
    """The magnitude drawn at full colour: a high percentile, so a few extreme pixels do not wash out the rest."""
    return magnitude_percentile(feature_map, MAP_COLOUR_PERCENTILE) or 1.0


def _whole_activation(image, parameters):
    """The whole image's map before and after the activation, side by side, as JPEG bytes."""
    return jpeg_bytes(_whole_activation_picture(image, parameters), quality=92)


def _whole_activation_picture(image, parameters):
    """The picture of :func:`_whole_activation`, RGB uint8 (also its PNG download)."""
    kernel_rows, settings, name, slope = parameters
    before = conv2d(image, np.asarray(kernel_rows, dtype=np.float32), settings.bias, **settings.as_kwargs())
    after = activations.activate(before, name, slope)
    signed = name in ("ReLU", "leaky ReLU")
    # ReLU-like: one scale, so the kept values look the same before and after; squashing ones: their own.
    limits = [_colour_limit(before)] * 2 if signed else [_colour_limit(before), _colour_limit(after)]
    return steps.feature_map_grid([before, after], ["before", f"after {name}"], columns=2, tile=420,
                                  limit=limits, marked=[None, before < 0 if signed else None])


def _activation_grids(before, name, slope):
    """The region's map after the activation, and both maps as HTML grids (numbers as text)."""
    after = activations.activate(before, name, slope)
    marked = before < 0 if name in ("ReLU", "leaky ReLU") else None
    limit = float(np.max(np.abs(before))) or 1.0
    before_grid = steps.value_grid_html(before, limit=limit,
                                        caption=f"The region's output before ({before.shape[0]} x {before.shape[1]})")
    after_grid = steps.value_grid_html(after, colour_map="heat" if name == "sigmoid" else "diverging",
                                       limit=1.0 if name == "tanh" else limit, marked=marked,
                                       caption=f"After {name}" + (": crossed cells were negative."
                                                                  if marked is not None else "."))
    return after, before_grid, after_grid


def _activation_pictures(before, name, slope):
    """The region's map after the activation, and both maps drawn as RGB uint8 (also their PNG downloads)."""
    after = activations.activate(before, name, slope)
    marked = before < 0 if name in ("ReLU", "leaky ReLU") else None
    limit = float(np.max(np.abs(before))) or 1.0
    cell = steps.fit_cell(*before.shape, FRAME_SIZE)
    before_frame = steps.value_grid_frame(before, cell=cell, limit=limit)
    after_frame = steps.value_grid_frame(after, cell=cell, colour_map="heat" if name == "sigmoid" else "diverging",
                                         limit=1.0 if name == "tanh" else limit, marked=marked)
    return after, before_frame, after_frame


def _bank_grid(image, parameters):
    """Several bank kernels over the whole image, as one grid picture (JPEG bytes)."""
    return jpeg_bytes(_bank_picture(image, parameters), quality=92)


def _bank_picture(image, parameters):
    """The picture of :func:`_bank_grid`, RGB uint8 (also its PNG download)."""
    names, stage, shared = parameters
    maps = []
    for name in names:
        feature_map = conv2d(image, KERNELS[name].weights, 0.0, padding="same", padding_mode="replicate")
        if stage != BANK_STAGES[0]:
            feature_map = relu(feature_map)
        if stage == BANK_STAGES[2]:
            feature_map = max_pool2d(feature_map, 2)
        maps.append(feature_map)
    limits = [_colour_limit(feature_map) for feature_map in maps]
    limit = max(limits) if shared else limits
    # No-break spaces keep a shape on one line when a long name wraps its title.
    titles = [f"{name} ({feature_map.shape[0]}\u00a0x\u00a0{feature_map.shape[1]})"
              for name, feature_map in zip(names, maps)]
    return steps.feature_map_grid(maps, titles, columns=4, tile=260, limit=limit)


def _default_centre(image, parameters):
    """Where the default region goes: a clear edge (:func:`_edge_centre`)."""
    return _edge_centre(image)


def _shown_picture(picture_data, parameters):
    """The image as the lesson shows it, JPEG bytes: its own colours (RGB), or the windowed grey image in grey."""
    rgb = picture_data if picture_data.ndim == 3 else grey_rgb(picture_data)
    return jpeg_bytes(steps.marked_picture(rgb), quality=88)


def _edge_centre(image, block=8):
    """Centre of the block x block square, away from the outer 15 % (film borders, labels), where Sobel x
    answers most strongly with both signs: a thin line or a narrow gap. The default region goes there, so
    the first steps show large values and ReLU has negative ones to clear."""
    height, width = image.shape
    if min(height, width) < 2 * block:
        return height // 2, width // 2
    response = conv2d(image, KERNELS["sobel x"].weights, 0.0, padding="same", padding_mode="replicate")
    stride = block // 2
    strongest_rise = max_pool2d(response, block, stride=stride)
    strongest_fall = max_pool2d(-response, block, stride=stride)
    score = np.minimum(strongest_rise, strongest_fall)
    rows, cols = score.shape
    top, left = int(rows * 0.15), int(cols * 0.15)
    inner = score[top:rows - top, left:cols - left]
    row, col = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int((row + top) * stride + block // 2), int((col + left) * stride + block // 2)


# ---------------------------------------------------------------------------------------------------
# The step players: the trace is sent once per setting; stepping happens in the browser


PLAYER_KEYS = ("Once you have clicked a player, the keyboard works too: right and left arrows (or Page Down and "
               "Page Up, as a presentation clicker sends) step, the space bar plays and pauses.")


def _conv_titles(trace):
    """The conv player's captions in the chosen colour scheme's words (short ones in presenter view)."""
    window, _, padding = (word.capitalize() for word in COLOUR_SCHEMES[colour_scheme()].names)
    out_rows, out_cols = trace.output.shape
    if is_presenting():
        return {"input": f"The region, padded. {window}: the kernel's window",
                "output": f"The output ({out_rows} x {out_cols})", "patch": "window", "kernel": "kernel",
                "products": "products"}
    return {"input": f"The region; {padding.lower()} hatching is padding. {window}: the kernel's window.",
            "output": f"The output ({out_rows} x {out_cols}) filling in, row by row. {window}: the value just "
                      "computed.",
            "patch": "input patch", "kernel": "kernel", "products": "products"}


def _pool_titles(trace):
    """The pooling player's captions, like :func:`_conv_titles`."""
    window, kept, _ = (word.capitalize() for word in COLOUR_SCHEMES[colour_scheme()].names)
    out_rows, out_cols = trace.output.shape
    if is_presenting():  # short: the grid is sized to fill the screen, the caption must fit above it
        kept_ring = f", {kept.lower()} ring: kept" if trace.mode == "max" else ""
        return {"input": f"Activated map. {window}: the window{kept_ring}",
                "output": f"The pooled map ({out_rows} x {out_cols})", "patch": "window"}
    keeps = f"; {kept.lower()} ring: the value it keeps" if trace.mode == "max" else ""
    return {"input": f"The activated map. {window}: the pooling window{keeps}.",
            "output": f"The pooled map ({out_rows} x {out_cols}) filling in.",
            "patch": "window"}


def _player_view(name):
    """How the player is shown: presenter layout, colour scheme, the step a link asks for."""
    # The pooling player sits in its tab under the page's top too, but its map needs a whole screen's
    # height to keep its digits large: the lecturer scrolls it to the top.
    return view_options(presenting=is_presenting(), scheme=colour_scheme(), whole_screen=name == "pool",
                        initial_step=st.session_state.get(f"conv__initial_{name}_step", 0), link_button=True)


def _link_step(name, result, count):
    """Remember the step the person asked to link ("Link this step"): it goes into the lesson's link.

    A linked step past the trace's last (a link from a larger region) becomes the last.
    """
    if result is not None and result.get("link_step") is not None:
        step = int(result["link_step"])
        st.session_state[f"conv__initial_{name}_step"] = step
        st.session_state[f"conv__link_{name}_step"] = step + 1
    linked = st.session_state.get(f"conv__link_{name}_step")
    if linked is not None and linked > count:
        st.session_state[f"conv__link_{name}_step"] = count


def _conv_player(trace, payload, key):
    """The convolution's step player, sent ``payload`` (the trace's data); ``key`` names the trace's setting."""
    result = step_player({**payload, "titles": _conv_titles(trace)}, key="conv_player", view=_player_view("conv"),
                         on_link_step=_nothing)
    _link_step("conv", result, trace.num_steps)
    explain_caption(PLAYER_KEYS)
    _code_that_computed(trace)
    kernel_rows, kernel_cols = trace.kernel.shape
    title = (f"Convolution, {kernel_rows} x {kernel_cols} kernel, stride {trace.stride[0]}"
             + (f", dilation {trace.dilation[0]}" if trace.dilation[0] > 1 else ""))
    step_export("convolution", lambda: conv_steps(trace, title=title), trace.num_steps, key="conv_export",
                setting=key, scheme=colour_scheme())


_PIXEL_SOURCE = inspect.getsource(reference.conv2d_pixel)  # read once per process


def _code_that_computed(trace):
    """The readable definition the player's numbers come from (kernels.reference), and which call made step i."""
    # Drawn only while open, like the export panels: closed, it costs a student's click one element.
    panel = st.expander("The code that computed this", key="conv_code_open", on_change="rerun")
    with panel:
        if not panel.open:
            return
        stride, dilation = tuple(trace.stride), tuple(trace.dilation)
        st.markdown(f"Step *i* of the player is `conv2d_pixel(padded, kernel, {trace.bias:.4g}, out_row, out_col, "
                    f"{stride}, {dilation})` with `out_row, out_col = divmod(i - 1, {trace.output.shape[1]})`: "
                    "its products, their sum and the value are this function's numbers.")
        st.code(_PIXEL_SOURCE, language="python")


def _pool_player(trace, key):
    """The pooling's step player, like :func:`_conv_player`."""
    payload = _session_memo("pool_player", key, lambda: pool_payload(trace, titles={}, memory="pool"))
    result = step_player({**payload, "titles": _pool_titles(trace)}, key="pool_player", view=_player_view("pool"),
                         on_link_step=_nothing)
    _link_step("pool", result, trace.num_steps)
    step_export("pooling", lambda: pool_steps(trace), trace.num_steps, key="pool_export", setting=key,
                scheme=colour_scheme())


def _nothing():
    # The step arrives in the player's result during the rerun; the callback only has to exist.
    pass


def _session_memo(name, key, compute):
    """``compute()`` remembered for one ``key`` per ``name`` in this session (small per-region traces)."""
    return session_memo("convolution", name, key, compute)


# ---------------------------------------------------------------------------------------------------
# Sections


def _image_section(chosen, region, settings, kernel, image_column, map_column):
    """The clickable image with the region, and the whole image's feature map; returns the map's summary
    (its "shape", "peak" and "peak_value"), or None when the kernel does not fit."""
    height, width = chosen.image.shape
    boxes = [((region.top, region.left, region.size, region.size), steps.WINDOW_COLOUR)]
    cut_box = st.session_state.get("conv__cut_box")
    if controls.value("conv_kernel_source") == "Cut from the image" and cut_box:
        top, left, size = cut_box
        boxes.append(((top, left, size, size), steps.CHOSEN_COLOUR))
    image_key = controls.image_key(chosen)

    # Encoded once per image (and, for a sample, once per server): the boxes are drawn by the browser, so
    # moving them sends only numbers.
    encoded = _session_memo("picture", image_key, lambda: controls.computed(_shown_picture, chosen, (),
                                                                            data=chosen.rgb))
    with image_column:
        st.markdown(f"**{chosen.name}**, {height} x {width} pixels. Click to move the orange region.")
        picture(encoded, key="conv_click", shape=(height, width), boxes=boxes, on_click=controls.click_to_region,
                label=f"{chosen.name} with the region outlined")
    with map_column:
        parameters = (_kernel_key(kernel), settings)

        try:
            # Once per kernel and settings: a region change reads only this summary.
            summary = _session_memo("whole map", (image_key, parameters),
                                    lambda: controls.computed(_whole_map_summary, chosen, parameters))
        except ValueError as error:
            st.error(f"The kernel does not fit this image with these settings: {error}")
            return None
        (map_height, map_width), peak = summary["shape"], summary["peak"]
        stride = settings.stride
        region_on_map = (region.top / stride, region.left / stride, region.size / stride, region.size / stride)
        st.markdown(f"**Feature map of the whole image**, {map_height} x {map_width}: red positive, "
                    "blue negative, white zero.")
        picture(summary["encoded"], key="conv_whole_map", shape=(map_height, map_width),
                boxes=[(region_on_map, steps.WINDOW_COLOUR)], ring=peak, label="The feature map of the whole image",
                on_click=partial(controls.click_on_map, kernel.shape, settings, (height, width)))
        png_download(lambda: steps.marked_picture(controls.computed(_whole_map, chosen, parameters)["rgb"], peak=peak,
                                                  boxes=[(region_on_map, steps.WINDOW_COLOUR)]),
                     "feature_map_whole_image.png", key="conv_map_png")
        st.caption(f"Largest value {summary['peak_value']:.4f} at row {peak[0]}, column {peak[1]} "
                   "(green ring): where the image looks most like the kernel. Click the map to move the region to "
                   "where a value comes from. Colours reach full strength at the "
                   f"{MAP_COLOUR_PERCENTILE:g}th percentile of the magnitudes.")
    return summary


def _size_section(image_shape, region, kernel, settings):
    """The output-size formula with this image's and this region's numbers."""
    lines = []
    for label, (rows, cols) in (("Whole image", image_shape), ("Region", (region.size, region.size))):
        top, bottom, left, right = resolve_padding((rows, cols), kernel.shape, settings.padding, settings.dilation)
        row_text = controls.output_size_equation(rows, kernel.shape[0], top, bottom, settings.stride,
                                                 settings.dilation)
        if (rows, kernel.shape[0], top, bottom) == (cols, kernel.shape[1], left, right):
            lines.append(f"{label}: `{row_text}` on both axes")
        else:
            col_text = controls.output_size_equation(cols, kernel.shape[1], left, right, settings.stride,
                                                     settings.dilation)
            lines.append(f"{label}: rows `{row_text}`; columns `{col_text}`")
    st.markdown("**Output size** = floor((input + padding before + padding after - dilation*(kernel - 1) - 1) "
                "/ stride) + 1, which is floor((n + 2p - k) / s) + 1 without dilation.  \n" + "  \n".join(lines))


def _kernel_section():
    """The kernel's source, the editable grid and the settings; returns (kernel, settings)."""
    kernel_column, settings_column = st.columns(2, gap="large")
    with kernel_column:
        controls.kernel_controls()
        kernel, problem = controls.current_kernel()
        if problem:
            st.warning(problem)
    with settings_column:
        settings = controls.settings_controls()
        explain_caption("CNN libraries slide the kernel as it is (cross-correlation). Textbook convolution first "
                        "turns it half a turn, which flips the sign of an edge kernel's answer and leaves a "
                        "symmetric blur unchanged. A network learns its kernels either way, so it does not care.\n\n"
                        "Zero padding is the usual choice in CNNs, but around a bright image it invents an edge "
                        "at the border; reflect and replicate padding continue the image instead.")
    # Up to 5 x 5 the grid fits under its controls; wider ones need the page's width (a 9 x 9 grid at 1280
    # pixels would scroll sideways in half of it).
    with kernel_column if kernel.shape[1] <= 5 else st.container():
        st.markdown(f"**The {kernel.shape[0]} x {kernel.shape[1]} kernel**: type a weight, then Enter or Tab.")
        controls.kernel_editor(kernel, large=is_presenting())
    return kernel, settings


def main():
    """Draw the whole lesson."""
    st.title("A kernel scans the image")
    show_teaching_notice()
    link_values = links.opened(LINK_FIELDS)
    chosen = choose_image()
    controls.init_state()
    _apply_link(link_values)
    _lesson(chosen)


# A fragment: a click in the lesson reruns the lesson only, not the sidebar's scan picker and the page's
# frame around it (a tenth of a full run, on the one server a class shares). A new scan or window in the
# sidebar runs the whole page, which calls the fragment again with the new image.
@st.fragment
def _lesson(chosen):
    """Everything under the title: the image and region, the kernel, the sections' tabs, the link."""
    # Presenting, the tabs with the step player come first, under the title: filled in once the trace is known.
    player_slot = st.container() if is_presenting() else None
    link_slot = st.container()
    explain(
        "A convolution layer slides a small grid of weights, the **kernel**, over the image. At every position "
        "it multiplies each pixel under the kernel by the weight lying on it and adds up the products, plus a "
        "**bias**: that single number becomes one pixel of a new image, the **feature map**. Articles on "
        "radiology AI draw this as a 4 x 4 grid hopping across the scan one step at a time; here you watch it "
        "happen with the real numbers, on a real scan.")

    st.header("1. The image and the region", divider="gray")
    explain("Numbers are readable only for a small piece of the image, so the step-by-step part works on "
            "a region: click the image or use the sliders. Beside it, the same kernel over the whole image.")
    identity = chosen.cache_key.split("|")[0] if chosen.cache_key else f"upload:{chosen.name}:{chosen.image.shape}"
    if st.session_state.get("conv__image_identity") != identity:
        st.session_state["conv__image_identity"] = identity
        if not st.session_state.pop("conv__region_from_link", False):  # else a lesson link placed the region
            centre = controls.computed(_default_centre, chosen, ())
            controls.centre_region_on(*centre, chosen.image.shape)
    region = controls.region_controls(chosen.image.shape)
    controls.take_pending_cut(chosen.image, region)
    image_column, map_column = st.columns(2, gap="medium")

    st.header("2. The kernel and how it moves", divider="gray")
    kernel, settings = _kernel_section()
    whole = _image_section(chosen, region, settings, kernel, image_column, map_column)
    try:
        _size_section(chosen.image.shape, region, kernel, settings)
        trace_parameters = (region, _kernel_key(kernel), settings)
        trace_key = (trace_parameters, controls.image_key(chosen))
        traced = _session_memo("conv", trace_key, lambda: controls.computed(_region_trace, chosen, trace_parameters))
        trace = traced["trace"]
    except ValueError as error:
        st.error(f"These settings do not work on the region: {error}")
        trace = None
    explain_caption("**Stride** is how far the window jumps between positions; **padding** adds a border so the "
                    "kernel can also sit on the edge pixels; **dilation** spreads its taps apart to see a wider "
                    "area with the same number of weights.")

    # The sections after the settings are tabs that run only while open: a student's click on the kernel
    # redraws the open one, not all four (each costs the one server every student shares).
    st.session_state.setdefault(SECTION_KEY, SECTIONS[0])
    place = st if player_slot is None else player_slot
    tabs = dict(zip(SECTIONS, place.tabs(SECTIONS, key=SECTION_KEY, on_change="rerun")))
    if trace is not None:
        with tabs[SECTIONS[0]]:
            if tabs[SECTIONS[0]].open:
                _player_section(trace, traced["player"], trace_key)
        with tabs[SECTIONS[1]]:
            if tabs[SECTIONS[1]].open:
                _activation_section(chosen, kernel, settings, trace)
        with tabs[SECTIONS[2]]:
            if tabs[SECTIONS[2]].open:
                _pooling_section(_activated(trace), trace, whole)
    with tabs[SECTIONS[3]]:
        if tabs[SECTIONS[3]].open:
            _bank_section(chosen)
    links.publish(LINK_FIELDS, _link_values(), chosen, page="convolution", slot=link_slot, defaults=_link_defaults())


def _player_section(trace, payload, trace_key):
    """Section 3: the convolution's step player."""
    explain("The region is treated as a small image of its own, so its border gets padding. At each step the "
            "pixels in the window are multiplied by the kernel's weights, cell by cell; the sum of those "
            "products plus the bias is the output value. Then the window moves on by the stride, left to right, "
            "top to bottom.")
    _conv_player(trace, payload, trace_key)


def _activation_choice():
    """The chosen activation and leaky ReLU's slope (also read while the activation's tab is closed)."""
    st.session_state.setdefault("conv_activation", ACTIVATIONS[0])
    st.session_state.setdefault("conv_slope", SLOPE_DEFAULT)
    return st.session_state["conv_activation"], float(st.session_state["conv_slope"])


def _activated(trace):
    """The region's map after the chosen activation, and its HTML grids (once per map and activation)."""
    name, slope = _activation_choice()
    before = trace.output
    return _session_memo("activation", (before.tobytes(), before.shape, name, slope),
                         lambda: _activation_grids(before, name, slope))[0]


def _activation_section(chosen, kernel, settings, trace):
    """ReLU and the other activations on the region's output; returns the activated map."""
    explain("Wherever the image looks like the opposite of the kernel, the sum comes out negative. A **ReLU** "
            "keeps positive values and sets every negative one to zero (crossed cells). Without such a bend, "
            "a stack of convolutions would add up to one single convolution. **Leaky ReLU** keeps a small "
            "fraction of each negative value; **sigmoid** and **tanh** squeeze every value into 0 to 1 or "
            "-1 to 1.")
    choice_column, slope_column = st.columns([2, 1])
    _activation_choice()
    name = choice_column.radio("Activation", ACTIVATIONS, key="conv_activation", horizontal=True)
    slope = slope_column.number_input("Leaky ReLU slope", 0.0, 1.0, step=0.01, key="conv_slope",
                                      disabled=name != "leaky ReLU")
    before = trace.output
    key = (before.tobytes(), before.shape, name, float(slope))
    after, before_grid, after_grid = _session_memo("activation", key,
                                                   lambda: _activation_grids(before, name, float(slope)))
    marked = before < 0 if name in ("ReLU", "leaky ReLU") else None
    before_column, after_column = st.columns(2, gap="medium")
    before_column.html(before_grid)
    after_column.html(after_grid)
    with before_column:
        png_download(lambda: _activation_pictures(before, name, float(slope))[1], "region_map_before.png",
                     key="conv_before_png")
    with after_column:
        png_download(lambda: _activation_pictures(before, name, float(slope))[2], f"region_map_after_{name}.png",
                     key="conv_after_png")
    if marked is not None:
        st.markdown(f"**{int(marked.sum())} of {marked.size}** values were negative and "
                    + ("are now 0." if name == "ReLU" else f"were multiplied by {slope:g}."))
    # A toggle: this picture cost 30-50 ms of every kernel change, so it is made only when asked for.
    if st.toggle("Show the same on the whole image", key="conv_whole_activation"):
        parameters = (_kernel_key(kernel), settings, name, float(slope))
        st.image(controls.computed(_whole_activation, chosen, parameters), output_format="JPEG",
                 caption="Grey: pixels that were negative before the activation.")
        image = chosen.image
        png_download(lambda: _whole_activation_picture(image, parameters), f"whole_image_before_after_{name}.png",
                     key="conv_activation_png")
    return after


def _pooling_section(after, trace, whole):
    """Max or average pooling of the activated region map, stepped."""
    explain("**Max pooling** keeps only the largest value of each small window; **average pooling** keeps the "
            "mean. A 2 x 2 window moving by 2 halves each side, so the next layer has a quarter of the pixels "
            "to work on and each of its pixels stands for a larger piece of the scan. That is why early "
            "layers pick out fine detail and later layers larger structures.")
    for key, default in POOL_DEFAULTS.items():
        st.session_state.setdefault(key, default)
    # Padding beyond half the window would let a window hold padding only.
    st.session_state["pool_padding"] = min(st.session_state["pool_padding"], st.session_state["pool_size"] // 2)
    mode_column, size_column, stride_column, padding_column = st.columns(4)
    mode = mode_column.radio("Pooling", ("max", "avg"), key="pool_mode", horizontal=True,
                             format_func={"max": "max", "avg": "average"}.get)
    size = size_column.select_slider("Window", options=[2, 3, 4], key="pool_size")
    stride = stride_column.select_slider("Stride", options=[1, 2, 3, 4], key="pool_stride")
    padding = padding_column.select_slider("Padding", options=list(range(size // 2 + 1)), key="pool_padding",
                                           help="Cells added around the map so windows can sit on its edge. "
                                                "Max pooling pads with minus infinity, which never wins; "
                                                "average pooling pads with 0, which counts in the mean.")
    pool_key = (after.tobytes(), after.shape, mode, size, stride, padding)
    try:
        pool_trace = _session_memo("pool", pool_key,
                                   lambda: pool2d_trace(after, size, stride=stride, padding=padding, mode=mode))
    except ValueError as error:
        st.error(f"This pooling does not fit the region's map: {error}")
        return
    shrink = (f"The region's map shrinks from **{after.shape[0]} x {after.shape[1]}** to "
              f"**{pool_trace.output.shape[0]} x {pool_trace.output.shape[1]}**")
    if whole is not None:
        map_height, map_width = whole["shape"]
        pooled_height = output_size(map_height, size, stride=stride, padding=padding)
        pooled_width = output_size(map_width, size, stride=stride, padding=padding)
        shrink += f"; the whole image's map from {map_height} x {map_width} to {pooled_height} x {pooled_width}"
    st.markdown(shrink + ".")
    _pool_player(pool_trace, pool_key)


def _bank_section(chosen):
    """Many bank kernels on the whole image at once."""
    explain("A real layer applies many kernels to the same input, and each gives its own feature map: one "
            "finds vertical edges, another horizontal ones, another small bright spots. A trained network "
            "learns its kernels from examples instead of taking them from a list. With one shared colour "
            "scale you can compare how strongly each kernel answers.")
    st.session_state.setdefault("bank_names", list(BANK_DEFAULT))
    st.session_state.setdefault("bank_stage", BANK_STAGES[0])
    st.session_state.setdefault("bank_shared", False)
    names = st.multiselect("Kernels", list(KERNELS), key="bank_names")
    stage_column, shared_column = st.columns([3, 1], vertical_alignment="bottom")
    stage = stage_column.radio("Show", BANK_STAGES, key="bank_stage", horizontal=True)
    shared = shared_column.toggle("One colour scale for all", key="bank_shared")
    if names:
        parameters = (tuple(names), stage, bool(shared))
        st.image(controls.computed(_bank_grid, chosen, parameters), width="stretch", output_format="JPEG",
                 caption="Each map: the whole image through one kernel (same padding, replicated edges).")
        image = chosen.image
        png_download(lambda: _bank_picture(image, parameters), "feature_maps_of_many_kernels.png",
                     key="conv_bank_png")


# ---------------------------------------------------------------------------------------------------
# The lesson's link (views/links.py): what a lecturer sets up, as query parameters


_LINK_SOURCES = dict(zip(("bank", "random", "cut"), controls.SOURCES))
_LINK_ACTIVATIONS = activations.link_words()
_LINK_SECTIONS = dict(zip(("steps", "activation", "pooling", "bank"), SECTIONS))
_LINK_PADDINGS = {**{str(amount): amount for amount in range(5)}, "same": "same", "valid": "valid"}
LINK_FIELDS = (
    Field("region", whole_numbers(3)),  # top, left, size; brought inside the image by the sliders
    Field("source", choice(_LINK_SOURCES)),
    Field("kname", choice(tuple(KERNELS))),
    Field("ksize", integer(1, MAX_KERNEL_SIZE)),
    Field("seed", integer(0, 10**6)),
    Field("k", grid(MAX_KERNEL_SIZE, controls.KERNEL_LIMIT)),  # the kernel's values, exactly
    Field("stride", integer(1, 4)),
    Field("padding", choice(_LINK_PADDINGS)),
    Field("pad_mode", choice(PADDING_MODES)),
    Field("dilation", integer(1, 3)),
    Field("bias", number(-10.0, 10.0)),
    Field("flip", boolean()),
    Field("act", choice(_LINK_ACTIVATIONS)),
    Field("slope", number(0.0, 1.0)),
    Field("pool", record((("mode", choice(("max", "avg"))), ("size", integer(2, 4)), ("stride", integer(1, 4)),
                          ("padding", integer(0, 2))), separator=",")),
    Field("section", choice(_LINK_SECTIONS)),  # the open tab
    Field("step", integer(1, 10**6)),  # 1-based, as the player shows it
    Field("pool_step", integer(1, 10**6)),
)
_LINK_STORED = {"source": "conv_kernel_source", "kname": "conv_kernel_name", "ksize": "conv_kernel_size",
                "seed": "conv_random_seed", "stride": "conv_stride", "pad_mode": "conv_padding_mode",
                "dilation": "conv_dilation", "bias": "conv_bias", "flip": "conv_flip"}
_LINK_WIDGETS = {"act": "conv_activation", "slope": "conv_slope", "section": SECTION_KEY}
_LINK_POOL = {"mode": "pool_mode", "size": "pool_size", "stride": "pool_stride", "padding": "pool_padding"}


def _link_defaults():
    """LINK_FIELDS values a fresh session starts with (left out of the link), and the kernel its source builds."""
    defaults = {name: controls.DEFAULTS[key] for name, key in _LINK_STORED.items()}
    defaults.update(padding=controls.DEFAULTS["conv_padding"], act=ACTIVATIONS[0], slope=SLOPE_DEFAULT,
                    section=SECTIONS[0],
                    pool={name: POOL_DEFAULTS[key] for name, key in _LINK_POOL.items()})
    source, name, size = (controls.value(key) for key in ("conv_kernel_source", "conv_kernel_name",
                                                           "conv_kernel_size"))
    if source == controls.SOURCES[0]:
        defaults["k"] = make_kernel(name, size) if KERNELS[name].resizable else make_kernel(name)
    elif source == controls.SOURCES[1]:
        defaults["k"] = controls.random_kernel(size, controls.value("conv_random_seed"))
    return defaults


def _link_values():
    """The lesson's state as LINK_FIELDS values (None: not set up on this run, left out of the link)."""
    values = {name: controls.value(key) for name, key in _LINK_STORED.items()}
    values["region"] = tuple(int(controls.value(key)) for key in
                             ("conv_region_top", "conv_region_left", "conv_region_size"))
    values["k"] = np.asarray(st.session_state[controls.KERNEL_GRID], dtype=np.float32)
    kind = controls.value("conv_padding_kind")
    values["padding"] = int(controls.value("conv_padding")) if kind == "number" else kind
    values.update({name: st.session_state.get(key) for name, key in _LINK_WIDGETS.items()})
    if all(key in st.session_state for key in _LINK_POOL.values()):
        values["pool"] = {name: st.session_state[key] for name, key in _LINK_POOL.items()}
    values["step"] = st.session_state.get("conv__link_conv_step")
    values["pool_step"] = st.session_state.get("conv__link_pool_step")
    return values


def _apply_link(values):
    """Set the lesson's state from a link's values (after controls.init_state, before any widget)."""
    if not values:
        return
    for name, key in _LINK_STORED.items():
        if name in values:
            st.session_state[controls.stored_key(key)] = values[name]
    if "region" in values:
        for key, number in zip(("conv_region_top", "conv_region_left", "conv_region_size"), values["region"]):
            st.session_state[controls.stored_key(key)] = int(number)
        st.session_state["conv__region_from_link"] = True
    if "padding" in values:
        padding = values["padding"]
        st.session_state[controls.stored_key("conv_padding_kind")] = padding if isinstance(padding, str) else "number"
        if not isinstance(padding, str):
            st.session_state[controls.stored_key("conv_padding")] = padding
    if "k" in values:
        st.session_state[controls.KERNEL_GRID] = values["k"].tolist()
    elif values.keys() & {"source", "kname", "ksize", "seed"}:
        controls.kernel_from_source()
    for name, key in _LINK_WIDGETS.items():
        if name in values:
            st.session_state[key] = values[name]
    for name, key in _LINK_POOL.items():
        if "pool" in values:
            st.session_state[key] = values["pool"][name]
    for name in ("conv", "pool"):
        step = values.get("step" if name == "conv" else "pool_step")
        if step is not None:
            st.session_state[f"conv__initial_{name}_step"] = step - 1
            st.session_state[f"conv__link_{name}_step"] = step
