"""Lesson page "Does this patch contain a lesion?": a small trained CNN, opened up layer by layer."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from kernels import conv2d
from lessons.classifier import (LESION_EDGES, MAP_STRIDE, fit_image, image_with_lesion, probability_map,
                                probability_on_image, window_for_click)
from lessons.links import Field, whole_numbers
from model import load
from model.data import CONTRAST_RANGE, RADIUS_RANGE
from model.network import anatomy_window
from views import links
from views.caching import computed, image_key, session_memo
from views.components.picture import picture
from views.exports import png_download
from views.notices import show_teaching_notice
from views.presenter import explain, explain_caption
from views.scan_picker import choose_image
from viz.images import grey_rgb, jpeg_bytes, png_bytes, upscale_nearest
from viz.network import (
    cam_overlay,
    contribution_bars,
    filtered_scan,
    kernel_bank,
    kernel_numbers,
    layer_maps,
    lesion_outline,
    outline_window,
    probability_bars,
    signed_map,
    window_on_image,
)

PATCH_ZOOM = 4  # the 64 x 64 input is shown 4x enlarged
MODEL_NOTICE = (
    "**This classifier was trained on synthetic lesions inserted into real scans, for teaching.** "
    "It has never seen a real lesion; it is not a diagnostic tool and its answers are not findings."
)
SOFTMAX_SENTENCE = (
    "**Softmax** turns the two scores into probabilities: it takes e to the power of each score and divides "
    "by their sum, so both shares are positive, they add up to 100 %, and the larger score gets the larger "
    "share. Only the difference between the two scores matters."
)
POOLED_CHART = {
    "mark": {"type": "bar"},
    "encoding": {"x": {"field": "channel", "type": "ordinal", "sort": None, "title": "channel of the last stage"},
                 "y": {"field": "pooled value", "type": "quantitative", "title": "dense input"}},
}
POLARITIES = {"auto": "whichever fits", "brighter": "brighter", "darker": "darker"}
EDGES = {"soft": "soft, like most training lesions", "crisp": "crisp, like none of them"}


# ------------------------------------------------------------------------------- image and state


def _image_identity(chosen, image):
    return (chosen.name, chosen.slice_index, image.shape, chosen.is_upload)


def _reset_state(image):
    # Not the centre: on the chest radiograph that is the flat mediastinum, a window that looks blank.
    st.session_state["clf_top"], st.session_state["clf_left"] = anatomy_window(image, load().input_size)
    st.session_state["clf_lesion"] = None
    st.session_state["clf_lesion_count"] = 0


def _clamp_window(image_shape):
    size = load().input_size
    st.session_state["clf_top"] = int(np.clip(st.session_state["clf_top"], 0, image_shape[0] - size))
    st.session_state["clf_left"] = int(np.clip(st.session_state["clf_left"], 0, image_shape[1] - size))


def _on_click(image_shape, event):
    """A click centres the window on the clicked pixel."""
    st.session_state["clf_top"], st.session_state["clf_left"] = window_for_click(
        event, image_shape, load().input_size)


def _add_lesion():
    """Remember a lesion at the window's centre; its pixels are made on every run from these numbers."""
    size = load().input_size
    st.session_state["clf_lesion_count"] += 1
    st.session_state["clf_lesion"] = {
        "row": st.session_state["clf_top"] + size / 2 - 0.5,
        "col": st.session_state["clf_left"] + size / 2 - 0.5,
        "radius": float(st.session_state["clf_radius"]),
        "contrast": float(st.session_state["clf_contrast"]),
        "polarity": st.session_state["clf_polarity"],
        "edge": st.session_state["clf_edge"],
        "seed": st.session_state["clf_lesion_count"],
    }


def _remove_lesion():
    st.session_state["clf_lesion"] = None


# ------------------------------------------------------------------------------- sections


