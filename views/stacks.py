"""Lesson page "Deeper layers see larger things": build a stack of stages and see how much of the image a cell sees."""

from __future__ import annotations

from functools import partial

import streamlit as st

from kernels import KERNELS
from lessons.receptive_field import (
    ACTIVATIONS,
    channel_sum,
    conv_cell_for_output,
    layer_shapes,
    receptive_field,
    stack_geometries,
)
from lessons.stacks import (
    allowed_kernels,
    chain_regions,
    is_learned,
    learned_kernels,
    learned_name,
    millions,
    overview_scale,
    shape_text,
    stage_from_spec,
    summary_rows,
    working_shape,
    working_stack,
)
from lessons.activations import link_words
from lessons.links import Codec, Field, choice, integer, names, record, whole_number_list
from views import links
from views.caching import computed, image_key, session_memo
from views.components.picture import picture
from views.exports import png_download
from views.notices import show_teaching_notice
from views.presenter import explain
from views.scan_picker import choose_image
from viz.images import grey_rgb, jpeg_bytes, png_bytes, upscale_nearest
from viz.stacks import STAGE_COLOURS, field_overlay, maps_strip, stack_overview, sum_bars
from viz.steps import WINDOW_COLOUR
from viz.steps import arithmetic_html

MAX_STAGES = 4
STAGES_PER_ROW = 2
MAX_KERNELS = 4
KERNEL_SIZES = (3, 5, 7)
WORKING_SIZES = (128, 256, 512)
POOL_LABELS = {"max": "max pooling", "avg": "average pooling", "none": "no pooling"}
DEFAULT_BANKS = (
    ("sobel x", "sobel y", "laplacian"),
    ("gaussian blur", "sobel x", "sobel y"),
    ("laplacian", "box blur"),
    ("gaussian blur", "sharpen"),
)
KERNEL_SOURCES = {"bank": "the filter bank", "learned": "learned by the classifier"}
DEFAULT_LEARNED = (0, 1, 2)  # indices into the classifier's first layer
STRIP_TARGET_WIDTH = 900  # pixels: the clickable maps of one stage
FIELD_TARGET_SIDE = 560  # pixels: the input with the receptive fields drawn on it


def _key(stage, name):
    return f"stacks_s{stage}_{name}"


def _init_state():
    defaults = {"stacks_stage_count": 2, "stacks_working_size": 256}
    for stage in range(MAX_STAGES):
        defaults.update({
            _key(stage, "size"): 3, _key(stage, "kernels"): list(DEFAULT_BANKS[stage]),
            _key(stage, "source"): "bank", _key(stage, "learned"): list(DEFAULT_LEARNED),
            _key(stage, "activation"): "ReLU", _key(stage, "pool"): "max", _key(stage, "pool_size"): 2,
            _key(stage, "stride"): 1, _key(stage, "dilation"): 1, _key(stage, "pool_stride"): 0,
        })
    for key, value in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = value
    for stage in range(MAX_STAGES):
        for name in ("size", "kernels", "learned"):
            # Only one kernel source's widgets are drawn at a time; writing the value back keeps the other
            # source's choices when its widgets are hidden (Streamlit drops state of widgets not drawn).
            st.session_state[_key(stage, name)] = st.session_state[_key(stage, name)]


