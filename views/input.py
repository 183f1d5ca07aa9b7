"""Lesson page "The input: from scan to network input": the scan, its window, safe metadata, preprocessing."""

import numpy as np
import pandas as pd
import streamlit as st

from scans import window_bounds
from scans.preprocess import NORMALISATIONS, centre_square, run_pipeline, value_histogram
from views import links
from views.notices import show_teaching_notice
from views.presenter import explain, explain_caption
from views.scan_picker import choose_image
from viz.charts import histogram_chart
from viz.images import fit_factor, grey_rgb, jpeg_bytes, outline, upscale_nearest, window_clipping_rgb
from viz.tables import fixed_decimals

DISPLAY_PIXELS = 520  # the longer side an image is enlarged to (nearest neighbour) for the projector
INPUT_SIZES = (32, 64, 96, 128, 224, 256)
_NORMALISATION_HELP = {
    "window": "clip to the window and scale to [0, 1]: the same tissue gets the same number in every scan "
              "(CT in HU); what the window leaves out is lost to the network",
    "min-max": "(x - min) / (max - min): [0, 1] whatever the scanner, but one bright pixel changes every value",
    "z-score": "(x - mean) / standard deviation: mean 0, spread 1; common for MR, whose units have no fixed scale",
}


def main():
    st.title("The input: from scan to network input")
    show_teaching_notice()
    links.opened(())  # the lesson's link holds the image choice only
    link_slot = st.container()
    chosen = choose_image("scan")  # before the introduction: a refused upload is reported at the top
    links.publish((), {}, chosen, page="input", slot=link_slot)
    explain(
        "A network never sees a picture: it sees a grid of numbers. Before the first convolution, the "
        "scan is read in its physical units, a grey-level window decides which values matter, and the "
        "image is cropped to a region, resized to the size the network was built for, and its values "
        "brought to a common range. Change the scan, the slice and the window in the sidebar; switch the "
        "steps on below and watch the array the network receives."
    )
    scan_section(chosen)
    preprocessing_section(chosen)


# ---------------------------------------------------------------------------------------------------
# The scan and its window


def scan_section(chosen):
    scan = chosen.scan
    st.header("1. The scan and its window")
    lower, upper = window_bounds(chosen.level, chosen.width)
    image_column, facts_column = st.columns([3, 2], gap="large")
    with image_column:
        show_clipping = st.toggle("Colour the values outside the window", key="input_show_clipping",
                                  help="Blue: below the window (drawn black). Red: above it (drawn white).")
        bounds = (lower, upper) if show_clipping else None
        frame = upscale_nearest(window_clipping_rgb(chosen.image, chosen.pixels, bounds),
                                fit_factor(*chosen.image.shape, DISPLAY_PIXELS))
        where = f", slice {chosen.slice_index + 1} of {scan.num_slices}" if chosen.slice_index is not None else ""
        st.image(jpeg_bytes(frame), output_format="JPEG", width="stretch",
                 caption=f"{chosen.name}{where}: window L {chosen.level:.6g} / W {chosen.width:.6g}")
        if chosen.rgb is not None:
            st.image(jpeg_bytes(upscale_nearest(chosen.rgb, fit_factor(*chosen.rgb.shape[:2], DISPLAY_PIXELS))),
                     output_format="JPEG", width="stretch",
                     caption="The original colours. The lessons use its brightness (0.299 R + 0.587 G + 0.114 B), "
                             "the grey image above.")
    with facts_column:
        units = scan.units
        unit_text = f" {units}" if units else ""
        st.markdown(
            f"**Window.** Level L = {chosen.level:.6g}, width W = {chosen.width:.6g}{unit_text}. "
            f"Values at or below L - W/2 = **{lower:.6g}** are black, values at or above L + W/2 = "
            f"**{upper:.6g}** are white, and the values in between are spread evenly over the greys: "
            f"{_shift_formula(lower)} / {chosen.width:.6g}."
        )
        if scan.units == "HU":
            explain_caption("Hounsfield units: water is 0, air about -1000, fat about -100, soft tissue 20 to 80, "
                            "bone several hundred and more. A CT window preset picks the range one tissue lives in.")
        st.vega_lite_chart(*histogram_chart(*value_histogram(chosen.pixels, bins=80), lower, upper,
                                            f"Value ({units})" if units else "Value"), width="stretch")
        st.caption("How many pixels of the slice have each value (square-root scale, so that small counts stay "
                   "visible); the shaded band is the window.")
        st.subheader("What the file says (safe fields only)")
        st.table(pd.DataFrame({"Attribute": list(scan.info), "Value": list(scan.info.values())}),
                 hide_index=True)
        if chosen.is_upload:
            st.caption("Only a fixed list of image attributes is ever shown; names, IDs, dates, institutions, "
                       "descriptions and private tags are never read out.")


def _shift_formula(lower):
    """'(x - 40)' or '(x + 1350)': the numerator of the window formula, without a double minus."""
    return f"(x - {lower:.6g})" if lower >= 0 else f"(x + {-lower:.6g})"


# ---------------------------------------------------------------------------------------------------
# Preprocessing and the network input


