"""Lesson "Volumes and video": slices and planes, a 3-D kernel voxel by voxel, why 3-D, 3-D pooling, clips.

Every number comes from kernels/ (conv3d, conv3d_trace, max_pool3d, the 3-D bank) through
lessons/volumes.py; drawing is viz/volumes.py; the voxel-by-voxel player runs in the browser
(views/components/step_player/, its volume player). views/volumes.py runs ``main()``: kept here, the
code is compiled once per process. The sections are tabs that run only while open.
"""

from __future__ import annotations

import dataclasses
import inspect
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from kernels import KERNEL_3D_DEPTHS, KERNEL_3D_SIZES, KERNELS_3D, conv3d, conv3d_trace, reference
from lessons import volumes
from lessons.links import Codec, Field, choice, integer, whole_numbers
from scans import apply_window, read_sample
from views import links
from views.caching import computed, drop_session_memos, session_memo
from views.components.picture import picture
from views.components.step_player import conv_payload, step_player, view_options
from views.exports import png_download
from views.notices import show_teaching_notice
from views.presenter import colour_scheme, explain, explain_caption, is_presenting
from views.scan_picker import choose_image
from viz.images import magnitude_percentile, png_bytes
from viz.volumes import map_panels, orthogonal_views, voxel_from_click

MEMO = "volumes"  # this page's results in views.caching.session_memo
PICKER = "volume"  # the sidebar picker's keys: this page opens on a volume, the others on a picture
DEFAULT_SAMPLE = "Chest CT volume"
CLIP_SAMPLE = "Echocardiogram clip"
SECTIONS = ("1. Slices and planes", "2. A 3-D kernel, voxel by voxel", "3. Why 3-D: ball or tube?",
            "4. 3-D pooling", "5. Video: 2-D + time")
SECTION_KEY = "vol3d_section"
SOURCES = ("From the 3-D bank", "Random", "Typed")
REGION_DEPTHS = (3, 4, 5, 6, 7)
REGION_SIDES = (4, 5, 6, 7, 8, 9, 10)
PADDINGS = {"valid": "none", "same": "same (zeros)"}
DEFAULTS = {"vol3d_source": SOURCES[0], "vol3d_kernel_name": "laplacian of gaussian", "vol3d_kernel_depth": 3,
            "vol3d_kernel_size": 3, "vol3d_seed": 1, "vol3d_region_depth": 4, "vol3d_region_side": 6,
            "vol3d_padding": "same", "vol3d_stages": 2, "vol3d_field_stages": 2}
PLANE_HEIGHT = 300  # pixels: the axial plane's height
_VOXEL_SOURCE = inspect.getsource(reference.conv3d_voxel)  # read once per process


# ---------------------------------------------------------------------------------------------------
# The working volume and what is computed on it (the cache rule of views/caching.py)


def _working(pixels, window):
    """The scan's voxels through the window, in [0, 1], each slice averaged down to the working size."""
    return volumes.working_volume(apply_window(pixels, *window))


def _volume_computed(task, chosen, parameters=()):
    """``task(scan pixels, (window, parameters))``: a sample's in the shared cache, an upload's in this session.

    Keyed by the scan and its window, not by the slice the picker shows: moving through the slices
    computes nothing again.
    """
    window = (float(chosen.level), float(chosen.width))
    if not chosen.is_upload:
        whole = dataclasses.replace(chosen, cache_key=f"{chosen.name}|level={window[0]:.6g}|width={window[1]:.6g}")
        return computed(task, whole, (window, parameters), data=chosen.scan.pixels)
    return session_memo(MEMO, task.__qualname__, (_volume_identity(chosen), parameters),
                        lambda: task(chosen.scan.pixels, (window, parameters)))


def _volume_identity(chosen):
    """Names the working volume exactly: the sample or this session's upload, and the window."""
    source = st.session_state.get(f"{PICKER}__upload_id") if chosen.is_upload else chosen.name
    return chosen.is_upload, source, float(chosen.level), float(chosen.width)


def _drop_upload_leftovers(chosen):
    """What this page made from an upload (working volume, traces, pictures) leaves the session with it.

    Run once the picker has chosen: after "Forget my upload", another scan, or another window, nothing
    computed from the earlier upload stays in this session's memory.
    """
    current = _volume_identity(chosen) if chosen.is_upload else None
    if st.session_state.get("vol3d__upload_of") != current:
        drop_session_memos(MEMO)
        st.session_state["vol3d__upload_of"] = current


