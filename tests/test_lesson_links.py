"""Lesson links: every lesson's state goes into the address and comes back the same in a fresh session.

The round trips set a lesson up through its state (as the widgets would), read the address the page
wrote, open that address in a new AppTest (a new browser session: nothing is shared but the address),
and compare the state and what the page shows. Tampered addresses must open the defaults with a note,
never an exception. lessons.links' codecs are also checked directly, with random text from hypothesis.
"""

import doctest
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st_
from streamlit.testing.v1 import AppTest

import lessons.links
from lessons.links import (Field, boolean, choice, decode, encode, grid, image_fields, integer, number, qr_matrix,
                           record, whole_number_list, whole_numbers)
from tests.apptest import APP_TIMEOUT_S, REPO_ROOT, open_tab, scan_uploader, step_players, students_link
from views.components.step_player import decode_array
from views.convolution_controls import KERNEL_GRID, stored_key
from views.convolution_lesson import ACTIVATIONS, LINK_FIELDS as CONV_FIELDS
from views.links import LINK_OPEN

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"


def _run(page, query=None):
    app = AppTest.from_file(str(REPO_ROOT / "views" / f"{page}.py"), default_timeout=APP_TIMEOUT_S)
    app.query_params.update(query or {})
    app.run()
    assert not app.exception, app.exception
    return app


def _notes(app):
    """The page's notes about the link it was opened with."""
    return "\n".join(warning.value for warning in app.warning if "this link" in warning.value)


# ---------------------------------------------------------------------------------------------------
# lessons.links on its own


def test_module_examples():
    assert doctest.testmod(lessons.links).failed == 0


def test_codecs_round_trip_exactly():
    fields = (Field("n", integer(-3, 7)), Field("x", number(-10, 10)), Field("b", boolean()),
              Field("c", choice({"one": 1, "two": 2})), Field("w", whole_numbers(3)),
              Field("k", grid(9, 100.0)), Field("l", whole_number_list(0, 9, at_most=3)),
              Field("r", record((("a", integer(0, 5)), ("b", choice(("p", "q")))), separator=",")))
    kernel = np.array([[0.1, -1 / 3, 1e-7], [2.5, -0.0, 99.9]], dtype=np.float32)
    values = {"n": -3, "x": 0.1 + 0.2, "b": True, "c": 2, "w": (0, 17, 5), "k": kernel, "l": (4, 0),
              "r": {"a": 5, "b": "q"}}
    params = encode(fields, values)
    assert params["k"] == "0.1,-0.33333334,0.0000001;2.5,-0,99.9"
    back, notes = decode(fields, params)
    assert notes == []
    np.testing.assert_array_equal(back.pop("k"), kernel)  # float32, bit for bit
    assert back == {name: value for name, value in values.items() if name != "k"}


@pytest.mark.parametrize("name, text, reason", [
    ("stride", "0", "from 1 to 4"), ("stride", "2.5", "whole number"), ("stride", "1e9", "whole number"),
    ("bias", "nan", "not a number"), ("bias", "inf", "not a number"), ("bias", "11", "from -10 to 10"),
    ("k", "1,2;3", "same number"), ("k", "1," * 20 + "1", "1 to 9"), ("k", "1,x;2,3", "not a number"),
    ("k", "1e300,0;0,0", "from -100 to 100"), ("region", "1,2", "3 whole numbers"), ("region", "-1,2,3", "from 0"),
    ("pad_mode", "circular", "one of zeros, reflect, replicate"), ("pool", "max,2,2", "4 parts"),
    ("pool", "max,9,2,0", "its size must be"), ("act", "<script>", "one of relu"), ("flip", "true", "0 or 1"),
    ("sample", "../../etc/passwd", "must be one of"), ("step", "-1", "from 1"),
    ("k", "1" * 700, "longer than 600"),
])
def test_refused_values_say_why(name, text, reason):
    values, notes = decode(image_fields() + CONV_FIELDS, {name: text})
    assert values == {}
    assert len(notes) == 1 and reason in notes[0], notes


@settings(max_examples=300, deadline=None)
@given(st_.dictionaries(st_.sampled_from([field.name for field in image_fields() + CONV_FIELDS] + ["junk"]),
                        st_.text(max_size=80), max_size=8))
def test_any_text_in_the_address_gives_values_or_notes_never_an_exception(params):
    fields = image_fields() + CONV_FIELDS
    values, notes = decode(fields, params)
    assert len(values) + len(notes) == len(params)
    # Whatever was accepted writes back as parameters that read back the same.
    again, again_notes = decode(fields, encode(fields, values))
    assert again_notes == []
    assert encode(fields, again) == encode(fields, values)


