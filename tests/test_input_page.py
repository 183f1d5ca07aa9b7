"""The input page in Streamlit's AppTest: samples, window, preprocessing, uploads (good, identifying, garbage)."""

import io
import json

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from pydicom.pixels import apply_color_lut

from tests.apptest import add_to_uploader, run_page_file, scan_uploader
from scans import list_samples

PAGE = "views/input.py"


@pytest.fixture
def app():
    page = run_page_file(PAGE)
    assert not page.exception, page.exception
    return page


def page_text(page):
    """Every piece of text the page shows (markdown, captions, alerts, tables, widget labels and options)."""
    parts = [element.value for element in [*page.markdown, *page.caption, *page.title, *page.header,
                                           *page.subheader, *page.warning, *page.error, *page.info]]
    for image in page.get("image"):
        parts += image.captions
    for table in page.table:
        parts.append(table.value.to_string())
    for selectbox in page.selectbox:
        parts += [selectbox.label, *map(str, selectbox.options)]
    return "\n".join(str(part) for part in parts)


def info_table(page):
    table = page.table[0].value
    return dict(zip(table["Attribute"], table["Value"]))


def uploader(page):
    return scan_uploader(page)


def ct_slice_bytes(position):
    """pydicom's CT_small as one slice at ``position`` mm along the slice normal."""
    dataset = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    dataset.ImagePositionPatient = [0, 0, position]
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def listed_files(page):
    return [file.name for file in uploader(page).value or []]


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_page_opens_with_the_default_sample(app):
    assert app.title[0].value == "The input: from scan to network input"
    assert any("not for diagnosis" in warning.value for warning in app.warning)
    assert app.selectbox(key="scan_source").value == list_samples()[0]
    assert info_table(app)["Format"] == "DICOM"
    captions = [caption for image in app.get("image") for caption in image.captions]
    assert any(caption.startswith("Chest radiograph: window") for caption in captions), captions
    assert any(caption.startswith("Network input:") for caption in captions), captions
    labels = [metric.label for metric in app.metric]
    assert labels[:3] == ["Shape", "Minimum", "Maximum"]


def test_every_sample_opens(app):
    for name in list_samples():
        app.selectbox(key="scan_source").set_value(name).run()
        assert not app.exception, (name, app.exception)
        assert app.selectbox(key="scan_source").value == name
    # The last sample chosen before: a volume shows the slice slider.
    app.selectbox(key="scan_source").set_value("Head MR volume").run()
    assert app.slider(key="scan_slice").value == 6  # the middle slice of 10, 1-based
    app.slider(key="scan_slice").set_value(2).run()
    assert not app.exception
    assert "Head MR volume, slice 2 of 10" in page_text(app)


def test_window_preset_sets_level_and_width(app):
    app.selectbox(key="scan_source").set_value("Abdomen CT slice").run()
    lung = next(option for option in app.selectbox(key="scan_preset").options if "Lung" in option)
    app.selectbox(key="scan_preset").set_value(lung).run()
    assert app.slider(key="scan_level").value == -600 and app.slider(key="scan_width").value == 1500
    assert "-1350" in page_text(app) and "150" in page_text(app)
    app.slider(key="scan_level").set_value(-500.0).run()
    assert app.selectbox(key="scan_preset").value == "Custom (sliders)"


def test_preprocessing_steps_and_network_input(app):
    app.toggle(key="input_use_roi").set_value(True).run()
    app.toggle(key="input_use_resize").set_value(True).run()
    app.select_slider(key="input_size").set_value(32).run()
    app.radio(key="input_normalisation").set_value("z-score").run()
    assert not app.exception
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Shape"] == "32 x 32"
    assert abs(float(metrics["Mean"])) < 1e-3 and float(metrics["Standard deviation"]) == pytest.approx(1, abs=1e-3)
    app.radio(key="input_normalisation").set_value("window").run()
    metrics = {metric.label: metric.value for metric in app.metric}
    assert 0 <= float(metrics["Minimum"]) and float(metrics["Maximum"]) <= 1