def _stage_ui(stage):
    """Widgets of one stage; returns its hashable spec (source, kernels, size, stride, dilation, activation, pool...).

    ``kernels`` holds filter-bank names when the source is "bank", and indices into the classifier's first
    layer when it is "learned".
    """
    st.markdown(f"**Stage {stage + 1}**")
    source = st.radio("Kernels from", tuple(KERNEL_SOURCES), key=_key(stage, "source"),
                      format_func=KERNEL_SOURCES.get,
                      help="The filter bank holds kernels people designed; the classifier's first-layer "
                           "kernels were shaped by training.")
    if source == "learned":
        kernels, size = _learned_kernel_ui(stage)
    else:
        kernels, size = _bank_kernel_ui(stage)
    activation = st.selectbox("Activation", ACTIVATIONS, key=_key(stage, "activation"))
    pool = st.selectbox("Pooling", tuple(POOL_LABELS), key=_key(stage, "pool"), format_func=POOL_LABELS.get)
    pool_size = st.selectbox("Pool size", (2, 3, 4), key=_key(stage, "pool_size"), disabled=pool == "none")
    with st.expander("Strides and dilation"):
        stride = st.selectbox("Convolution stride", (1, 2), key=_key(stage, "stride"))
        dilation = st.selectbox("Dilation", (1, 2, 3), key=_key(stage, "dilation"),
                                help="Spreads the kernel's taps apart: a larger field for the same weights.")
        pool_stride = st.selectbox("Pool stride", (0, 1, 2, 3, 4), key=_key(stage, "pool_stride"),
                                   format_func=lambda value: "= pool size" if value == 0 else str(value),
                                   disabled=pool == "none")
    return (source, tuple(kernels), int(size), int(stride), int(dilation), activation, pool, int(pool_size),
            int(pool_stride) or None)


def _bank_kernel_ui(stage):
    """Size and filter-bank names of one stage's kernels."""
    size = st.selectbox("Kernel size", KERNEL_SIZES, key=_key(stage, "size"),
                        help="Fixed kernels (Sobel, Laplacian, ...) exist only as 3 x 3; blurs and the "
                             "Laplacian of Gaussian can be any size.")
    allowed = allowed_kernels(size)
    chosen = [name for name in st.session_state[_key(stage, "kernels")] if name in allowed]
    st.session_state[_key(stage, "kernels")] = chosen or allowed[:2]
    names = st.multiselect("Kernels (one feature map each)", allowed, key=_key(stage, "kernels"),
                           max_selections=MAX_KERNELS)
    if not names:
        st.caption("Choose at least one kernel; the first two are used meanwhile.")
        names = allowed[:2]
    return names, size


def _learned_kernel_ui(stage):
    """Indices (into the classifier's first layer) and size of one stage's learned kernels."""
    kernels = learned_kernels()
    available = list(range(len(kernels)))
    chosen = [index for index in st.session_state[_key(stage, "learned")] if index in available]
    st.session_state[_key(stage, "learned")] = chosen or available[:2]
    indices = st.multiselect("Learned kernels (one feature map each)", available, key=_key(stage, "learned"),
                             format_func=learned_name, max_selections=MAX_KERNELS)
    size = kernels.shape[1]
    st.caption(f"{size} x {size} kernels from the classifier's first layer "
               f"({len(kernels)} in all; numbered as on the classifier page).")
    if not indices:
        st.caption("Choose at least one kernel; the first two are used meanwhile.")
        indices = available[:2]
    return sorted(indices), size


# --------------------------------------------------------------------------------- receptive field


