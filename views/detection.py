"""Lesson page "Where is it?": a box of the image becomes a kernel, and its response says where that thing is."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from lessons.detection import MAX_BOX, MIN_BOX, default_side, detect, fit_image, image_to_search, matching_kernel
from lessons.matching import Box, classify_tiles, contrasting_boxes, cut_box, structured_boxes, zero_mean_kernel
from lessons.links import Field, choice, whole_numbers
from views import links
from views.caching import computed
from views.components.picture import picture
from views.exports import png_download
from views.notices import show_teaching_notice
from views.presenter import explain
from views.scan_picker import choose_image
from viz.detection import (
    BEST_COLOUR,
    CLASS_COLOURS,
    MATCH_COLOUR,
    TEMPLATE_COLOUR,
    boxes_overlay,
    enlarge,
    heat_overlay,
    kernel_picture,
    response_on_image,
    tile_class_overlay,
)
from viz.images import grey_rgb, heat_rgb, jpeg_bytes
from viz.tables import fixed_decimals

KERNEL_KINDS = {"zero-mean": "Zero-mean, normalised (template matching)",
                "binary": "0/1 from a threshold (the article's figure)"}
SCORES = {"normalised": "Normalised: 1 = same pattern, whatever the brightness",
          "plain": "Plain sum of products (what a convolution layer computes)"}
TARGETS = {"same": "this image", "shifted": "a shifted copy", "slice": "another slice of the volume"}
TILE_SIZES = (32, 48, 64, 96, 128)
# Fixed widths, in pixels, that hold the widest value each column can have: the grid otherwise keeps the
# widths of the first data it showed, and the four columns fit the table's column at a 1280-pixel window.
_SCORE_COLUMN = {"format": "%.3f", "width": 72,  # normalised scores lie in [-1, 1]: "-1.000"
                 "help": "Normalised score of the kernel in this tile: 1 = the same pattern."}
TILE_TABLE_COLUMNS = {
    "tile": st.column_config.TextColumn("tile", width=72, help="(row, column) of the tile, from the top left"),
    "kernel A": st.column_config.NumberColumn("kernel A", **_SCORE_COLUMN),
    "kernel B": st.column_config.NumberColumn("kernel B", **_SCORE_COLUMN),
    "class": st.column_config.TextColumn("class", width=56),
}


def _display_scale(image):
    return max(1, 520 // max(image.shape))


def _image_identity(chosen):
    return (chosen.name, chosen.slice_index, chosen.image.shape, chosen.is_upload)


# ------------------------------------------------------------------------------- box state


def _box_keys(prefix):
    return tuple(f"{prefix}_{name}" for name in ("row", "col", "height", "width"))


def _set_box(prefix, box):
    for key, value in zip(_box_keys(prefix), box):
        st.session_state[key] = int(value)


def _get_box(prefix):
    return Box(*(int(st.session_state[key]) for key in _box_keys(prefix)))


def _clamp_box(prefix, image_shape):
    box = _get_box(prefix)
    height = int(np.clip(box.height, MIN_BOX, min(MAX_BOX, image_shape[0])))
    width = int(np.clip(box.width, MIN_BOX, min(MAX_BOX, image_shape[1])))
    _set_box(prefix, Box(box.row, box.col, height, width).clipped(image_shape))


def _on_drag(prefix, image_shape, square, event):
    """A drag draws a new box; a click (or a tiny drag) moves the current box to centre on that point."""
    to_row = image_shape[0] / event["height"]
    to_col = image_shape[1] / event["width"]
    box = _get_box(prefix)
    if "x1" in event:
        rows = sorted((event["y1"] * to_row, event["y2"] * to_row))
        cols = sorted((event["x1"] * to_col, event["x2"] * to_col))
        height, width = rows[1] - rows[0], cols[1] - cols[0]
        if height >= MIN_BOX and width >= MIN_BOX:
            if square:
                height = width = max(height, width)
            box = Box(int(rows[0]), int(cols[0]), int(min(height, MAX_BOX)), int(min(width, MAX_BOX)))
        else:
            centre = ((rows[0] + rows[1]) / 2, (cols[0] + cols[1]) / 2)
            box = Box(int(centre[0] - box.height / 2), int(centre[1] - box.width / 2), box.height, box.width)
    else:
        box = Box(int(event["y"] * to_row - box.height / 2), int(event["x"] * to_col - box.width / 2),
                  box.height, box.width)
    _set_box(prefix, box.clipped(image_shape))


def _box_inputs(prefix, image_shape, label):
    row_key, col_key, height_key, width_key = _box_keys(prefix)
    columns = st.columns(4)
    columns[0].number_input(f"{label} top row", 0, image_shape[0] - 1, key=row_key, step=1)
    columns[1].number_input(f"{label} left column", 0, image_shape[1] - 1, key=col_key, step=1)
    columns[2].number_input(f"{label} height", MIN_BOX, min(MAX_BOX, image_shape[0]), key=height_key, step=2)
    columns[3].number_input(f"{label} width", MIN_BOX, min(MAX_BOX, image_shape[1]), key=width_key, step=2)


# ------------------------------------------------------------------------------- computation


def _matches_table(matches):
    """The matches, best first, scores to 3 decimals as the sentence below the table quotes them."""
    frame = pd.DataFrame({"rank": range(1, len(matches) + 1), "top row": [match.row for match in matches],
                          "left column": [match.col for match in matches],
                          "score": [float(match.score) for match in matches]})
    return fixed_decimals(frame, 3, ["score"])


# ------------------------------------------------------------------------------- sections


@st.fragment
def _detection_section(chosen, image):
    link_slot = st.container()
    st.subheader("1. Cut a kernel out of the image")
    explain(
        "Drag a box around a structure on the image (a vertebra, a vessel, an organ's edge, a nodule), or "
        "click to move the box there, or type its position. The pixels in the box become the kernel."
    )
    if st.session_state.get("det_identity") != _image_identity(chosen):
        side = default_side(image)
        _set_box("det", structured_boxes(image, (side, side), count=1)[0])
        st.session_state["det_identity"] = _image_identity(chosen)
        st.session_state.pop("det_threshold", None)
    _apply_link(st.session_state.pop("det__link", {}), chosen)
    _clamp_box("det", image.shape)
    box = _get_box("det")
    scale = _display_scale(image)

    image_column, kernel_column = st.columns([3, 2], gap="large")
    with image_column:
        drawn = boxes_overlay(enlarge(grey_rgb(image), scale), [(box, TEMPLATE_COLOUR, "kernel")], scale=scale)
        picture(drawn, key="det_drag", drag=True, on_click=partial(_on_drag, "det", image.shape, False),
                      label="The image with the kernel's box")
    with kernel_column:
        _box_inputs("det", image.shape, "Box")
        box = _get_box("det")
        patch = cut_box(image, box)
        kind = st.radio("Kernel", tuple(KERNEL_KINDS), key="det_kind", format_func=KERNEL_KINDS.get)
        threshold = 0.5
        if kind == "binary":
            low, high = float(patch.min()), float(patch.max())
            if high - low < 1e-3:
                st.error("The box is flat: there is nothing to threshold. Move it onto a structure.")
                return
            if not low < st.session_state.get("det_threshold", -1.0) < high:
                st.session_state["det_threshold"] = round((low + high) / 2, 3)
            threshold = st.slider("Threshold: pixels at least this bright become 1", low, high,
                                  key="det_threshold", step=0.001, format="%.3f")
        score = st.radio("Score", tuple(SCORES), key="det_score", format_func=SCORES.get)
        links.publish(LINK_FIELDS, {"box": tuple(_get_box("det")), "kind": kind, "score": score}, chosen,
                      page="detection", slot=link_slot)
        try:
            kernel = matching_kernel(patch, kind, threshold)
        except ValueError as error:
            st.error(str(error), icon=":material/error:")
            return
        # At its own size (at most 200 pixels), not stretched to the column: a column-wide
        # square made this column much taller than the image beside it.
        kernel_rgb = kernel_picture(kernel, binary=kind == "binary", size=200)
        st.image(kernel_rgb, width=int(kernel_rgb.shape[1]),
                 caption=f"The {kernel.shape[0]} x {kernel.shape[1]} kernel"
                         + (" (white = 1, black = 0)" if kind == "binary" else " (red above the box's mean, blue below)"))

    st.subheader("2. Slide it over an image and look for the highest response")
    options = [name for name in TARGETS if name != "slice" or chosen.scan.is_volume]
    controls = st.columns([3, 2, 2, 2, 2])
    target = controls[0].radio("Search in", options, key="det_target", format_func=TARGETS.get, horizontal=True)
    shift_rows = shift_cols = 0
    noise, other_slice = 0.0, None
    if target == "shifted":
        limit_rows, limit_cols = image.shape[0] // 3, image.shape[1] // 3
        shift_rows = controls[1].slider("Shift down", -limit_rows, limit_rows, 40 if limit_rows >= 40 else 0,
                                        key="det_shift_rows")
        shift_cols = controls[2].slider("Shift right", -limit_cols, limit_cols, -25 if limit_cols >= 25 else 0,
                                        key="det_shift_cols")
        noise = controls[3].slider("Added noise", 0.0, 0.2, 0.02, 0.01, key="det_noise",
                                   help="Random noise (standard deviation, on the 0-1 grey scale) added to the copy.")
    elif target == "slice":
        depth = chosen.scan.pixels.shape[0]
        current = chosen.slice_index or 0
        default = min(current + 1, depth - 1) if current + 1 < depth else max(current - 1, 0)
        other_slice = controls[1].slider("Slice", 0, depth - 1, default, key="det_other_slice")
    count = controls[4].number_input("Matches to list", 1, 10, 5, key="det_count")

    target_image = image_to_search(chosen, image, target, shift_rows, shift_cols, noise, other_slice)
    if target_image.shape != image.shape or min(target_image.shape) < max(box.height, box.width):
        st.error("That slice does not have the chosen image's size, so the box cannot be looked for in it.")
        return
    target_spec = (target, shift_rows, shift_cols, round(noise, 4), other_slice)
    kernel, response, matches = computed(detect, chosen, (target_spec, Box(*box), kind, threshold, score, int(count)),
                                         data=(image, target_image))

    normalised = score == "normalised"
    low, high = (0.0, 1.0) if normalised else (float(response.min()), float(response.max()))
    placed = response_on_image(response, kernel.shape, target_image.shape, fill=low)
    overlay = enlarge(heat_overlay(target_image, placed, low=low, high=high), scale)
    marks = [(match.box, BEST_COLOUR if rank == 0 else MATCH_COLOUR, str(rank + 1))
             for rank, match in reversed(list(enumerate(matches)))]
    heat_column, table_column = st.columns([3, 2], gap="large")
    with heat_column:
        heat_picture = boxes_overlay(overlay, marks, scale=scale)
        st.image(jpeg_bytes(heat_picture), output_format="JPEG", width="stretch",
                 caption="The response as heat over the image searched (bright = strong). Box 1 (green) is the "
                         "highest response; the others are the next best places that do not overlap it much.")
        png_download(heat_picture, "response_on_the_image.png", key="det_heat_png")
    with table_column:
        # An HTML table, not the canvas grid: its columns grow with their numbers, where the grid kept the
        # widths of its first data and cut the leading digits off plain sums (2671.6301 showed as 671.6301).
        st.table(_matches_table(matches), hide_index=True)
        best = matches[0]
        expected = None
        if target == "same":
            expected = (box.row, box.col)
        elif target == "shifted":
            expected = (box.row + shift_rows, box.col + shift_cols)
        message = f"Highest response at row {best.row}, column {best.col} (score {best.score:.3f})."
        if expected is not None:
            offset = max(abs(best.row - expected[0]), abs(best.col - expected[1]))
            # Noise moves the peak of a smooth pattern by a pixel or two: still the same structure.
            tolerance = max(2, min(box.height, box.width) // 10)
            message += f" The structure is at row {expected[0]}, column {expected[1]}: "
            if offset == 0:
                message += "found exactly."
            elif offset <= tolerance:
                message += (f"found, {offset} pixel{'s' if offset > 1 else ''} off (noise moves the peak of a "
                            "smooth pattern a little).")
            else:
                message += ("the best score went elsewhere. A box with little contrast is easily drowned by "
                            "noise, and another place may simply look more like it.")
        elif other_slice is not None:
            message += (f" On slice {chosen.slice_index} the box was at row {box.row}, column {box.col}: the "
                        f"structure moved by ({best.row - box.row}, {best.col - box.col}) pixels between slices.")
        st.markdown(message)
        response_picture = enlarge(heat_rgb(np.clip(response, low, high), low, high),
                                   max(1, 260 // max(response.shape)))
        st.image(jpeg_bytes(response_picture), output_format="JPEG", width="stretch",
                 caption=f"The response map alone: {response.shape[0]} x {response.shape[1]} positions, one per "
                         "place the kernel fits entirely inside the image.")
        png_download(response_picture, "response_map.png", key="det_response_png")
    if not normalised:
        st.info("With the plain sum of products, bright regions score high whatever their shape; the "
                "normalised score divides by each window's own contrast, so only the pattern counts.",
                icon=":material/lightbulb:")


@st.fragment
def _two_classes_section(chosen, image):
    st.subheader("3. Two kernels, two classes")
    explain(
        "Classification with kernels, in miniature: kernel A is cut from an example of class A, kernel B from "
        "an example of class B. The image is cut into tiles; in each tile both kernels are slid over it, and "
        "the tile goes to the class whose kernel responds more. A network grading prostate biopsies could do "
        "the same with one kernel per Gleason pattern, and combine their responses into a grade."
    )
    side = default_side(image)
    if st.session_state.get("cls_identity") != _image_identity(chosen):
        suggestions = contrasting_boxes(image, (side, side))
        if len(suggestions) < 2:
            suggestions = [Box(0, 0, side, side), Box(image.shape[0] - side, image.shape[1] - side, side, side)]
        _set_box("cls_a", suggestions[0].clipped(image.shape))
        _set_box("cls_b", suggestions[1].clipped(image.shape))
        st.session_state["cls_identity"] = _image_identity(chosen)
    _clamp_box("cls_a", image.shape)
    _clamp_box("cls_b", image.shape)
    scale = _display_scale(image)

    controls = st.columns([2, 2, 1])
    which = controls[0].radio("Dragging or clicking on the image sets", ("A", "B"), key="cls_which", horizontal=True,
                              format_func=lambda name: f"box {name}")
    largest_box = max(max(_get_box("cls_a")[2:]), max(_get_box("cls_b")[2:]))
    tiles = [size for size in TILE_SIZES if largest_box <= size <= min(image.shape)] or [min(image.shape)]
    if st.session_state.get("cls_tile") not in tiles:
        st.session_state["cls_tile"] = tiles[min(1, len(tiles) - 1)]
    tile = controls[1].select_slider("Tile size (pixels)", tiles, key="cls_tile")

    box_a, box_b = _get_box("cls_a"), _get_box("cls_b")
    try:
        kernel_a = zero_mean_kernel(cut_box(image, box_a))
        kernel_b = zero_mean_kernel(cut_box(image, box_b))
        result = classify_tiles(image, [kernel_a, kernel_b], tile)
    except ValueError as error:
        st.error(str(error), icon=":material/error:")
        return
    margins = np.abs(result.scores[0] - result.scores[1])

    image_column, table_column = st.columns([3, 2], gap="large")
    with image_column:
        drawn = tile_class_overlay(image, result.labels, margins, tile, scale=scale, max_opacity=0.45)
        drawn = boxes_overlay(drawn, [(box_a, CLASS_COLOURS[0], "A"), (box_b, CLASS_COLOURS[1], "B")], scale=scale)
        picture(drawn, key="cls_drag", drag=True,
                      on_click=partial(_on_drag, f"cls_{which.lower()}", image.shape, False),
                      label="The image's tiles coloured by class, with the boxes A and B")
        st.caption("Orange tiles went to class A, blue tiles to class B; the stronger the tint, the clearer the "
                   "decision. Tiles at the bottom and right that do not fill a whole tile are left out.")
    with table_column:
        _box_inputs("cls_a", image.shape, "A")
        _box_inputs("cls_b", image.shape, "B")
        count_a = int(np.sum(result.labels == 0))
        count_b = int(result.labels.size - count_a)
        st.markdown(f"**{count_a}** tiles went to class A and **{count_b}** to class B. Over the whole image "
                    f"the best score of kernel A is **{float(result.image_scores[0]):.3f}** and of kernel B "
                    f"**{float(result.image_scores[1]):.3f}** (each finds its own box, where it scores 1).")
        rows = []
        for i in range(result.labels.shape[0]):
            for j in range(result.labels.shape[1]):
                rows.append({"tile": f"({i}, {j})", "kernel A": float(result.scores[0, i, j]),
                             "kernel B": float(result.scores[1, i, j]),
                             "class": "A" if result.labels[i, j] == 0 else "B"})
        st.dataframe(rows, hide_index=True, height=300, column_config=TILE_TABLE_COLUMNS)


def main():
    st.title("Where is it?")
    show_teaching_notice()
    # Applied by the detection section, which knows the image the box belongs to.
    st.session_state["det__link"] = links.opened(LINK_FIELDS)
    chosen = choose_image("scan")
    explain(
        """