def test_png_upload_is_read_and_selected(app):
    image = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (40, 1))
    uploader(app).set_value(("gradient.png", png_bytes(image), "image/png")).run()
    assert not app.exception, app.exception
    assert app.selectbox(key="scan_source").value == "Your upload: gradient.png"
    assert info_table(app)["Format"] == "PNG"
    assert any("no metadata" in warning.value for warning in app.warning)
    assert {metric.label: metric.value for metric in app.metric}["Shape"] == "40 x 50"


def test_dicom_upload_shows_only_safe_fields(app):
    dataset = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    dataset.PatientName = "Doe^Jane^Secret"
    dataset.PatientID = "PID-99887766"
    dataset.InstitutionName = "Saint Nowhere General Hospital"
    dataset.BurnedInAnnotation = "YES"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    uploader(app).set_value(("ct_upload.dcm", buffer.getvalue(), "application/dicom")).run()
    assert not app.exception, app.exception
    info = info_table(app)
    assert info["Modality"] == "CT" and info["Units"] == "Hounsfield units (HU)"
    text = page_text(app)
    for secret in ("Jane", "PID-99887766", "Nowhere"):
        assert secret not in text
    assert any("burned-in annotation" in warning.value for warning in app.warning)
    assert any("not de-identified" in warning.value for warning in app.warning)


def eight_bit_lut_palette_dicom():
    """pydicom's OBXXXX1A ultrasound with its palette stored as 8-bit LUT entries (descriptor (256, 0, 8)).

    Its 16-bit LUT holds 8-bit values times 256, so the 8-bit LUT is the same palette.
    """
    dataset = pydicom.dcmread(pydicom.data.get_testdata_file("OBXXXX1A.dcm"))
    for colour in ("Red", "Green", "Blue"):
        entries = np.frombuffer(dataset[f"{colour}PaletteColorLookupTableData"].value, dtype="<u2")
        dataset[f"{colour}PaletteColorLookupTableDescriptor"].value = [256, 0, 8]
        dataset[f"{colour}PaletteColorLookupTableData"].value = (entries >> 8).astype(np.uint8).tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def palette_rgb_by_pydicom(data):
    """pydicom's own palette rendering of a DICOM file's bytes, scaled to 8 bits by the LUT's declared depth."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])
    rgb = apply_color_lut(dataset.pixel_array, dataset).astype(np.float64)
    return np.round(rgb * 255 / (2 ** bits - 1))


@pytest.mark.parametrize("name", ["gdcm-US-ALOKA-16.dcm", "OBXXXX1A.dcm", "8-bit LUT"])
def test_palette_colour_upload_shows_the_colours_pydicom_gives(app, name):
    # gdcm-US-ALOKA-16: 16-bit pixels, segmented 16-bit palette (pydicom-data); OBXXXX1A: 8-bit pixels,
    # 16-bit palette; the third: 8-bit palette entries. A viewer shows anatomy, not white sectors.
    if name == "8-bit LUT":
        data = eight_bit_lut_palette_dicom()
    else:
        path = pydicom.data.get_testdata_file(name, download=False)
        if path is None:
            pytest.skip(f"{name} is not installed (pip install pydicom-data)")
        data = open(path, "rb").read()
    uploader(app).set_value((f"{name}.dcm", data, "application/dicom")).run()
    assert not app.exception, app.exception
    assert app.selectbox(key="scan_source").value == f"Your upload: {name}.dcm"
    assert not app.error, [error.value for error in app.error]
    shown = app.session_state["scan__upload_scan"].display_rgb.astype(np.float64)
    expected = palette_rgb_by_pydicom(data)
    assert shown.shape == expected.shape
    assert np.max(np.abs(shown - expected)) <= 1, f"largest difference {np.max(np.abs(shown - expected))}"
    assert any(caption.startswith("The original colours") for image in app.get("image") for caption in image.captions)


def test_garbage_upload_shows_the_scan_error_and_the_page_keeps_working(app):
    app.selectbox(key="scan_source").set_value("Head CT slice").run()
    uploader(app).set_value(("notes.dcm", b"this is not a scan, just some text" * 20, "application/dicom")).run()
    assert not app.exception, app.exception
    errors = [error.value for error in app.error]
    assert any("Could not read notes.dcm" in error and "not a DICOM file" in error for error in errors), errors
    assert app.selectbox(key="scan_source").value == "Head CT slice"
    assert info_table(app)["Modality"] == "CT"
    # The session goes on: another sample, then a good upload, both work.
    app.selectbox(key="scan_source").set_value("Shoulder MR").run()
    assert not app.exception and info_table(app)["Modality"] == "MR"
    assert not app.error, "the old message goes once another scan is chosen"
    uploader(app).set_value(("ok.png", png_bytes(np.zeros((8, 8), dtype=np.uint8)), "image/png")).run()
    assert not app.exception and app.selectbox(key="scan_source").value == "Your upload: ok.png"
    assert not app.error


def main_elements(page):
    """The main area's elements in the order the page shows them."""
    def walk(node):
        children = getattr(node, "children", None)
        if children is None:
            yield node
            return
        for index in sorted(children):
            yield from walk(children[index])
    return list(walk(page.main))