def test_qr_code_holds_the_link():
    cv2 = pytest.importorskip("cv2")
    from viz.images import qr_picture

    address = ("http://lecture-hall.example:8501/convolution?sample=ct_head&region=120,96,8&k=-1,0,1;-2,0,2;-1,0,1"
               "&stride=1&padding=1&step=12")
    picture = qr_picture(qr_matrix(address), module_pixels=6)
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(picture)
    assert text == address


def test_every_activation_of_the_lesson_can_be_linked():
    (field,) = [field for field in CONV_FIELDS if field.name == "act"]
    assert [field.codec.parse(field.codec.format(name)) for name in ACTIVATIONS] == list(ACTIVATIONS)


# ---------------------------------------------------------------------------------------------------
# Round trips through the pages


def _conv_state(app):
    names = ("conv_region_top", "conv_region_left", "conv_region_size", "conv_kernel_source", "conv_kernel_name",
             "conv_kernel_size", "conv_random_seed", "conv_stride", "conv_padding_kind", "conv_padding",
             "conv_padding_mode", "conv_dilation", "conv_bias", "conv_flip")
    state = {name: app.session_state[stored_key(name)] for name in names}
    state.update({name: app.session_state[name] for name in ("conv_activation", "conv_slope", "pool_mode",
                                                              "pool_size", "pool_stride", "pool_padding",
                                                              "conv_section")})
    # The engine computes in float32: the kernel travels as float32 values, exactly.
    state.update(kernel=np.asarray(app.session_state[KERNEL_GRID], dtype=np.float32).tolist(), choice=app.session_state["scan__choice"],
                 level=app.session_state["scan__level"], width=app.session_state["scan__width"])
    return state


def test_convolution_lesson_link_opens_the_same_lesson_in_a_new_session():
    app = _run("convolution")
    app.selectbox(key="scan_source").set_value("Head CT slice").run()
    app.selectbox(key="scan_preset").set_value(
        next(option for option in app.selectbox(key="scan_preset").options if "bone" in option)).run()
    edited = [[0.25, -1.5, 0.125], [2.0, 0.0, -0.3], [1.0, 0.5, -0.75]]
    app.session_state[KERNEL_GRID] = edited
    for name, value in (("conv_region_top", 200), ("conv_region_left", 150), ("conv_region_size", 10),
                        ("conv_stride", 2), ("conv_padding_kind", "number"), ("conv_padding", 2),
                        ("conv_padding_mode", "reflect"), ("conv_dilation", 2), ("conv_bias", -0.35),
                        ("conv_flip", True)):
        app.session_state[stored_key(name)] = value
    app.session_state["conv_activation"] = "leaky ReLU"
    app.session_state["conv_slope"] = 0.25
    for name, value in (("pool_mode", "avg"), ("pool_size", 3), ("pool_stride", 1), ("pool_padding", 1)):
        app.session_state[name] = value
    app.session_state["conv__link_conv_step"] = 7  # what "Link this step" leaves for step 7 of the player
    app.session_state["conv_section"] = "5. Pooling: a smaller map"  # the open tab travels too
    app.run()
    assert not app.exception, app.exception
    address = students_link(app)
    params = dict(app.query_params)
    assert params["section"] == "pooling"
    assert params["sample"] == "ct_head" and params["step"] == "7" and params["k"] == "0.25,-1.5,0.125;2,0,-0.3;1,0.5,-0.75"
    assert address.startswith("http://localhost:8501/convolution?") and "step=7" in address

    fresh = _run("convolution", params)
    assert _conv_state(fresh) == _conv_state(app)
    assert students_link(fresh) == address
    assert _notes(fresh) == ""
    for section, key in (("5.", "pool_player"), ("3.", "conv_player")):
        for session in (app, fresh):
            open_tab(session, "conv_section", section)
        before, after = step_players(app), step_players(fresh)
        np.testing.assert_array_equal(decode_array(after[key]["output"]["values"]),
                                      decode_array(before[key]["output"]["values"]))
    assert after["conv_player"]["view"]["initial_step"] == 6  # 0-based in the player


def test_a_reload_keeps_the_lesson():
    app = _run("convolution")
    app.session_state[stored_key("conv_stride")] = 3
    app.run()
    reloaded = _run("convolution", dict(app.query_params))
    assert reloaded.session_state[stored_key("conv_stride")] == 3