A convolution gives a large output wherever the image under the kernel looks like the kernel. So a
kernel *shaped like the thing you are looking for* turns into a detector: slide it over the whole scan,
and the position of its highest output says where that thing is. Because the same kernel is applied
everywhere, the object is found in any corner of the image, and a similar object gives a similar output
wherever it lies.

A trained network learns its kernels from examples. Here you make one by hand: cut it out of the image.
"""
    )
    image = fit_image(chosen.image)
    if image.shape != chosen.image.shape:
        st.caption(f"The image is reduced to {image.shape[0]} x {image.shape[1]} pixels for this lesson.")
    if min(image.shape) < 2 * MIN_BOX:
        st.error(f"This image is only {image.shape[0]} x {image.shape[1]} pixels: too small to cut a kernel from.")
        return
    _detection_section(chosen, image)
    _two_classes_section(chosen, image)


# ------------------------------------------------------------------------------- the lesson's link


LINK_FIELDS = (Field("box", whole_numbers(4)),  # top row, left column, height, width; kept inside the image
               Field("kind", choice(tuple(KERNEL_KINDS))), Field("score", choice(tuple(SCORES))))


def _apply_link(values, chosen):
    """Set the detection box and its kernel from a link's values (before the section's widgets)."""
    if "box" in values:
        _set_box("det", Box(*values["box"]))
        st.session_state["det_identity"] = _image_identity(chosen)
    for name in ("kind", "score"):
        if name in values:
            st.session_state[f"det_{name}"] = values[name]


main()