def _clamp_cell_state(results, stage_index):
    """Keep the chosen map/row/col inside the chosen stage's maps (before their widgets are drawn).

    Every value is written back, even one that is already valid. The Map box's labels name the chosen
    stage's kernels, and a browser keeps showing (and sending back) the label it last showed until the
    server sets the value: without the write, after a change of stage the box would still name the other
    stage's kernel, and the next rerun would return that label, no longer an option, as a string.
    """
    maps, rows, cols = results[stage_index].outputs.shape
    for key, limit, default in (("stacks_rf_map", maps, 0), ("stacks_rf_row", rows, rows // 2),
                                ("stacks_rf_col", cols, cols // 2)):
        value = st.session_state.get(key)
        valid = isinstance(value, int) and 0 <= value < limit
        st.session_state[key] = value if valid else default


def _on_strip_click(layout, click):
    cell = layout.cell_at(click["y"], click["x"])  # in the strip's pixels
    if cell is not None:
        st.session_state["stacks_rf_map"], st.session_state["stacks_rf_row"], st.session_state["stacks_rf_col"] = cell


@st.fragment
def _receptive_field_section(working, stages, results, identity):
    """``identity`` = (image key, working size, stage specs) names what the pictures are drawn from: they are
    kept under it, and a click only moves the boxes the browser draws on them."""
    st.subheader("What does one cell see?")
    explain(
        "Click a cell in any stage's maps. The coloured box on the image is every pixel that cell's value "
        "depends on, its **receptive field**, worked out from the kernel sizes, strides, dilations and "
        "pooling of the stages below. The thinner boxes show the field of one cell of each earlier stage on "
        "the way down: every stage makes the field larger."
    )
    stage_count = len(results)
    if st.session_state.get("stacks_rf_stage") not in range(1, stage_count + 1):
        st.session_state["stacks_rf_stage"] = stage_count
    stage_number = st.radio("Stage", list(range(1, stage_count + 1)), key="stacks_rf_stage", horizontal=True,
                            format_func=lambda number: f"stage {number}")
    stage_index = stage_number - 1
    result = results[stage_index]
    _clamp_cell_state(results, stage_index)
    maps, map_rows, map_cols = result.outputs.shape

    picker_column, field_column = st.columns([1, 1], gap="large")
    with picker_column:
        names = stages[stage_index].names
        # The map's name gets a whole row: a third of the column showed "1: gaussi" at 1280 pixels.
        st.selectbox("Map", list(range(maps)), key="stacks_rf_map",
                     format_func=lambda index: f"{index + 1}: {names[index]}")
        row_column, col_column = st.columns(2)
        row_column.number_input("Row", 0, map_rows - 1, key="stacks_rf_row", step=1)
        col_column.number_input("Column", 0, map_cols - 1, key="stacks_rf_col", step=1)
        kernel_index = int(st.session_state["stacks_rf_map"])
        row, col = int(st.session_state["stacks_rf_row"]), int(st.session_state["stacks_rf_col"])
        strip_width = maps * map_cols + (maps - 1) * 8
        scale = max(1, STRIP_TARGET_WIDTH // strip_width)
        titles = [f"{i + 1}: {n}" for i, n in enumerate(names)]

        def strip():
            drawn, layout = maps_strip(result.outputs, scale=scale, titles=titles)
            # PNG: flat cells and their titles stay crisp, and compress well.
            return png_bytes(drawn, compress_level=1), layout

        encoded, layout = session_memo("stacks", "strip", (identity, stage_index), strip)
        top, left, bottom, right = layout.cell_box(kernel_index, row, col)
        # Around the cell (never over it), thick enough to find on a projector.
        picture(encoded, key="stacks_rf_click", shape=layout.size, on_click=partial(_on_strip_click, layout),
                boxes=[((top, left, bottom - top, right - left), WINDOW_COLOUR, 4)],
                width="stretch" if layout.size[1] > 700 else None, label=f"The feature maps of stage {stage_number}")
        chosen_cell = (kernel_index, row, col)
        png_download(lambda: maps_strip(result.outputs, scale=scale, titles=titles, highlight=chosen_cell)[0],
                     f"stage_{stage_number}_feature_maps.png", key="stacks_strip_png")
        st.caption(f"Stage {stage_number}: {maps} maps of {map_rows} x {map_cols} cells. Click a cell, or type "
                   "its row and column.")

    layers, stage_ends = stack_geometries(stages)
    regions = chain_regions(layers, stage_ends, working.shape, stage_index, row, col)
    field = receptive_field(layers[:stage_ends[stage_index]])
    chosen = regions[-1]
    with field_column:
        display_scale = max(1, FIELD_TARGET_SIDE // max(working.shape))
        boxes = [(region, STAGE_COLOURS[index], 2) for index, region in enumerate(regions[:-1])]
        boxes.append((chosen, STAGE_COLOURS[stage_index], 4))
        # Enlarged (crisp pixels) and encoded once per image; the fields are drawn by the browser.
        encoded = session_memo("stacks", "field image", identity[:2],  # the working image, not the stack
                               lambda: jpeg_bytes(upscale_nearest(grey_rgb(working), display_scale)))
        picture(encoded, key="stacks_field", shape=working.shape, label="The image with the receptive fields",
                boxes=[((row_start, col_start, row_stop - row_start, col_stop - col_start), colour, line)
                       for (row_start, row_stop, col_start, col_stop), colour, line in boxes
                       if row_stop > row_start and col_stop > col_start])
        st.caption("Box colours: stage 1 green, stage 2 sky blue, stage 3 pink, stage 4 amber.")
        png_download(lambda: field_overlay(working, boxes, scale=display_scale),
                     f"receptive_field_stage_{stage_number}.png", key="stacks_field_png")
    height, width = chosen[1] - chosen[0], chosen[3] - chosen[2]
    clipped = (height, width) != field.size
    explain(
        f"Cell ({row}, {col}) of stage {stage_number} depends on the **{height} x {width}** pixels in the box "
        f"(rows {chosen[0]}-{chosen[1] - 1}, columns {chosen[2]}-{chosen[3] - 1}). "
        f"From the stack: a stage-{stage_number} cell sees {field.size[0]} x {field.size[1]} pixels, and "
        f"neighbouring cells' fields are {field.jump[0]} pixels apart"
        + (", cut here by the edge of the image (or by padding, which holds no pixels)." if clipped else ".")
    )
    _channel_sum_section(result, stage_number, kernel_index, row, col)


def _channel_sum_section(result, stage_number, kernel_index, row, col):
    stage = result.stage
    in_channels = result.inputs.shape[0]
    conv_row, conv_col = conv_cell_for_output(result, kernel_index, row, col)
    breakdown = channel_sum(result, kernel_index, conv_row, conv_col)
    st.subheader("How one value adds up over the maps below")
    if stage.pool == "max":
        origin = f"max pooling kept the value of convolution cell ({conv_row}, {conv_col})"
    elif stage.pool == "avg":
        origin = (f"average pooling averaged a {stage.pool_size} x {stage.pool_size} block of the convolution "
                  f"output; shown here is its first cell, ({conv_row}, {conv_col})")
    else:
        origin = f"there is no pooling, so it is convolution cell ({conv_row}, {conv_col})"
    names = stage.names
    slice_names = [names[(kernel_index + channel) % stage.kernel_count] for channel in range(in_channels)]
    st.markdown(
        f"Map {kernel_index + 1} of stage {stage_number} at ({row}, {col}): {origin}. "
        + (f"Its kernel has **{in_channels} slices, one per input map**: input map c is read through bank kernel "
           f"'{slice_names[0]}', '{slice_names[1] if in_channels > 1 else ''}', ... (the bank turned by one "
           f"place per map, each divided by {in_channels}). Each slice gives a sum of products; the "
           "convolution's output is the sum of those sums."
           if in_channels > 1 else
           "Stage 1 reads one input map, the image, so there is one sum. Choose a deeper stage to see the "
           "sums of several maps add up.")
    )
    labels = [f"map {channel + 1} x '{slice_names[channel]}'" for channel in range(in_channels)]
    bars_column, text_column = st.columns([3, 2], gap="large")
    with bars_column:
        st.image(jpeg_bytes(sum_bars(breakdown.totals, breakdown.value, labels=labels), sharp_text=True),
                 output_format="JPEG", width="content")
    with text_column:
        terms = " + ".join(f"({total:.4f})" for total in breakdown.totals)
        activated = float(result.activated[kernel_index, conv_row, conv_col])
        st.markdown(f"{terms} = **{breakdown.value:.4f}**  \n{stage.activation} gives **{activated:.4f}**  \n"
                    f"the stage's output at ({row}, {col}) is **{float(result.outputs[kernel_index, row, col]):.4f}**")
    low, high = float(result.inputs.min()), float(result.inputs.max())
    tabs = st.tabs([f"input map {channel + 1}" for channel in range(in_channels)])
    for channel, tab in enumerate(tabs):
        step = breakdown.steps[channel]
        with tab:
            st.html(arithmetic_html(step.patch, result.weights[kernel_index, channel], step.products, low=low,
                                    high=high))
            st.caption(f"Sum of these products: {step.total:.4f}")


# --------------------------------------------------------------------------------- page


def main():
    st.title("Deeper layers see larger things")
    show_teaching_notice()
    link_values = links.opened(LINK_FIELDS)
    link_slot = st.container()
    chosen = choose_image("scan")
    _init_state()
    _apply_link(link_values)
    explain(
        """
A CNN does not look at the whole image at once. It repeats one short recipe, a **stage**:

1. **Convolution** with a small bank of kernels. Every kernel slides over all of the maps below and
   makes one new feature map, so a bank of 3 kernels turns any number of maps into 3.
2. **Activation**: usually ReLU, which replaces every negative value with zero.
3. **Pooling**: a 2 x 2 max pool keeps the largest value of each 2 x 2 block, so each side of every map
   is halved and the next convolution has a quarter of the work.

While the maps are large, a 3 x 3 kernel covers a tiny patch: early stages can only react to fine
detail such as edges and spots. After each pooling one cell stands for a bigger block of the image, so
the same small kernel, one stage up, takes in a much larger part of it. The maps get smaller and each
value depends on more of the scan, which is why deeper layers respond to larger structures.
"""
    )
    top = st.columns([1, 1, 2])
    stage_count = top[0].slider("Number of stages", 1, MAX_STAGES, key="stacks_stage_count")
    longer_side = top[1].selectbox("Working size (longer side, pixels)", WORKING_SIZES, key="stacks_working_size",
                                   help="The image is reduced to this size first so every change is instant.")
    specs = []
    for stage in range(stage_count):
        # Two stages a row: four side by side left a kernel list too narrow for its names at 1280 pixels.
        if stage % STAGES_PER_ROW == 0:
            columns = st.columns(STAGES_PER_ROW, gap="large")
        with columns[stage % STAGES_PER_ROW]:
            specs.append(_stage_ui(stage))
    specs = tuple(specs)
    links.publish(LINK_FIELDS, _link_values(stage_count), chosen, page="stacks", slot=link_slot)

    try:
        # Check the geometry first, so only "the stack does not fit" is reported as such.
        layers, _ = stack_geometries([stage_from_spec(spec) for spec in specs])
        layer_shapes(layers, working_shape(chosen.image.shape, longer_side))
    except ValueError as error:
        st.error(f"This stack does not fit the image: {error}", icon=":material/error:")
        return
    working, stages, results = computed(working_stack, chosen, (longer_side, specs))

    mm_per_pixel = None
    if chosen.scan.spacing is not None:
        factor = chosen.image.shape[0] / working.shape[0]
        mm_per_pixel = (chosen.scan.spacing[0] * factor, chosen.scan.spacing[1] * factor)

    st.subheader("The stack at true relative size")
    st.table(summary_rows(working, stages, results, mm_per_pixel), hide_index=True)
    scale = overview_scale(working, results)
    labels = [f"input: 1 x {working.shape[0]} x {working.shape[1]}"]
    labels += [f"stage {index + 1}: {shape_text(result.outputs.shape)},  {millions(result.multiply_adds)} "
               "multiply-adds" for index, result in enumerate(results)]
    overview = stack_overview(working, [result.outputs for result in results], labels, scale=scale)
    # An explicit pixel width: the frame must not be stretched, or the sizes stop being true.
    st.image(jpeg_bytes(overview), output_format="JPEG", width=int(overview.shape[1]),
             caption="Every map drawn with the same size per cell as the input's pixels: pooling halves each "
                     "side. Red is positive, blue negative, white zero (each map on its own scale).")
    png_download(overview, "stack_overview.png", key="stacks_overview_png")
    explain(
        "Multiply-adds: each output value of a convolution costs kernel height x width x input maps "
        "multiplications, and there are output maps x height x width of them. Pooling first makes the next "
        "convolution cheaper. In stages after the first, map k reads input map c through bank kernel "
        "(k + c) mod K, divided by the number of input maps: an arrangement made up for this lesson (a "
        "trained network learns a separate slice for every pair)."
    )
    learned_stages = [index + 1 for index, stage in enumerate(stages) if is_learned(stage)]
    if learned_stages:
        st.markdown(
            f"Stage{'s' if len(learned_stages) > 1 else ''} {', '.join(map(str, learned_stages))} "
            "use kernels that nobody designed. They are the first layer of this app's lesion classifier: "
            "they began as simple spot detectors and training nudged their numbers, batch after batch, "
            "towards whatever helped tell a patch with a lesion from one without. Map 'learned #n' is the "
            "classifier's kernel n. Here they run without the classifier's bias and with zero padding, like "
            "every kernel on this page; in a later stage they are spread over the maps below by the same "
            "made-up (k + c) mod K arrangement, because the classifier's own deeper kernels belong to its "
            "own eight maps, not to the stack built here."
        )
    _receptive_field_section(working, stages, results, (image_key(chosen), longer_side, specs))


# --------------------------------------------------------------------------------- the lesson's link


# Link words of a stage's activation; "leaky relu" is how links spelled it before the activations' one table.
_LINK_ACTIVATIONS = {"none": "none", "leaky relu": "leaky ReLU", **link_words()}


def _stage_codec():
    """One stage in a link: source:kernels:size:stride:dilation:activation:pool:pool size:pool stride."""
    base = record((("source", choice(tuple(KERNEL_SOURCES))), ("kernels", Codec(str, str)),
                   ("size", choice({str(size): size for size in KERNEL_SIZES})), ("stride", integer(1, 2)),
                   ("dilation", integer(1, 3)), ("activation", choice(_LINK_ACTIVATIONS)),
                   ("pool", choice(tuple(POOL_LABELS))), ("pool_size", integer(2, 4)), ("pool_stride", integer(0, 4))))
    bank = names(tuple(KERNELS), at_most=MAX_KERNELS)
    learned = whole_number_list(0, 255, at_most=MAX_KERNELS)  # the page keeps only the classifier's own

    def parse(text):
        values = base.parse(text)
        try:
            values["kernels"] = (bank if values["source"] == "bank" else learned).parse(values["kernels"])
        except ValueError as error:
            raise ValueError(f"its kernels {error}") from None
        return values

    def format_stage(values):
        return base.format({**values, "kernels": ",".join(str(name) for name in values["kernels"])})
    return Codec(parse, format_stage)


_STAGE_PARTS = ("size", "stride", "dilation", "activation", "pool", "pool_size", "pool_stride")
LINK_FIELDS = (Field("stages", integer(1, MAX_STAGES)),
               Field("work", choice({str(size): size for size in WORKING_SIZES})),
               *(Field(f"s{stage + 1}", _stage_codec()) for stage in range(MAX_STAGES)))


def _link_values(stage_count):
    """The stack as LINK_FIELDS values: the stages in use, each with the kernels of its chosen source."""
    values = {"stages": stage_count, "work": st.session_state["stacks_working_size"]}
    for stage in range(stage_count):
        source = st.session_state[_key(stage, "source")]
        spec = {part: st.session_state[_key(stage, part)] for part in _STAGE_PARTS}
        spec["kernels"] = st.session_state[_key(stage, "kernels" if source == "bank" else "learned")]
        values[f"s{stage + 1}"] = {"source": source, **spec}
    return values


def _apply_link(values):
    """Set the stack from a link's values (after _init_state, before the widgets)."""
    if "stages" in values:
        st.session_state["stacks_stage_count"] = values["stages"]
    if "work" in values:
        st.session_state["stacks_working_size"] = values["work"]
    for stage in range(MAX_STAGES):
        spec = values.get(f"s{stage + 1}")
        if spec is None:
            continue
        for part in ("source", *_STAGE_PARTS):
            st.session_state[_key(stage, part)] = spec[part]
        st.session_state[_key(stage, "kernels" if spec["source"] == "bank" else "learned")] = list(spec["kernels"])


main()