def test_a_refused_upload_is_reported_at_the_top_with_what_is_shown_instead(app):
    app.selectbox(key="scan_source").set_value("Head CT slice").run()
    uploader(app).set_value(("notes.dcm", b"this is not a scan, just some text" * 20, "application/dicom")).run()
    assert not app.exception, app.exception
    # At the top of the page, above the lesson: the file's name, why, and the image the page still shows.
    elements = main_elements(app)
    first_header = next(index for index, element in enumerate(elements) if element.type == "header")
    refusals = [index for index, element in enumerate(elements)
                if element.type == "error" and "notes.dcm" in element.value]
    assert refusals and refusals[0] < first_header, [element.type for element in elements]
    message = elements[refusals[0]].value
    assert "not a DICOM file" in message and "Head CT slice" in message, message
    # A toast where the eye is drawn, and the same message beside the uploader.
    assert any("notes.dcm" in toast.value for toast in app.toast), [toast.value for toast in app.toast]
    assert any("notes.dcm" in error.value and "Head CT slice" in error.value for error in app.sidebar.error)
    assert listed_files(app) == [], "a refused file must not stay listed as if it were in use"
    assert app.selectbox(key="scan_source").value == "Head CT slice"
    # The toast is said once; the messages stay until another image is chosen.
    app.toggle(key="input_show_clipping").set_value(True).run()
    assert not app.toast and any("notes.dcm" in error.value for error in app.main.error)
    app.selectbox(key="scan_source").set_value("Shoulder MR").run()
    assert not app.error


def test_a_refusal_after_an_upload_says_the_earlier_upload_is_still_shown(app):
    uploader(app).set_value(("ok.png", png_bytes(np.zeros((8, 8), dtype=np.uint8)), "image/png")).run()
    uploader(app).set_value(("notes.dcm", b"not a scan" * 50, "application/dicom")).run()
    assert not app.exception, app.exception
    assert app.selectbox(key="scan_source").value == "Your upload: ok.png"
    assert any("notes.dcm" in error.value and "ok.png" in error.value for error in app.main.error), \
        [error.value for error in app.error]


def test_a_twelve_bit_jpeg_refusal_is_one_sentence_with_the_details_one_click_away(app):
    path = pydicom.data.get_testdata_file("JPEG-lossy.dcm")  # 1.2.840.10008.1.2.4.51, 12 bits stored
    uploader(app).set_value(("JPEG-lossy.dcm", open(path, "rb").read(), "application/dicom")).run()
    assert not app.exception, app.exception
    message = next(error.value for error in app.main.error if "JPEG-lossy.dcm" in error.value)
    reason = message.split("**", 2)[2].split(" The page still shows")[0].strip()
    assert reason.count(". ") == 0 and reason.endswith(".") and len(reason) < 200, reason
    assert "12-bit JPEG Extended" in reason and "uncompressed" in reason and "JPEG 2000" in reason, reason
    for jargon in ("pylibjpeg", "GPL", "Error", "plugin", "1.2.840"):
        assert jargon not in message, (jargon, message)
    why = [expander for expander in app.main.expander if expander.label == "Why?"]
    assert why, "the details are one click away, under the message"
    details = " ".join(element.value for element in why[0].markdown)
    assert "1.2.840.10008.1.2.4.51" in details and "GPL-3" in details and "Pillow" in details, details