def _window_section(image, chosen):
    classifier = load()
    size = classifier.input_size
    st.subheader("1. Place the window")
    explain(
        f"The network reads one **{size} x {size}** window of the image at a time. It opens on busy anatomy "
        "near the middle of the image; click on the image to move the window there. Then add a synthetic "
        "lesion inside it and watch the answer change, or move the window away from the lesion again."
    )
    scale = max(1, 520 // max(image.shape))
    image_column, control_column = st.columns([3, 2], gap="large")
    top, left = st.session_state["clf_top"], st.session_state["clf_left"]
    with image_column:
        picture(window_on_image(image, top, left, size, scale=scale), key="clf_click",
                on_click=partial(_on_click, image.shape), label="The image with the network's window")
        st.caption(f"{chosen.name}: {image.shape[0]} x {image.shape[1]} pixels. The orange square is the window.")
    with control_column:
        row_column, col_column = st.columns(2)
        row_column.number_input("Window top row", 0, image.shape[0] - size, key="clf_top", step=8)
        col_column.number_input("Window left column", 0, image.shape[1] - size, key="clf_left", step=8)
        st.markdown("**A synthetic lesion** (a blob with the scan's own noise, from the training data's generator)")
        st.slider("Radius (pixels)", float(RADIUS_RANGE[0]), float(RADIUS_RANGE[1]), 7.0, 0.5, key="clf_radius")
        st.slider("Contrast (on the 0-1 grey scale)", float(CONTRAST_RANGE[0]), float(CONTRAST_RANGE[1]), 0.2, 0.01,
                  key="clf_contrast")
        st.radio("Lesion is", tuple(POLARITIES), key="clf_polarity", format_func=POLARITIES.get, horizontal=True)
        st.radio("Edge", tuple(LESION_EDGES), key="clf_edge", format_func=EDGES.get, horizontal=True,
                 help="The network learned lesions whose edges fade out over 0.25-2 pixels (most over 0.5-2). "
                      "A crisper disc is as plain to the eye, but it looks more like the sharp edges of anatomy "
                      "the network learned to ignore: it is less sure of it, and misses some. An earlier network, "
                      "which never saw an edge under 0.5 pixels, missed most. What a network knows is what it "
                      "was shown.")
        st.button("Add a synthetic lesion here", key="clf_add", on_click=_add_lesion, type="primary",
                  icon=":material/add_circle:", width="stretch")
        st.button("Remove the lesion", key="clf_remove", on_click=_remove_lesion, width="stretch",
                  disabled=st.session_state["clf_lesion"] is None)
        lesion = st.session_state["clf_lesion"]
        if lesion is not None:
            st.caption(f"Lesion at row {lesion['row']:.0f}, column {lesion['col']:.0f}, radius {lesion['radius']:.1f} px, "
                       f"contrast {lesion['contrast']:.2f} ({lesion['polarity']}), {lesion['edge']} edge. "
                       "It stays there when the window moves.")


def _answer_section(patch, outputs, mask_patch):
    classifier = load()
    probabilities = classifier.predict_proba(patch)[0]
    st.subheader("2. The network's input and its answer")
    input_column, answer_column = st.columns([2, 3], gap="large")
    with input_column:
        picture = upscale_nearest(grey_rgb(patch), PATCH_ZOOM)
        if mask_patch is not None and mask_patch.any():
            picture = lesion_outline(picture, mask_patch, scale=PATCH_ZOOM)
        st.image(jpeg_bytes(picture), output_format="JPEG", width="stretch",
                 caption="The input: the window's 64 x 64 grey values in [0, 1]"
                 + (" (green line: where the synthetic lesion is)" if mask_patch is not None and mask_patch.any() else ""))
    with answer_column:
        st.image(jpeg_bytes(probability_bars(probabilities, classifier.class_names), sharp_text=True),
                 output_format="JPEG", width="stretch")
        verdict = "a lesion" if probabilities[1] > 0.5 else "no lesion"
        st.markdown(f"The network answers **{verdict}** (lesion probability {100 * probabilities[1]:.1f} %).")
        if classifier.views > 1:
            explain(
                f"A lesion is a lesion whichever way up the window is, and brighter or darker, so the answer is "
                f"the mean over the window and its {classifier.views - 1} copies: four quarter turns, each also "
                f"mirrored, and those eight again with black and white swapped (as T1 and T2 show fat and fluid "
                f"the other way round). The network's answers to them differ a little, and their mean tells "
                f"lesions from clear windows better on scans it never saw. The layers below show the window as "
                f"it is; from it alone the network says {100 * outputs[-1].values[1]:.1f} %."
            )
        st.markdown(SOFTMAX_SENTENCE)


def _layers_section(outputs):
    st.subheader("3. Inside the network, layer by layer")
    architecture = load().architecture
    stages = len(architecture.channels)
    by_name = {output.name: output for output in outputs}
    labels = {stage: f"Stage {stage}: {architecture.channels[stage - 1]} kernels of "
                     f"{architecture.kernel_sizes[stage - 1]} x {architecture.kernel_sizes[stage - 1]}"
              for stage in range(1, stages + 1)}
    stage = st.radio("Stage", tuple(labels), key="clf_stage", format_func=labels.get, horizontal=True)
    explain(
        "Each stage convolves its input with its kernels (one feature map per kernel; red positive, blue "
        "negative), ReLU sets the negative values to zero, and max pooling keeps the largest value of each "
        "2 x 2 block, so the maps halve in size while each value sees a larger part of the patch."
    )
    for name, what in ((f"conv{stage}", "after the convolution (plus bias)"),
                       (f"relu{stage}", "after ReLU (negative values set to zero)"),
                       (f"pool{stage}", "after 2 x 2 max pooling")):
        if name not in by_name:
            continue
        values = by_name[name].values
        st.markdown(f"**{name}**: {len(values)} maps of {values.shape[1]} x {values.shape[2]}, {what}")
        tile = int(np.clip(values.shape[1] * 3, 72, 160))
        maps_picture = layer_maps(values, name, tile=tile, columns=8)
        st.image(jpeg_bytes(maps_picture, sharp_text=True), output_format="JPEG", width="stretch")
        png_download(maps_picture, f"classifier_{name}_maps.png", key=f"clf_{name}_png")


def _kernels_section(image, identity):
    """``identity`` names ``image`` (scan, window setting, lesion): its pictures are kept under it, so a
    click elsewhere on the page does not draw them again."""
    classifier = load()
    kernels = classifier.first_layer_kernels()
    biases = classifier.network.layer("conv1").params["bias"]
    st.subheader("4. What the first layer learned")
    explain(
        f"The {len(kernels)} kernels of the first layer, as training left them. They started as "
        "centre-surround blob detectors (a bright or dark spot in a ring of the opposite sign); "
        "backpropagation reshaped them. Their weights add up to zero, so a flat region gives zero "
        "whatever its brightness: they respond to differences, not to the window setting."
    )
    bank_picture = partial(kernel_bank, kernels, tile=100, columns=8)
    st.image(session_memo("classifier", "kernel bank", (), lambda: png_bytes(bank_picture())), width="stretch")
    png_download(bank_picture, "classifier_first_layer_kernels.png", key="clf_bank_png")
    labels = {index: f"kernel #{index + 1}" for index in range(len(kernels))}
    chosen = st.selectbox("Kernel to look at", tuple(labels), key="clf_kernel", format_func=labels.get)
    numbers_column, applied_column = st.columns([2, 3], gap="large")
    with numbers_column:
        st.image(session_memo("classifier", "kernel numbers", chosen,
                              lambda: png_bytes(kernel_numbers(kernels[chosen], cell=64))), width="stretch",
                 caption=f"Its weights (bias {biases[chosen]:+.3f}); sum {kernels[chosen].sum():+.4f}")
    with applied_column:
        def response_picture():
            return filtered_scan(conv2d(image, kernels[chosen], float(biases[chosen]), padding="same",
                                        padding_mode="reflect"))

        st.image(session_memo("classifier", "kernel response", (identity, chosen),
                              lambda: jpeg_bytes(response_picture())), width="stretch",
                 caption="The same kernel applied to the whole image (red positive, blue negative): what this "
                         "first-layer channel sees everywhere, not just in the window.")
        png_download(response_picture, f"classifier_kernel_{chosen + 1}_feature_map.png", key="clf_response_png")


def _decision_section(outputs):
    classifier = load()
    by_name = {output.name: output for output in outputs}
    pooled = by_name["global_pool"].values
    dense = classifier.network.layer("dense").params
    evidence = dense["weight"][:, 1] - dense["weight"][:, 0]
    st.subheader("5. From maps to an answer: pooling, the dense layer, softmax")
    how = "largest" if classifier.architecture.global_pool == "max" else "mean"
    explain(
        f"Global pooling keeps one number per channel of the last stage: the map's **{how}** value. "
        f"These {len(pooled)} numbers are the dense layer's inputs. The dense layer multiplies each by a "
        "weight per class and adds them up; below, each bar is one channel's push towards \"lesion\" "
        "(its value times the difference of its two weights)."
    )
    inputs_column, sum_column = st.columns(2, gap="large")
    with inputs_column:
        # A Vega-Lite spec of our own: st.bar_chart builds it with Altair and validates it against the
        # schema on every run, about a tenth of a click's time on this page.
        channels = [f"#{index + 1:02d}" for index in range(len(pooled))]
        st.vega_lite_chart(pd.DataFrame({"channel": channels, "pooled value": pooled}), POOLED_CHART, height=260,
                           width="stretch")
    with sum_column:
        st.image(jpeg_bytes(contribution_bars(pooled * evidence, float(dense["bias"][1] - dense["bias"][0]), top=8),
                            sharp_text=True), output_format="JPEG", width="stretch")
    logits = by_name["dense"].values
    st.markdown(f"Scores of the window as it is: no lesion {logits[0]:+.3f}, lesion {logits[1]:+.3f}. "
                + SOFTMAX_SENTENCE)


def _cam_section(image, patch, top, left, mask_patch):
    classifier = load()
    size = classifier.input_size
    cam_small, _ = classifier.cam_features(patch)
    cam = classifier.cam(patch)
    st.subheader("6. Where: the class activation map")
    exact = ("With global max pooling the lesion score is the sum, over the channels, of each channel's "
             "weight difference times its value at its own strongest position; the map adds those same "
             "weighted maps at every position, so at the winning positions it is exactly what the score is "
             "made of, and elsewhere it shows what else the channels responded to.")
    if classifier.architecture.global_pool == "avg":
        exact = ("With global average pooling the lesion score is exactly the mean of this map plus a bias: "
                 "every position's share is visible.")
    taught = ""
    if float(classifier.metadata.get("localisation_weight", "0")) > 0:
        taught = (" In training the map was also told where each synthetic lesion was: a second loss rewarded "
                  "it for being highest on the lesion's blocks, so its peak is meant to sit on the lesion.")
    explain("The class activation map weights each last-stage map by how much its channel votes for "
            "\"lesion\" and adds them up: red where the network found evidence for a lesion, blue where "
            "the evidence says \"no lesion\". " + exact + taught)
    map_column, patch_column, image_column = st.columns(3, gap="medium")
    with map_column:
        step = classifier.architecture.stride
        cam_picture = signed_map(cam_small)
        st.image(jpeg_bytes(cam_picture), output_format="JPEG", width="stretch",
                 caption=f"The map itself: {cam_small.shape[0]} x {cam_small.shape[1]} values, one per "
                         f"{step} x {step} block of the window (red: lesion, blue: no lesion).")
        png_download(cam_picture, "class_activation_map.png", key="clf_cam_png")
    with patch_column:
        picture = cam_overlay(patch, cam, scale=PATCH_ZOOM)
        caption = "Where the map is highest (brightest), smoothed to the window's pixels, over the input."
        if mask_patch is not None and mask_patch.any():
            picture = lesion_outline(picture, mask_patch, scale=PATCH_ZOOM)
            caption += " Green line: the synthetic lesion."
        st.image(jpeg_bytes(picture), output_format="JPEG", width="stretch", caption=caption)
        png_download(picture, "class_activation_map_on_the_window.png", key="clf_cam_window_png")
    with image_column:
        scale = max(1, 520 // max(image.shape))
        heat = np.zeros(image.shape, dtype=np.float32)
        heat[top:top + size, left:left + size] = cam
        window = np.zeros(image.shape, dtype=bool)
        window[top:top + size, left:left + size] = True
        whole_picture = outline_window(cam_overlay(image, heat, scale=scale, where=window), top, left, size,
                                       scale=scale)
        st.image(jpeg_bytes(whole_picture), output_format="JPEG", width="stretch",
                 caption="The same, placed on the whole image inside the window.")
        png_download(whole_picture, "class_activation_map_on_the_image.png", key="clf_cam_image_png")


def _map_section(image, chosen, lesion_key):
    st.subheader("7. Slide the window over the whole image")
    explain(
        f"The same network, applied to every window position {MAP_STRIDE} pixels apart: each place gets the "
        "lesion probability of the window centred nearest to it. Clear below 50 %, then heat. Each window is "
        "read once, as it is (the sixteen turned, mirrored and inverted views would take sixteen times as long), so the map "
        "can differ a little from the answer above for the same window."
    )
    if not st.toggle("Compute the lesion-probability map", key="clf_map"):
        return
    probabilities, tops, lefts = computed(probability_map, chosen, lesion_key, data=image,
                                          spinner="Sliding the window over the whole image ...")
    windows = f"{probabilities.size} window" + ("s" if probabilities.size > 1 else "")
    map_picture = probability_on_image(image, probabilities, tops, lefts, 520)
    png_download(map_picture, "lesion_probability_map.png", key="clf_probability_png")
    st.image(jpeg_bytes(map_picture), output_format="JPEG", width="stretch",
             caption=f"{windows}; highest lesion probability {100 * probabilities.max():.1f} %.")
    explain_caption("Busy anatomy (bone edges, vessels seen end-on, bowel, kidneys) can look like a blob to a "
                    "network trained only on synthetic lesions: expect some heat where there is no lesion.")


@st.fragment
def _lesson(chosen, base_image):
    classifier = load()
    size = classifier.input_size
    link_slot = st.container()
    if st.session_state.get("clf_identity") != _image_identity(chosen, base_image):
        _reset_state(base_image)
        st.session_state["clf_identity"] = _image_identity(chosen, base_image)
    link_values = st.session_state.pop("clf__link", {})
    if "window" in link_values:
        st.session_state["clf_top"], st.session_state["clf_left"] = link_values["window"]
    _clamp_window(base_image.shape)
    lesion = st.session_state["clf_lesion"]
    image, mask = image_with_lesion(base_image, lesion)
    _window_section(image, chosen)
    top, left = st.session_state["clf_top"], st.session_state["clf_left"]
    links.publish(LINK_FIELDS, {"window": (top, left)}, chosen, page="classifier", slot=link_slot)
    patch = np.ascontiguousarray(image[top:top + size, left:left + size])
    mask_patch = mask[top:top + size, left:left + size] if mask is not None else None
    outputs = classifier.activations(patch)
    _answer_section(patch, outputs, mask_patch)
    _layers_section(outputs)
    lesion_key = None if lesion is None else tuple(sorted(lesion.items()))
    _kernels_section(image, (image_key(chosen), lesion_key))
    _decision_section(outputs)
    _cam_section(image, patch, top, left, mask_patch)
    _map_section(image, chosen, lesion_key)


def main():
    st.title("Does this patch contain a lesion?")
    st.warning(MODEL_NOTICE, icon=":material/science:")
    show_teaching_notice()
    st.session_state["clf__link"] = links.opened(LINK_FIELDS)  # applied in _lesson, which knows the image
    chosen = choose_image()  # before the introduction: a refused upload is reported at the top
    explain(
        "A small convolutional network, trained here with ConvScope's own engine, answers one question about "
        "a 64 x 64 window of the image: is there a lesion in it? This page opens it up: the input, every "
        "layer's feature maps, the learned kernels, the weighted sum behind the answer, softmax, and where "
        "in the window the evidence lies."
    )
    _lesson(chosen, fit_image(chosen.image))


LINK_FIELDS = (Field("window", whole_numbers(2)),)  # the classifier's window: top row, left column


main()