def _working_task(pixels, parameters):
    window, _ = parameters
    return _working(pixels, window)


def _response_task(pixels, parameters):
    window, kernel_rows = parameters
    volume, _ = _working(pixels, window)
    return conv3d(volume, np.asarray(kernel_rows, dtype=np.float32), padding="same", padding_mode="replicate")


def _flat_deep_task(pixels, parameters):
    window, size = parameters
    volume, _ = _working(pixels, window)
    return volumes.flat_and_deep(volume, size)


def _stages_task(pixels, parameters):
    window, (kernel_rows, stages) = parameters
    volume, _ = _working(pixels, window)
    return volumes.run_stages(volume, np.asarray(kernel_rows, dtype=np.float32), stages)


def _sphere_and_tube_pictures(demo, which):
    """The ball and tube through the middle slice (``which`` 0) or from the side (1), with both answers (RGB)."""
    size = demo.deep_kernel.shape[1]
    titles = ["the volume: a ball (left) and a tube", f"2-D {size} x {size} Laplacian of Gaussian, slice by slice",
              f"3-D {size} x {size} x {size} Laplacian of Gaussian"]
    arrays = (demo.volume, demo.flat, demo.deep)
    if which == 0:
        rings = [(index, *centre[1:]) for index in (1, 2) for centre in (demo.sphere, demo.tube)]
        return map_panels([array[demo.sphere[0]] for array in arrays], titles, height=170, signed=[False, True, True],
                          marks=rings)
    return map_panels([array[:, demo.sphere[1], :][::-1] for array in arrays], titles, height=170,
                      signed=[False, True, True])


@st.cache_resource(show_spinner=False)
def _sphere_and_tube():
    """The synthetic ball and tube and their two pictures (PNG): the same for everyone, made once per process."""
    demo = volumes.sphere_and_tube()
    return demo, tuple(_png(_sphere_and_tube_pictures(demo, which)) for which in (0, 1))


def _clip_pictures(clip, which):
    """Five frames of a windowed clip (``which`` 0) or the frame differences that follow them (1), RGB."""
    frames = clip.shape[0]
    shown = np.linspace(0, frames - 2, min(5, frames - 1)).round().astype(int)
    if which == 0:
        return map_panels([clip[index] for index in shown], [f"frame {index + 1}" for index in shown], height=150,
                          signed=False)
    difference = volumes.frame_differences(clip)
    limit = magnitude_percentile(difference, 99.5) or 1.0
    return map_panels([difference[index] for index in shown],
                      [f"frame {index + 2} minus frame {index + 1}" for index in shown], height=150, limit=limit)


def _sample_clip_window():
    return apply_window(read_sample(CLIP_SAMPLE).pixels, *read_sample(CLIP_SAMPLE).default_window)


@st.cache_data(show_spinner=False)
def _sample_clip_pictures():
    """The sample clip's two pictures as PNG (shared: a shipped sample)."""
    clip = _sample_clip_window()
    return tuple(_png(_clip_pictures(clip, which)) for which in (0, 1))


def _step_arrives():
    # The step arrives in the player's result during the rerun; the callback only has to exist.
    pass


def _unbroken_shape(shape):
    """"48 x 128 x 128" with no-break spaces: a shape stays on one line when a picture's title wraps."""
    return "\u00a0x\u00a0".join(map(str, shape))


def _key_of(kernel):
    return tuple(tuple(map(tuple, plane)) for plane in np.asarray(kernel).tolist())


def _session_memo(name, key, compute):
    """``compute()`` remembered for one ``key`` per ``name`` in this session (traces, drawn pictures)."""
    return session_memo(MEMO, name, key, compute)


def _png(rgb):
    # Drawn and encoded once per setting: a rerun that changes nothing here sends the same bytes again.
    return png_bytes(rgb, compress_level=1)


def _figure(encoded, draw, *, caption, file_name):
    """A picture already encoded (``encoded``, PNG bytes) with its caption and a PNG button for slides.

    ``draw()`` makes the picture (RGB) again, only when the button is pressed.
    """
    st.image(encoded, caption=caption)
    png_download(draw, file_name, key=f"vol3d_{file_name.removesuffix('.png')}_png")