def test_a_second_upload_replaces_the_first(app):
    uploader(app).set_value(("ok.png", png_bytes(np.zeros((8, 8), dtype=np.uint8)), "image/png")).run()
    add_to_uploader(app, "CT_small.dcm", ct_slice_bytes(0.0), "application/dicom")
    app.run()
    assert not app.exception, app.exception
    assert not app.error, [error.value for error in app.error]
    assert app.selectbox(key="scan_source").value == "Your upload: CT_small.dcm"
    assert info_table(app)["Modality"] == "CT"
    assert [option for option in app.selectbox(key="scan_source").options if option.startswith("Your upload")] == [
        "Your upload: CT_small.dcm"]
    assert "ok.png" not in listed_files(app), "the replaced file must not stay listed in the uploader"


def test_slices_chosen_together_are_a_series_and_a_later_file_replaces_them(app):
    uploader(app).set_value([("slice_a.dcm", ct_slice_bytes(0.0), "application/dicom"),
                             ("slice_b.dcm", ct_slice_bytes(2.5), "application/dicom")]).run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    assert app.selectbox(key="scan_source").value == "Your upload: slice_a.dcm (+1 files)"
    assert app.session_state["scan__upload_scan"].num_slices == 2
    assert app.slider(key="scan_slice").max == 2
    add_to_uploader(app, "gradient.png", png_bytes(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (40, 1))),
                    "image/png")
    app.run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    assert app.selectbox(key="scan_source").value == "Your upload: gradient.png"
    assert not app.session_state["scan__upload_scan"].is_volume
    assert not {"slice_a.dcm", "slice_b.dcm"} & set(listed_files(app))


def test_forget_upload_returns_to_a_sample(app):
    uploader(app).set_value(("ok.png", png_bytes(np.zeros((8, 8), dtype=np.uint8)), "image/png")).run()
    app.button(key="scan_forget_upload").click().run()
    assert not app.exception
    assert app.selectbox(key="scan_source").value == list_samples()[0]
    assert all(not option.startswith("Your upload") for option in app.selectbox(key="scan_source").options)


def test_the_automatic_window_is_worked_out_once_per_scan_not_on_every_rerun(monkeypatch):
    # Its percentiles cost about 40 ms a rerun on every page, for every student's click.
    import views.scan_picker as picker

    calls = []
    real = picker.auto_window
    monkeypatch.setattr(picker, "auto_window", lambda pixels: calls.append(1) or real(pixels))
    app = run_page_file(PAGE)
    assert not app.exception, app.exception
    after_opening = len(calls)
    assert after_opening > 0
    for _ in range(3):
        app.run()
    assert len(calls) == after_opening, "a rerun with the same scan worked the window out again"
    app.selectbox(key="scan_source").set_value(list_samples()[1]).run()
    assert not app.exception, app.exception
    assert len(calls) > after_opening, "a new scan needs its own automatic window"


def test_the_histograms_are_vega_lite_charts_with_the_window_shaded():
    # Written as Vega-Lite specs: built through Altair they took half of every click on this page.
    page = run_page_file(PAGE)
    assert not page.exception, page.exception
    charts = page.get("vega_lite_chart")
    assert len(charts) == 2, "the slice's values with the window, the network input's values"
    spec = json.loads(charts[0].proto.spec)
    band = spec["layer"][0]["data"]["values"][0]
    level, width = page.slider(key="scan_level").value, page.slider(key="scan_width").value
    assert band["lower"] <= level <= band["upper"] and band["upper"] - band["lower"] <= width + 1e-6