@st.fragment
def preprocessing_section(chosen):
    st.header("2. Preprocessing")
    explain("Switch each step on to see what it does. They run in this order, on the values in "
            "physical units; the normalisation comes last.")
    rows, columns = chosen.pixels.shape
    crop_column, resize_column, normalise_column = st.columns(3, gap="medium")
    with crop_column:
        use_roi = st.toggle("Region of interest (crop)", key="input_use_roi",
                            help="Keep only the part of the image the task is about.")
        roi = None
        if use_roi:
            default_top, default_left, default_side, _ = centre_square((rows, columns), min(rows, columns) // 2)
            side = st.slider("Region size (pixels)", min(8, rows, columns), min(rows, columns),
                             value=default_side, key=f"input_roi_size_{rows}x{columns}")
            top = st.slider("Top row", 0, rows - side, value=min(default_top, rows - side), key=f"input_roi_top_{rows}x{columns}")
            left = st.slider("Left column", 0, columns - side, value=min(default_left, columns - side),
                             key=f"input_roi_left_{rows}x{columns}")
            roi = (top, left, side, side)
    with resize_column:
        use_resize = st.toggle("Resize", key="input_use_resize",
                               help="Networks take a fixed input size, such as 64 x 64 or 224 x 224.")
        output_shape, anti_aliasing = None, True
        if use_resize:
            size = st.select_slider("Network input size", INPUT_SIZES, value=64, key="input_size")
            anti_aliasing = st.toggle("Anti-aliasing", value=True, key="input_anti_aliasing",
                                      help="Blur slightly before shrinking, so fine patterns do not turn into "
                                           "false coarse ones (aliasing).")
            output_shape = (size, size)
    with normalise_column:
        method = st.radio("Normalisation", NORMALISATIONS, key="input_normalisation", horizontal=True,
                          help="How the values become the numbers the network is trained on.")
        st.caption(_NORMALISATION_HELP[method])

    steps = run_pipeline(chosen.pixels, roi=roi, output_shape=output_shape, anti_aliasing=anti_aliasing,
                         method=method, level=chosen.level, width=chosen.width)
    step_columns = st.columns(max(len(steps), 4))
    for column, step in zip(step_columns, steps):
        with column:
            is_last = step is steps[-1]
            values = step.values
            if is_last:
                low, high = (0.0, 1.0) if method != "z-score" else (float(values.min()), float(values.max()))
                frame = grey_rgb(values, low, high)
            else:
                frame = grey_rgb(np.clip((values - (chosen.level - chosen.width / 2)) / chosen.width, 0, 1))
                if step is steps[0] and roi is not None:
                    outline(frame, roi)
            st.image(jpeg_bytes(upscale_nearest(frame, fit_factor(*frame.shape[:2], DISPLAY_PIXELS // 2))),
                     output_format="JPEG", width="stretch",
                     caption=f"{step.label}: {values.shape[0]} x {values.shape[1]}")
            st.caption(step.detail)

    network_input_section(steps[-1].values, method)


def _number(value):
    """Three significant digits; float noise around zero (1e-8 after z-scoring) shown as 0."""
    value = float(value)
    return "0" if abs(value) < 5e-6 else f"{value:.3g}"


def network_input_section(values, method):
    st.header("3. The network input")
    st.markdown("This array, and nothing else, is what the first convolution layer multiplies with its kernels.")
    # The shape ("640 x 603") is the longest value: in a fifth of the page it was cut to "640 x ...".
    shape_column, low_column, high_column, mean_column, spread_column = st.columns([5, 3, 3, 3, 3])
    shape_column.metric("Shape", f"{values.shape[0]} x {values.shape[1]}", help="rows x columns; one channel, float32")
    low_column.metric("Minimum", _number(values.min()))
    high_column.metric("Maximum", _number(values.max()))
    mean_column.metric("Mean", _number(values.mean()))
    spread_column.metric("Standard deviation", _number(values.std()))
    # Six columns of numbers and their row numbers need 380 pixels: more than half the page at 1280.
    histogram_column, numbers_column = st.columns([2, 3], gap="large")
    with histogram_column:
        st.vega_lite_chart(*histogram_chart(*value_histogram(values, bins=50),
                                            title=f"Network input value ({method})"), width="stretch")
        st.caption("How many values of the array fall in each bin (square-root scale).")
    with numbers_column:
        centre_rows, centre_columns = values.shape[0] // 2, values.shape[1] // 2
        top, left = max(centre_rows - 3, 0), max(centre_columns - 3, 0)
        block = values[top:top + 6, left:left + 6]
        st.markdown(f"The numbers at the centre (rows {top}..{top + block.shape[0] - 1}, "
                    f"columns {left}..{left + block.shape[1] - 1}):")
        # An HTML table: it grows to hold every number, where the canvas grid kept the column widths of the
        # numbers it first showed and, beside the histogram, hid the last columns.
        st.table(fixed_decimals(pd.DataFrame(block, index=range(top, top + block.shape[0]),
                                             columns=[str(column) for column in range(left, left + block.shape[1])]),
                                3), hide_index=False)


main()