def test_tampered_link_opens_defaults_with_a_note():
    tampered = {"sample": "../../etc/passwd", "stride": "99", "k": "1,2;3", "region": "a,b,c", "bias": "nan",
                "step": "-4", "evil": "<script>alert(1)</script>", "dilation": "2"}
    app = _run("convolution", tampered)
    assert app.session_state[stored_key("conv_stride")] == 1
    assert app.session_state[stored_key("conv_dilation")] == 2  # the valid one is used
    assert app.session_state["scan__choice"] == "Chest radiograph"
    notes = _notes(app)
    for name in ("sample=", "stride=", "k=", "region=", "bias=", "step=", "'evil'"):
        assert name in notes, name
    assert "<script>alert(1)</script>" not in "".join(markdown.value for markdown in app.markdown)
    # Once the lecturer changes something, the address is clean and the note goes.
    app.session_state[stored_key("conv_stride")] = 2
    app.run()
    assert "evil" not in dict(app.query_params) and _notes(app) == ""


def test_link_made_on_an_upload_falls_back_to_a_sample_and_says_so():
    app = _run("convolution")
    scan_uploader(app).set_value(
        ("ct_head.dcm", (SAMPLES / "ct_head.dcm").read_bytes(), "application/dicom")).run()
    assert not app.exception, app.exception
    assert app.query_params["sample"] == "upload" and "level" not in app.query_params
    assert "sample=upload" in students_link(app)
    assert any("upload is not in the link" in caption.value for caption in app.caption)
    fresh = _run("convolution", dict(app.query_params))
    assert fresh.session_state["scan__choice"] == "Chest radiograph"
    assert "uploaded scan" in _notes(fresh)


def test_stacks_link_round_trip():
    app = _run("stacks")
    app.session_state["stacks_stage_count"] = 3
    app.session_state["stacks_working_size"] = 128
    app.session_state["stacks_s0_kernels"] = ["sobel y", "laplacian"]
    app.session_state["stacks_s1_source"] = "learned"
    app.session_state["stacks_s1_learned"] = [2, 5]
    app.session_state["stacks_s2_pool"] = "avg"
    app.session_state["stacks_s2_dilation"] = 2
    app.run()
    assert not app.exception, app.exception
    params = dict(app.query_params)
    assert params["stages"] == "3" and params["s2"].startswith("learned:2,5:")
    fresh = _run("stacks", params)
    assert students_link(fresh) == students_link(app)
    assert fresh.table[0].value.equals(app.table[0].value)


def test_detection_box_link_round_trip():
    app = _run("detection")
    for name, value in (("det_row", 100), ("det_col", 120), ("det_height", 30), ("det_width", 24)):
        app.session_state[name] = value
    app.session_state["det_score"] = "plain"
    app.run()
    assert not app.exception, app.exception
    params = dict(app.query_params)
    assert params["box"] == "100,120,30,24" and params["score"] == "plain"
    fresh = _run("detection", params)
    assert [fresh.session_state[name] for name in ("det_row", "det_col", "det_height", "det_width")] == [
        100, 120, 30, 24]
    assert students_link(fresh) == students_link(app)


def test_classifier_window_link_round_trip():
    app = _run("classifier")
    app.session_state["clf_top"], app.session_state["clf_left"] = 40, 72
    app.run()
    assert not app.exception, app.exception
    assert app.query_params["window"] == "40,72"
    fresh = _run("classifier", dict(app.query_params))
    assert (fresh.session_state["clf_top"], fresh.session_state["clf_left"]) == (40, 72)
    outside = _run("classifier", {"window": "99999,99999"})  # kept inside the image, as the inputs do
    assert outside.session_state["clf_top"] < 99999


def test_volume_slice_and_window_travel_in_the_link():
    app = _run("input")
    app.selectbox(key="scan_source").set_value("Head MR volume").run()
    app.slider(key="scan_slice").set_value(3).run()
    params = dict(app.query_params)
    assert params["sample"] == "mr_head_volume" and params["slice"] == "3"
    fresh = _run("input", params)
    assert fresh.session_state["scan__slice"] == 2
    assert (fresh.session_state["scan__level"], fresh.session_state["scan__width"]) == (
        app.session_state["scan__level"], app.session_state["scan__width"])


def test_the_link_and_its_qr_code_are_made_only_while_their_popover_is_open():
    # Made on every rerun, the QR code cost 30 ms of each click that changes the link; the link block
    # itself five elements of every student's click.
    app = _run("convolution")
    assert not app.session_state[LINK_OPEN]
    assert not any(block.value.startswith("http") for block in app.code)
    assert not any("Link for students" in image.captions for image in app.get("image"))
    assert students_link(app).startswith("http")
    assert any("Link for students" in image.captions for image in app.get("image"))
