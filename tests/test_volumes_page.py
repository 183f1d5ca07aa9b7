"""The "Volumes and video" page under AppTest: it opens on the chest CT volume, every section runs, bad input is told."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.apptest import APP_TIMEOUT_S, REPO_ROOT, click_picture, component_data, open_tab, run_page_file, scan_uploader, students_link
from views.caching import SESSION_MEMOS
from views.components import decode_data
from views.volumes_lesson import SECTION_KEY, SECTIONS

PAGE = "views/volumes.py"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"


def working_caption(app):
    return next(caption.value for caption in app.caption if caption.value.startswith("Working volume:"))


def test_the_page_opens_on_the_chest_ct_volume_and_every_section_runs():
    app = run_page_file(PAGE)
    assert not app.exception, app.exception
    assert app.sidebar.selectbox[0].value == "Chest CT volume"
    assert working_caption(app).startswith("Working volume: 48 x 128 x 128 voxels")
    assert [tab.label for tab in app.tabs] == list(SECTIONS)
    for section in SECTIONS[1:]:
        open_tab(app, SECTION_KEY, section[:2])
        assert not app.exception, (section, app.exception)
    open_tab(app, SECTION_KEY, "4.")
    table = app.table[0].value
    assert list(table["voxels"]) == ["786,432", "786,432", "98,304", "98,304", "12,288"]
    assert table["multiply-adds"].iloc[1] == f"{786432 * 27:,}"


def test_a_click_on_the_coronal_plane_moves_the_voxel_there_and_keeps_its_row():
    app = run_page_file(PAGE)
    assert "Chosen voxel: slice 25, row 95, column 43" in working_caption(app)
    rows, cols = component_data(app, "vol3d_planes_click")["shape"]
    click_picture(app, "vol3d_planes_click", 0.45 * cols, 0.3 * rows)  # the middle picture: the coronal plane
    assert not app.exception, app.exception
    caption = working_caption(app)
    assert "row 95," in caption and "slice 25, row 95, column 43" not in caption


def test_the_sphere_and_tube_table_shows_the_2d_kernel_cannot_tell_them_apart():
    app = run_page_file(PAGE)
    open_tab(app, SECTION_KEY, "3.")
    assert not app.exception, app.exception
    table = app.table[0].value
    flat, deep = table["ball / tube"]
    assert flat == "1.00" and float(deep) > 1.5


def test_a_typed_kernel_with_a_mistake_is_explained_and_the_page_goes_on():
    app = run_page_file(PAGE)
    open_tab(app, SECTION_KEY, "2.")
    app.radio(key="vol3d_source").set_value("Typed").run()
    assert not app.exception, app.exception
    app.text_area(key="vol3d_typed").set_value("1 2 3\n4 5\n").run()
    assert not app.exception, app.exception
    assert any("rows of different lengths" in error.value for error in app.error)
    app.text_area(key="vol3d_typed").set_value("0 0 0\n0 1 0\n0 0 0\n\n0 0 0\n0 -1 0\n0 0 0").run()
    assert not app.exception and not app.error
    assert any("2 x 3 x 3" in markdown.value and "18 multiplications" in markdown.value for markdown in app.markdown)
    open_tab(app, SECTION_KEY, "4.")  # the pooling section uses the typed kernel too
    assert not app.exception, app.exception
    assert "2 x 3 x 3 convolution" in app.table[0].value["layer"].iloc[1]


def test_a_single_image_asks_for_a_volume_and_the_clip_still_plays():
    app = run_page_file(PAGE)
    app.sidebar.selectbox[0].set_value("Chest radiograph").run()
    assert not app.exception, app.exception
    assert any("needs a volume or a clip" in info.value for info in app.info)
    assert not app.tabs


def test_an_uploaded_multi_frame_dicom_becomes_the_working_volume():
    app = run_page_file(PAGE)
    upload = (SAMPLES / "mr_head_volume.dcm").read_bytes()
    scan_uploader(app).set_value(("head.dcm", upload, "application/dicom")).run()
    assert not app.exception, app.exception
    assert working_caption(app).startswith("Working volume: 10 x 64 x 64 voxels")
    # A new volume starts on its middle slice, at that slice's brightest blob (not where the last one was).
    assert "slice 6, row 53, column 13" in working_caption(app)
    open_tab(app, SECTION_KEY, "2.")
    assert not app.exception, app.exception
    assert any("144 voxels here" in markdown.value for markdown in app.markdown)


def test_the_volume_player_receives_the_whole_3d_trace():
    import numpy as np

    from kernels import conv3d_trace, make_kernel3d
    from views.components.step_player import conv_payload, decode_array

    volume = np.random.default_rng(5).random((4, 5, 6)).astype(np.float32)
    trace = conv3d_trace(volume, make_kernel3d("sobel z"), 0.5, padding="same")
    payload = conv_payload(trace, titles={}, memory="test")
    steps = trace.all_steps()
    assert payload["kind"] == "conv3d" and payload["steps"]["count"] == trace.num_steps == 4 * 5 * 6
    assert payload["input"]["pad"] == [1, 1, 1, 1, 1, 1]
    for name, expected in (("slices", steps.slices), ("rows", steps.rows), ("cols", steps.cols),
                           ("products", steps.products), ("slice_sums", steps.slice_sums), ("sums", steps.totals),
                           ("values", steps.values)):
        np.testing.assert_array_equal(decode_array(payload["steps"][name]), expected)
    np.testing.assert_array_equal(decode_array(payload["input"]["values"]), trace.padded)
    np.testing.assert_array_equal(decode_array(payload["output"]["values"]), trace.output)
    np.testing.assert_array_equal(decode_array(payload["kernel"]["values"]), trace.kernel)


def test_the_lesson_link_brings_back_the_voxel_section_kernel_and_region():
    from urllib.parse import parse_qsl, urlsplit

    app = run_page_file(PAGE)
    app.sidebar.slider[0].set_value(30).run()  # the picker's slice slider (1-based)
    open_tab(app, SECTION_KEY, "2.")
    app.radio(key="vol3d_source").set_value("Typed").run()
    app.text_area(key="vol3d_typed").set_value("1 0\n0 1\n\n0 -1\n-1 0").run()
    app.selectbox(key="vol3d_region_side").set_value(8).run()
    assert not app.exception, app.exception
    caption = working_caption(app)
    query = dict(parse_qsl(urlsplit(students_link(app)).query))
    assert query["sample"] == "ct_chest_volume" and query["slice"] == "30" and query["section"] == "kernel"
    assert query["ksrc"] == "typed" and query["region"] == "4,8"

    fresh = AppTest.from_file(str(REPO_ROOT / PAGE), default_timeout=APP_TIMEOUT_S)
    fresh.query_params.update(query)
    fresh.run()
    assert not fresh.exception, fresh.exception
    assert working_caption(fresh) == caption
    assert fresh.session_state["vol3d_typed"] == "1 0\n0 1\n\n0 -1\n-1 0"
    assert any("2 x 2 x 2" in markdown.value for markdown in fresh.markdown)
    assert fresh.session_state["vol3d_region_side"] == 8


def test_a_tampered_link_opens_the_defaults_with_a_note():
    app = AppTest.from_file(str(REPO_ROOT / PAGE), default_timeout=APP_TIMEOUT_S)
    app.query_params.update({"sample": "ct_chest_volume", "typed": "1 2\n3", "kdepth": "4", "voxel": "0,x"})
    app.run()
    assert not app.exception, app.exception
    notes = "\n".join(warning.value for warning in app.warning if "this link" in warning.value)
    assert "rows of different lengths" in notes and "kdepth" in notes and "voxel" in notes


def test_a_series_of_two_slices_works_in_every_section():
    import io

    import pydicom
    import pydicom.data

    source = pydicom.data.get_testdata_file("CT_small.dcm", download=False)
    files = []
    for position in (0.0, 2.5):
        dataset = pydicom.dcmread(source)
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.ImagePositionPatient = [0, 0, position]
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        files.append((f"slice_{position}.dcm", buffer.getvalue(), "application/dicom"))
    app = run_page_file(PAGE)
    scan_uploader(app).set_value(files).run()
    assert not app.exception, app.exception
    assert working_caption(app).startswith("Working volume: 2 x 128 x 128 voxels")
    for section in SECTIONS:
        open_tab(app, SECTION_KEY, section[:2])
        assert not app.exception, (section, app.exception)
    open_tab(app, SECTION_KEY, "4.")
    assert any("too few for" in info.value for info in app.info)  # two slices cannot be pooled twice
    open_tab(app, SECTION_KEY, "2.")
    app.selectbox(key="vol3d_padding").set_value("valid").run()
    assert not app.exception, app.exception
    assert any("does not fit the region" in error.value for error in app.error)


def test_a_linked_step_opens_the_player_there():
    import json

    app = AppTest.from_file(str(REPO_ROOT / PAGE), default_timeout=APP_TIMEOUT_S)
    app.query_params.update({"sample": "ct_chest_volume", "section": "kernel", "step": "40"})
    app.run()
    assert not app.exception, app.exception
    (player,) = [decode_data(element.proto) for element in app.get("bidi_component")
                 if element.key == "vol3d_player"] or [None]
    assert player is not None and player["view"]["initial_step"] == 39 and player["view"]["link_button"]
    assert "step=40" in students_link(app)


def test_forgetting_the_upload_forgets_what_the_page_made_from_it():
    app = run_page_file(PAGE)
    upload = (SAMPLES / "mr_head_volume.dcm").read_bytes()
    scan_uploader(app).set_value(("head.dcm", upload, "application/dicom")).run()
    open_tab(app, SECTION_KEY, "2.")
    upload_id = app.session_state["volume__upload_id"]

    def remembered():  # the keys views.caching.session_memo holds this page's results by
        return [repr(key) for key, _ in app.session_state[SESSION_MEMOS].get("volumes", {}).values()]

    assert any(upload_id in key for key in remembered())
    app.button(key="volume_forget_upload").click().run()
    assert not app.exception, app.exception
    assert app.session_state["volume__choice"] == "Chest CT volume"  # the page's own sample, not a picture
    assert not any(upload_id in key for key in remembered()), remembered()