# ---------------------------------------------------------------------------------------------------
# The chosen voxel: the picker's slice, and a row and column; clicks on the planes move it


def _voxel(volume):
    """The chosen voxel. A newly chosen volume starts on the picker's slice (its middle one) at the brightest
    blob of that slice, so the kernel's first numbers show a structure rather than flat tissue; a lesson
    link's voxel is kept."""
    shape = volume.shape
    slice_index = int(st.session_state.get(f"{PICKER}__slice", shape[0] // 2))
    identity = (st.session_state.get(f"{PICKER}__identity"), tuple(shape))
    if st.session_state.pop("vol3d__voxel_from_link", False):
        st.session_state["vol3d__voxel_of"] = identity
    if st.session_state.get("vol3d__voxel_of") != identity:
        st.session_state["vol3d__voxel_of"] = identity
        row, col = volumes.blob_in_slice(volume, min(slice_index, shape[0] - 1))
        st.session_state["vol3d__row"], st.session_state["vol3d__col"] = row, col
    row, col = st.session_state["vol3d__row"], st.session_state["vol3d__col"]
    return volumes.clamp_voxel((slice_index, row, col), shape)


def _current_voxel(shape):
    """The voxel as the last run left it (a click's callback runs before the page)."""
    return volumes.clamp_voxel((st.session_state.get(f"{PICKER}__slice", shape[0] // 2),
                                st.session_state.get("vol3d__row", 0), st.session_state.get("vol3d__col", 0)), shape)


def _on_plane_click(layout, shape, click):
    # In the pixels of the three planes' picture.
    slice_index, row, col = voxel_from_click(layout, click["y"], click["x"], _current_voxel(shape), shape)
    st.session_state[f"{PICKER}__slice"] = slice_index  # the picker's own slice: its slider follows
    st.session_state["vol3d__row"], st.session_state["vol3d__col"] = row, col


def _planes(volume, voxel, aspect, *, memo, box=None, key, caption, clickable=False, signed=False):
    """The three planes through ``voxel``, drawn once per ``memo`` (what names ``volume``) and setting."""
    def draw():
        return orthogonal_views(volume, voxel, aspect=aspect, height=PLANE_HEIGHT, box=box, signed=signed)

    encoded, layout = _session_memo(key, (memo, voxel, aspect, box, signed),
                                    lambda: (lambda rgb, layout: (_png(rgb), layout))(*draw()))
    if clickable:
        picture(encoded, key=key, shape=layout.size, on_click=partial(_on_plane_click, layout, volume.shape),
                label="Three planes through the chosen voxel")
    else:
        st.image(encoded)
    st.caption(caption)
    png_download(lambda: draw()[0], f"{key.removeprefix('vol3d_')}.png", key=f"{key}_png")


# ---------------------------------------------------------------------------------------------------
# Kernel and region controls


def _init_state():
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault("vol3d_typed", volumes.kernel_text(KERNELS_3D["sobel z"].weights))
    st.session_state.setdefault(SECTION_KEY, SECTIONS[0])
    for key in DEFAULTS:  # keep choices while their widgets are on a closed tab (Streamlit drops those)
        st.session_state[key] = st.session_state[key]


def _kernel_ui():
    """The kernel's source and shape; returns the kernel (kd, kh, kw) float32, or None with a message shown."""
    source = st.radio("Kernel", SOURCES, key="vol3d_source", horizontal=True)
    if source == SOURCES[2]:
        text = st.text_area("Weights: numbers in rows, a blank line between slices", key="vol3d_typed", height=200)
        try:
            return volumes.parse_kernel(text)
        except ValueError as error:
            st.error(f"{error} The player keeps waiting for a kernel it can read.", icon=":material/error:")
            return None
    name_column, depth_column, size_column = st.columns([2, 1, 1])
    if source == SOURCES[0]:
        name = name_column.selectbox("3-D bank kernel", tuple(KERNELS_3D), key="vol3d_kernel_name")
        resizable = KERNELS_3D[name].resizable
    else:
        name_column.number_input("Seed", 0, 10**6, key="vol3d_seed", help="Another seed, other random weights.")
        resizable = True
    depth = depth_column.selectbox("Slices", KERNEL_3D_DEPTHS, key="vol3d_kernel_depth", disabled=not resizable)
    size = size_column.selectbox("Rows and columns", KERNEL_3D_SIZES[1:], key="vol3d_kernel_size",
                                 disabled=not resizable)
    if source == SOURCES[0]:
        st.caption(KERNELS_3D[name].description + ("" if resizable else " (a fixed shape)"))
        return volumes.bank_kernel(name, depth, size)
    return volumes.random_kernel(depth, size, int(st.session_state["vol3d_seed"]))


def _region_ui():
    depth_column, side_column, padding_column = st.columns(3)
    depth = depth_column.selectbox("Region: slices", REGION_DEPTHS, key="vol3d_region_depth")
    side = side_column.selectbox("Region: rows and columns", REGION_SIDES, key="vol3d_region_side")
    padding = padding_column.selectbox("Padding", tuple(PADDINGS), key="vol3d_padding", format_func=PADDINGS.get,
                                       help="None: the kernel stays inside the region, so the output is smaller. "
                                            "Same: a layer of zeros around the region (slices too), so the output "
                                            "keeps its size.")
    return depth, side, padding


# ---------------------------------------------------------------------------------------------------
# Sections


def _stack_picture(volume, slice_index):
    """Up to eight slices evenly through the volume, the chosen one among them: the stack a series is (RGB)."""
    shown = sorted(set(np.linspace(0, volume.shape[0] - 1, min(8, volume.shape[0])).round().astype(int))
                   | {slice_index})
    if len(shown) > 8:  # the chosen slice replaces the nearest of the evenly spaced ones
        nearest = min((index for index in shown if index != slice_index), key=lambda index: abs(index - slice_index))
        shown.remove(nearest)
    titles = [f"▶ slice {index + 1}" if index == slice_index else f"slice {index + 1}" for index in shown]
    return map_panels([volume[index] for index in shown], titles, height=110, signed=False)


def _planes_section(volume, voxel, aspect, chosen):
    explain("A CT or MR series is a stack of slices: a **volume** of voxels, each a small box of tissue. Three "
            "planes cut it through one voxel: **axial** (the slice as scanned), **coronal** (front view) and "
            "**sagittal** (side view). Click any plane to move the voxel; the sidebar's slider moves through "
            "the slices.")
    _planes(volume, voxel, aspect, memo=_volume_identity(chosen), key="vol3d_planes_click", clickable=True,
            caption=f"{chosen.name}: {volume.shape[0]} slices of {volume.shape[1]} x {volume.shape[2]} voxels. Cyan "
                    "lines cross at the chosen voxel; the side views are drawn to scale with the last slice at the "
                    "top.")
    def stack():
        return _stack_picture(volume, voxel[0])

    _figure(_session_memo("stack", (_volume_identity(chosen), voxel[0]), lambda: _png(stack())), stack,
            caption="The stack: slices evenly through the volume, ▶ the chosen one. A network for volumes reads "
                    "them together, not one at a time.", file_name="stack_of_slices.png")


def _kernel_section(volume, voxel, aspect, chosen, kernel):
    explain("A 3-D kernel is a small block of weights, several slices deep. At each position it covers a block "
            "of voxels: each voxel is multiplied by the weight over it, slice by slice; each kernel slice gives "
            "a sum, and the slices' sums plus the bias are one voxel of the output. Then the kernel moves on: "
            "along the row, down the rows, and then to the next slice.")
    depth, side, padding = _region_ui()
    if kernel is None:
        return
    bounds = volumes.region_bounds(volume.shape, voxel, depth, side)
    region = volume[tuple(slice(start, stop) for start, stop in bounds)]
    try:
        key = (_volume_identity(chosen), bounds, _key_of(kernel), padding)
        trace = _session_memo("trace", key, lambda: conv3d_trace(region, kernel, 0.0, padding=padding))
    except ValueError as error:
        st.error(f"This kernel does not fit the region: {str(error).rstrip('.')}. Choose a larger region, a "
                 "smaller kernel or padding “same”.", icon=":material/error:")
        return
    payload = _session_memo("payload", key, lambda: conv_payload(trace, titles={}, memory="volume"))
    front = trace.pad[0]
    first = bounds[0][0]
    unit = "frame" if volumes.is_clip(chosen.scan) else "slice"  # a clip's third axis is time
    slice_titles = [f"{unit} {first + index - front + 1}" if front <= index < front + region.shape[0] else "padding"
                    for index in range(trace.padded.shape[0])]
    titles = {"input": f"The region: {unit}s {first + 1}-{bounds[0][1]}, rows {bounds[1][0] + 1}-{bounds[1][1]}, "
                       f"columns {bounds[2][0] + 1}-{bounds[2][1]}"
                       + (", with zero padding (hatched)" if padding == "same" else "")
                       + ". Orange: the kernel's window on the slices it covers.",
              "output": f"The output volume ({' x '.join(map(str, trace.output.shape))}) filling in, voxel by "
                        "voxel, slice by slice.",
              "slices": slice_titles}
    st.markdown(f"A **{' x '.join(map(str, kernel.shape))}** kernel: **{kernel.size} multiplications** for each "
                f"output voxel, {trace.num_steps} voxels here.")
    view = view_options(presenting=is_presenting(), scheme=colour_scheme(), link_button=True,
                        initial_step=st.session_state.get("vol3d__initial_step", 0))
    result = step_player({**payload, "titles": titles}, key="vol3d_player", view=view, on_link_step=_step_arrives)
    if result is not None and result.get("link_step") is not None:
        # "Link this step": the only time the player tells the server its step; it goes into the link.
        st.session_state["vol3d__initial_step"] = int(result["link_step"])
        st.session_state["vol3d__link_step"] = int(result["link_step"]) + 1
    if st.session_state.get("vol3d__link_step", 0) > trace.num_steps:  # a link from a larger region
        st.session_state["vol3d__link_step"] = trace.num_steps
    explain_caption("Once you have clicked the player, the keyboard works too: right and left arrows step, the "
                    "space bar plays and pauses.")
    panel = st.expander("The code that computed this", key="vol3d_code_open", on_change="rerun")
    with panel:
        if panel.open:
            st.markdown("Each step of the player is `conv3d_voxel(padded, kernel, 0.0, out_slice, out_row, "
                        "out_col)` from kernels/reference.py: its products, the slices' sums and the value are "
                        "this function's numbers (tests check them against the fast `kernels.conv3d`).")
            st.code(_VOXEL_SOURCE, language="python")
    st.subheader("The same kernel over the whole volume")
    response = _volume_computed(_response_task, chosen, _key_of(kernel))
    box = tuple(bounds)
    _planes(response, voxel, aspect, memo=(_volume_identity(chosen), _key_of(kernel)), box=box,
            key="vol3d_response", signed=True,
            caption="kernels.conv3d over every voxel (same size, edges replicated): red positive, blue negative. "
                    "Orange: the region the player steps through.")


def _why_3d_section(volume, voxel, aspect, chosen):
    explain("A 2-D kernel sees one slice at a time. Cut through its middle, a ball and a tube look the same: a "
            "disc. The 2-D kernel answers both alike. A 3-D kernel also looks at the slices above and below: the "
            "ball ends there and the tube goes on, so it answers the ball more strongly. A nodule is ball-like, "
            "a vessel tube-like: one reason CT networks use 3-D kernels.")
    demo, pictures = _sphere_and_tube()
    size = demo.deep_kernel.shape[1]
    for which, (title, name) in enumerate((("Through the middle slice", "ball_and_tube_middle_slice.png"),
                                           ("Side view through both centres", "ball_and_tube_side_view.png"))):
        st.markdown(f"**{title}**")
        _figure(pictures[which], partial(_sphere_and_tube_pictures, demo, which), caption=None, file_name=name)
    # Numbers written out here: a pandas Styler cost some 40 ms of every rerun of this tab.
    answers = [("2-D, 1 x {0} x {0}", demo.flat), ("3-D, {0} x {0} x {0}", demo.deep)]
    st.table(pd.DataFrame({
        "kernel": [name.format(size) for name, _ in answers],
        "at the ball's centre": [f"{float(response[demo.sphere]):.4f}" for _, response in answers],
        "at the tube's centre": [f"{float(response[demo.tube]):.4f}" for _, response in answers],
        "ball / tube": [f"{float(response[demo.sphere]) / float(response[demo.tube]):.2f}" for _, response in answers],
    }), hide_index=True)
    st.caption(f"Both shapes have radius {2} voxels; green rings: the two centres. Colours: each map on its own "
               "scale; the numbers are kernels.conv3d's.")

    st.subheader("On this volume")
    if st.toggle("Show the 2-D and the 3-D kernel on the chosen volume", key="vol3d_flat_deep"):
        slice_index, row_index, _ = voxel

        def draw():
            flat, deep = _volume_computed(_flat_deep_task, chosen, 5)
            return map_panels([flat[slice_index], deep[slice_index], flat[:, row_index][::-1],
                               deep[:, row_index][::-1]], ["2-D, axial", "3-D, axial", "2-D, coronal", "3-D, coronal"],
                              height=230, aspect=[1.0, 1.0, aspect, aspect])

        _figure(_session_memo("flat and deep", (_volume_identity(chosen), slice_index, row_index), lambda: _png(draw())),
                draw, file_name="2d_and_3d_laplacian_of_gaussian.png",
                caption="The 5 x 5 Laplacian of Gaussian one slice deep and five slices deep, through the chosen "
                        "voxel. The 3-D one keeps round bright spots and fades long ones.")

    st.subheader("The field of a 3-D stage is a box across slices")
    stages = st.select_slider("Stages (3 x 3 x 3 convolution, then 2 x 2 x 2 max pooling)", options=[1, 2, 3],
                              key="vol3d_field_stages")
    if min(volume.shape) < 2 ** stages:
        st.info(f"This volume has {volume.shape[0]} slices: too few for {stages} poolings by 2.")
        return
    size_field, box = volumes.stage_field((3, 3, 3), stages, volume.shape, voxel)
    _planes(volume, voxel, aspect, memo=_volume_identity(chosen), box=box, key="vol3d_field",
            caption=f"Orange: the voxels one stage-{stages} voxel depends on, {size_field[0]} slices x "
                    f"{size_field[1]} x {size_field[2]} voxels (clipped at the volume's edge): slices "
                    f"{box[0][0] + 1}-{box[0][1]}.")


def _pooling_section(volume, chosen, kernel):
    explain("**3-D max pooling** keeps the largest of each 2 x 2 x 2 block of eight voxels: every side halves, "
            "so the volume keeps one voxel in eight, and the next convolution has an eighth of the work. A 3-D "
            "network is expensive: each output voxel of a 3 x 3 x 3 kernel costs 27 multiply-adds (a 3 x 3 "
            "kernel, 9), for every voxel of every slice.")
    if kernel is None:
        st.info("Choose a kernel in section 2 (the typed one has a mistake).")
        return
    stages = st.select_slider("Stages", options=[1, 2, 3], key="vol3d_stages")
    if min(volume.shape) < 2 ** stages:
        st.info(f"This volume has {volume.shape[0]} slices: too few for {stages} poolings by 2.")
        return
    rows = volumes.stage_table(volume.shape, kernel.shape, stages)
    st.table(pd.DataFrame({"layer": [row.layer for row in rows],
                           "slices x rows x columns": [" x ".join(map(str, row.shape)) for row in rows],
                           "voxels": [f"{row.voxels:,}" for row in rows],
                           "multiply-adds": [f"{row.multiply_adds:,}" for row in rows]}), hide_index=True)
    def draw():
        outputs = _volume_computed(_stages_task, chosen, (_key_of(kernel), stages))
        maps = [volume[volume.shape[0] // 2]] + [output[output.shape[0] // 2] for output in outputs]
        titles = [f"input {_unbroken_shape(volume.shape)}"]
        titles += [f"after stage {index + 1}: {_unbroken_shape(output.shape)}" for index, output in enumerate(outputs)]
        # True relative sizes: each pooling halves the picture's side, as it halves the volume's.
        heights = [max(24, round(260 * output.shape[1] / volume.shape[1])) for output in [volume, *outputs]]
        return map_panels(maps, titles, height=heights, signed=[False] + [True] * len(outputs))

    _figure(_session_memo("stages", (_volume_identity(chosen), _key_of(kernel), stages), lambda: _png(draw())), draw,
            caption="The middle slice of each stage's output, at true relative size: each pooling halves every "
                    "side. Red: what the kernel found (after ReLU, nothing is negative).",
            file_name="3d_stages_with_pooling.png")


def _video_section(chosen):
    explain("A clip is a stack of frames taken one after another: two axes of space and one of **time**. A 3-D "
            "kernel over a clip mixes neighbouring frames, so it can answer to motion. The simplest such kernel is "
            "two frames deep, -1 then +1: the next frame minus this one. Where nothing moved it gives 0; a wall "
            "or valve that moved leaves a red (brighter now) and blue (darker now) edge.")
    if volumes.is_clip(chosen.scan):
        name, frames = chosen.name, chosen.scan.num_slices

        def windowed():
            return apply_window(chosen.scan.pixels, chosen.level, chosen.width)

        pictures = _session_memo("clip", _volume_identity(chosen),
                                 lambda: tuple(_png(_clip_pictures(windowed(), which)) for which in (0, 1)))
    else:
        name, frames, windowed = CLIP_SAMPLE, read_sample(CLIP_SAMPLE).num_slices, _sample_clip_window
        pictures = _sample_clip_pictures()
        st.caption(f"{chosen.name}'s slices are in space, not time: this section shows the sample “{CLIP_SAMPLE}”. "
                   "Choose it (or upload a cine or ultrasound clip) to use it in the other sections too.")
    _figure(pictures[0], lambda: _clip_pictures(windowed(), 0), caption=f"{name}: {frames} frames.",
            file_name="clip_frames.png")
    _figure(pictures[1], lambda: _clip_pictures(windowed(), 1), file_name="clip_frame_differences.png",
            caption="The frame-difference kernel (2 x 1 x 1) over the clip, kernels.conv3d: what changed.")
    st.caption("Ultrasound speckle changes from frame to frame too, so the differences are grainy; the heart's "
               "walls and valves leave the larger coloured bands. In section 2 the “frame difference” kernel of "
               "the 3-D bank steps through the same arithmetic, voxel by voxel.")


# ---------------------------------------------------------------------------------------------------
# The page


def main():
    st.title("Volumes and video: kernels with depth")
    show_teaching_notice()
    link_values = links.opened(LINK_FIELDS, picker_key=PICKER)
    link_slot = st.container()
    chosen = choose_image(PICKER, default=DEFAULT_SAMPLE)
    _drop_upload_leftovers(chosen)
    _init_state()
    _apply_link(link_values)
    scan = chosen.scan
    if not scan.is_volume:
        st.info(f"“{chosen.name}” is a single image. This lesson needs a volume or a clip: choose “Chest CT "
                "volume”, “Head MR volume” or “Echocardiogram clip” in the sidebar, or upload a multi-frame DICOM "
                "file, or several slices of one series together.", icon=":material/view_in_ar:")
        _video_section_only(chosen)
        links.publish(LINK_FIELDS, _link_values(None), chosen, page="volumes", slot=link_slot,
                      defaults=_LINK_DEFAULTS)
        return
    volume, factor = _volume_computed(_working_task, chosen)
    voxel = _voxel(volume)
    aspect = volumes.slice_aspect(scan, factor)
    note = f", each slice averaged down {factor} x {factor}" if factor > 1 else ""
    st.caption(f"Working volume: {' x '.join(map(str, volume.shape))} voxels (slices x rows x columns){note}. "
               f"Chosen voxel: slice {voxel[0] + 1}, row {voxel[1] + 1}, column {voxel[2] + 1}.")
    tabs = dict(zip(SECTIONS, st.tabs(SECTIONS, key=SECTION_KEY, on_change="rerun")))
    kernel = None
    with tabs[SECTIONS[1]]:
        if tabs[SECTIONS[1]].open:
            kernel = _kernel_ui()
            _kernel_section(volume, voxel, aspect, chosen, kernel)
    with tabs[SECTIONS[0]]:
        if tabs[SECTIONS[0]].open:
            _planes_section(volume, voxel, aspect, chosen)
    with tabs[SECTIONS[2]]:
        if tabs[SECTIONS[2]].open:
            _why_3d_section(volume, voxel, aspect, chosen)
    with tabs[SECTIONS[3]]:
        if tabs[SECTIONS[3]].open:
            _pooling_section(volume, chosen, _chosen_kernel())
    with tabs[SECTIONS[4]]:
        if tabs[SECTIONS[4]].open:
            _video_section(chosen)
    # Last: the player's "Link this step" arrives during this run.
    links.publish(LINK_FIELDS, _link_values(voxel), chosen, page="volumes", slot=link_slot, defaults=_LINK_DEFAULTS)


def _chosen_kernel():
    """The kernel section 2 has chosen, from its remembered choices (its widgets are on a closed tab)."""
    source = st.session_state["vol3d_source"]
    if source == SOURCES[2]:
        try:
            return volumes.parse_kernel(st.session_state["vol3d_typed"])
        except ValueError:
            return None
    depth, size = st.session_state["vol3d_kernel_depth"], st.session_state["vol3d_kernel_size"]
    if source == SOURCES[0]:
        return volumes.bank_kernel(st.session_state["vol3d_kernel_name"], depth, size)
    return volumes.random_kernel(depth, size, int(st.session_state["vol3d_seed"]))


def _video_section_only(chosen):
    """A single image chosen: the clip section still works, on the sample clip."""
    with st.expander(SECTIONS[4]):
        _video_section(chosen)


# ---------------------------------------------------------------------------------------------------
# The lesson's link (views/links.py): the voxel (its slice travels with the picker), the open section, the
# kernel, the region and the stages


def _typed_codec():
    def parse(text):
        volumes.parse_kernel(text)  # refuse what the page could not use, with its message
        return text
    return Codec(parse, str)


_LINK_SECTIONS = dict(zip(("planes", "kernel", "why3d", "pooling", "video"), SECTIONS))
_LINK_SOURCES = dict(zip(("bank", "random", "typed"), SOURCES))
LINK_FIELDS = (
    Field("section", choice(_LINK_SECTIONS)),
    Field("voxel", whole_numbers(2, 1)),  # row, column, 1-based as the page writes them
    Field("ksrc", choice(_LINK_SOURCES)),
    Field("kname", choice(tuple(KERNELS_3D))),
    Field("kdepth", choice({str(depth): depth for depth in KERNEL_3D_DEPTHS})),
    Field("ksize", choice({str(size): size for size in KERNEL_3D_SIZES[1:]})),
    Field("seed", integer(0, 10**6)),
    Field("typed", _typed_codec()),
    Field("region", whole_numbers(2, 1, 100)),  # slices, rows and columns
    Field("padding", choice(tuple(PADDINGS))),
    Field("stages", integer(1, 3)),
    Field("fstages", integer(1, 3)),
    Field("step", integer(1, 10**6)),  # 1-based, as the player shows it
)
_LINK_KEYS = {"section": SECTION_KEY, "ksrc": "vol3d_source", "kname": "vol3d_kernel_name",
              "kdepth": "vol3d_kernel_depth", "ksize": "vol3d_kernel_size", "seed": "vol3d_seed",
              "typed": "vol3d_typed", "padding": "vol3d_padding", "stages": "vol3d_stages",
              "fstages": "vol3d_field_stages"}
_LINK_DEFAULTS = {**{name: DEFAULTS[key] for name, key in _LINK_KEYS.items() if key in DEFAULTS},
                  "section": SECTIONS[0],
                  "region": (DEFAULTS["vol3d_region_depth"], DEFAULTS["vol3d_region_side"])}


def _link_values(voxel):  # voxel None: a single image is shown, no volume
    """The lesson's state as LINK_FIELDS values; the typed kernel only while it is the one in use."""
    values = {name: st.session_state[key] for name, key in _LINK_KEYS.items()}
    if values["ksrc"] != SOURCES[2]:
        values["typed"] = None
    values["voxel"] = None if voxel is None else (voxel[1] + 1, voxel[2] + 1)
    values["region"] = (st.session_state["vol3d_region_depth"], st.session_state["vol3d_region_side"])
    values["step"] = st.session_state.get("vol3d__link_step")
    return values


def _nearest(options, value):
    return min(options, key=lambda option: abs(option - value))


def _apply_link(values):
    """Set the lesson from a link's values (after _init_state, before any widget)."""
    for name, key in _LINK_KEYS.items():
        if name in values:
            st.session_state[key] = values[name]
    if "region" in values:
        depth, side = values["region"]
        st.session_state["vol3d_region_depth"] = _nearest(REGION_DEPTHS, depth)
        st.session_state["vol3d_region_side"] = _nearest(REGION_SIDES, side)
    if "step" in values:
        st.session_state["vol3d__initial_step"] = values["step"] - 1
        st.session_state["vol3d__link_step"] = values["step"]
    if "voxel" in values:
        row, col = values["voxel"]
        st.session_state["vol3d__row"], st.session_state["vol3d__col"] = row - 1, col - 1
        st.session_state["vol3d__voxel_from_link"] = True
