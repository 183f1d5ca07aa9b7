"""scans.read on real files: every DICOM pydicom and pydicom-data ship, compared with pydicom's own numbers."""

import io
import os
import time

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from pydicom.pixels import apply_color_lut, apply_modality_lut

import scans.dicom
from scans import ScanError, read, read_series
from scans.privacy import SAFE_DICOM_ATTRIBUTES


def shipped_file(name):
    path = pydicom.data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install pydicom-data)")
    return path


def _every_test_file():
    # get_testdata_files() lists pydicom's own files and, when installed, pydicom-data's (found locally).
    paths = {os.path.realpath(path) for path in pydicom.data.get_testdata_files() if os.path.isfile(path)}
    return sorted(paths)


@pytest.fixture(scope="module")
def outcomes():
    """path -> ("ok", Scan, seconds) or ("refused", ScanError, seconds) for every shipped test file.

    Seconds are CPU time of this process, so other jobs on a shared machine do not count.
    """
    results = {}
    for path in _every_test_file():
        start = time.process_time()
        try:
            results[path] = ("ok", read(path), time.process_time() - start)
        except ScanError as error:
            results[path] = ("refused", error, time.process_time() - start)
        # Any other exception propagates and fails the module: that is the promise under test.
    return results


def test_there_are_many_test_files(outcomes):
    # pydicom alone ships about 100 files; with pydicom-data about 250.
    assert len(outcomes) >= 100


def test_every_shipped_file_reads_or_is_refused_with_a_useful_message(outcomes):
    reads = [path for path, (kind, _, _) in outcomes.items() if kind == "ok"]
    assert len(reads) >= 60, "most image files should read"
    for path, (kind, result, _) in outcomes.items():
        if kind == "refused":
            message = str(result)
            assert len(message) > 40, (path, message)
            assert "Traceback" not in message


def test_read_scans_are_well_formed(outcomes):
    allowed_labels = set(SAFE_DICOM_ATTRIBUTES.values()) | {
        "Format", "Image kind (SOP class)", "Image size", "Pixel spacing (mm, row x column)",
        "Window in the file (level / width)", "Units", "Transfer syntax", "File size", "Files in series",
        "Colour", "Grey levels"}
    for path, (kind, scan, _) in outcomes.items():
        if kind != "ok":
            continue
        assert scan.pixels.dtype == np.float32 and scan.pixels.ndim in (2, 3), path
        assert np.all(np.isfinite(scan.pixels)), path
        level, width = scan.default_window
        assert np.isfinite(level) and width > 0, path
        assert set(scan.info) <= allowed_labels, (path, set(scan.info) - allowed_labels)
        if scan.display_rgb is not None:
            assert scan.display_rgb.dtype == np.uint8 and scan.display_rgb.shape == scan.pixels.shape + (3,), path


def test_reading_all_files_is_quick(outcomes):
    total = sum(seconds for _, _, seconds in outcomes.values())
    assert total < 60, f"reading every test file took {total:.1f} s"


def test_grey_images_equal_pydicoms_modality_lut(outcomes):
    """For every grey MONOCHROME2 single-frame file we read: our pixels == pydicom's apply_modality_lut."""
    compared = 0
    for path, (kind, scan, _) in outcomes.items():
        if kind != "ok" or scan.source_format != "DICOM" or scan.is_volume or scan.display_rgb is not None:
            continue
        dataset = pydicom.dcmread(path)
        if dataset.get("PhotometricInterpretation") != "MONOCHROME2" or "PerFrameFunctionalGroupsSequence" in dataset:
            continue
        expected = np.asarray(apply_modality_lut(dataset.pixel_array, dataset), dtype=np.float32)
        np.testing.assert_allclose(scan.pixels, expected.reshape(scan.pixels.shape), rtol=1e-6, atol=1e-3,
                                   err_msg=path)
        compared += 1
    assert compared >= 20


def test_ct_in_hounsfield_units_spot_checks():
    path = shipped_file("CT_small.dcm")
    scan = read(path)
    dataset = pydicom.dcmread(path)
    reference = apply_modality_lut(dataset.pixel_array, dataset)
    assert scan.modality == "CT" and scan.units == "HU"
    for row, column in [(0, 0), (64, 64), (10, 100), (127, 127), (50, 20)]:
        assert scan.pixels[row, column] == pytest.approx(reference[row, column])
        stored = int(dataset.pixel_array[row, column])
        assert scan.pixels[row, column] == pytest.approx(stored * float(dataset.RescaleSlope)
                                                         + float(dataset.RescaleIntercept))
    assert scan.spacing == pytest.approx((0.661468, 0.661468))


def test_monochrome1_is_inverted_within_the_stored_range():
    path = shipped_file("RG1_UNCR.dcm")
    dataset = pydicom.dcmread(path)
    assert dataset.PhotometricInterpretation == "MONOCHROME1"
    scan = read(path)
    top = 2 ** int(dataset.BitsStored) - 1
    np.testing.assert_array_equal(scan.pixels, (top - dataset.pixel_array.astype(np.float32)))
    # The file's window mirrors with the values: level 15000 of 0..32767 becomes 17767.
    assert scan.file_windows[0] == pytest.approx((top - float(dataset.WindowCenter), float(dataset.WindowWidth)))
    assert "MONOCHROME1" in scan.info["Photometric interpretation"]


def test_monochrome1_inversion_makes_dense_tissue_bright():
    # In a chest radiograph the mediastinum and spine (centre column) are denser than the lungs.
    scan = read(shipped_file("RG1_UNCR.dcm"))
    rows, columns = scan.pixels.shape
    band = scan.pixels[rows // 3: 2 * rows // 3]
    centre = np.median(band[:, columns // 2 - 40: columns // 2 + 40])
    right_lung = np.median(band[:, columns // 4 - 40: columns // 4 + 40])
    assert centre > right_lung


def test_rgb_kept_for_display_and_grey_is_luminance():
    path = shipped_file("SC_rgb.dcm")
    scan = read(path)
    rgb = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(scan.display_rgb, rgb)
    expected = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    np.testing.assert_allclose(scan.pixels, expected, rtol=1e-6)


def test_ybr_jpeg_becomes_the_same_colours_as_the_rgb_original():
    reference = read(shipped_file("SC_rgb.dcm")).display_rgb.astype(np.int16)
    for name in ("SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_jpeg_dcmtk.dcm"):
        scan = read(shipped_file(name))
        assert scan.display_rgb is not None
        # Lossy JPEG: the colour bands agree to within a few grey levels on average.
        assert np.mean(np.abs(scan.display_rgb.astype(np.int16) - reference)) < 6, name


def test_palette_colour_becomes_rgb():
    scan = read(shipped_file("OBXXXX1A.dcm"))
    assert scan.display_rgb is not None and scan.display_rgb.shape == (600, 800, 3)
    assert scan.modality == "US"
    assert any("Ultrasound" in warning for warning in scan.warnings)


def test_palette_colour_images_equal_pydicoms_color_lut(outcomes):
    """Every palette-colour file we read: our RGB == pydicom's apply_color_lut scaled to 8 bits, within 1."""
    compared = 0
    for path, (kind, scan, _) in outcomes.items():
        if kind != "ok" or scan.source_format != "DICOM":
            continue
        dataset = pydicom.dcmread(path, force=True)
        if dataset.get("PhotometricInterpretation") != "PALETTE COLOR":
            continue
        if "TransferSyntaxUID" not in dataset.file_meta:  # a raw dataset (OT-PAL-8-face.dcm): implicit VR
            dataset.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])
        expected = np.round(apply_color_lut(dataset.pixel_array, dataset).astype(np.float64) * 255 / (2 ** bits - 1))
        difference = np.abs(scan.display_rgb.astype(np.float64) - expected.reshape(scan.display_rgb.shape))
        assert difference.max() <= 1, (path, difference.max())
        compared += 1
    assert compared >= 8


def test_multiframe_is_a_volume_with_slices():
    scan = read(shipped_file("emri_small.dcm"))
    assert scan.is_volume and scan.pixels.shape == (10, 64, 64) and scan.num_slices == 10
    reference = pydicom.dcmread(shipped_file("emri_small.dcm")).pixel_array.astype(np.float32)
    np.testing.assert_array_equal(scan.slice(3), reference[3])
    with pytest.raises(ScanError, match="slice index 10"):
        scan.slice(10)


def test_multiframe_colour_volume():
    scan = read(shipped_file("SC_rgb_2frame.dcm"))
    assert scan.pixels.shape == (2, 100, 100) and scan.display_rgb.shape == (2, 100, 100, 3)
    assert scan.slice_rgb(1).shape == (100, 100, 3)


def test_enhanced_ct_rescale_from_functional_groups():
    path = shipped_file("eCT_Supplemental.dcm")
    dataset = pydicom.dcmread(path)
    scan = read(path)
    item = dataset.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    expected = dataset.pixel_array[0].astype(np.float32) * float(item.RescaleSlope) + float(item.RescaleIntercept)
    np.testing.assert_allclose(scan.slice(0), expected)
    assert scan.units == "HU"


@pytest.mark.parametrize("name, syntax", [
    ("MR_small_RLE.dcm", "RLE Lossless"),
    ("MR_small_jp2klossless.dcm", "JPEG 2000"),
    ("SC_rgb_jpeg_dcmtk.dcm", "JPEG Baseline"),
    ("image_dfl.dcm", "Deflated"),
])
def test_compressed_transfer_syntaxes_read(name, syntax):
    scan = read(shipped_file(name))
    assert syntax in scan.info["Transfer syntax"]


def test_lossless_compression_gives_the_uncompressed_values():
    plain = read(shipped_file("MR_small.dcm")).pixels
    for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"):
        np.testing.assert_array_equal(read(shipped_file(name)).pixels, plain, err_msg=name)


def test_jpeg_lossless_and_jpeg_ls_read_when_gdcm_is_installed():
    pytest.importorskip("gdcm", reason="python-gdcm decodes JPEG lossless and JPEG-LS")
    plain = read(shipped_file("MR_small.dcm")).pixels
    np.testing.assert_array_equal(read(shipped_file("MR_small_jpeg_ls_lossless.dcm")).pixels, plain)
    assert read(shipped_file("JPEG-LL.dcm")).pixels.shape == (1024, 256)


def test_missing_decoder_names_the_transfer_syntax_and_what_decodes_it(monkeypatch):
    class Unavailable:
        is_available = False

    monkeypatch.setattr(scans.dicom, "get_decoder", lambda uid: Unavailable())
    with pytest.raises(ScanError, match=r"JPEG-LS Lossless Image Compression \(1\.2\.840\.10008\.1\.2\.4\.80\).*"
                                        r"pyjpegls|python-gdcm"):
        read(shipped_file("MR_small_jpeg_ls_lossless.dcm"))


def test_video_transfer_syntax_is_refused_with_its_name():
    dataset = pydicom.dcmread(shipped_file("SC_rgb_jpeg_dcmtk.dcm"))
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    with pytest.raises(ScanError, match="MPEG2 Main Profile.*video"):
        read(buffer.getvalue())


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEG-lossy.dcm"])
def test_twelve_bit_jpeg_refusal_is_short_and_its_detail_explains_the_gpl_decoder(name):
    with pytest.raises(ScanError, match=r"^This file is compressed as 12-bit JPEG Extended, .*uncompressed.*"
                                        r"JPEG 2000 and upload it again\.$") as refusal:
        read(shipped_file(name))
    assert "1.2.840.10008.1.2.4.51" in refusal.value.detail
    assert "pylibjpeg-libjpeg, is licensed under the GPL-3" in refusal.value.detail


def test_file_like_and_bytes_give_the_same_scan():
    path = shipped_file("MR_small.dcm")
    data = open(path, "rb").read()
    from_path, from_bytes, from_file = read(path), read(data, name="x"), read(io.BytesIO(data))
    np.testing.assert_array_equal(from_path.pixels, from_bytes.pixels)
    np.testing.assert_array_equal(from_path.pixels, from_file.pixels)
    assert from_bytes.name == "x" and from_path.name == "MR_small.dcm"


def test_folder_of_slices_is_one_volume_in_slice_order(tmp_path):
    volume = read(shipped_file("emri_small.dcm")).pixels
    source = pydicom.dcmread(shipped_file("CT_small.dcm"))
    order = [3, 0, 4, 1, 2]  # written out of order on purpose
    for file_number, slice_number in enumerate(order):
        dataset = source.copy()
        dataset.Rows, dataset.Columns = 64, 64
        dataset.PixelData = volume[slice_number].astype(np.int16).tobytes()
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.ImagePositionPatient = [0, 0, 2.5 * slice_number]
        dataset.InstanceNumber = 10 - slice_number  # disagrees with position: position must win
        dataset.save_as(tmp_path / f"slice_{file_number}.dcm")
    scan = read(tmp_path)
    assert scan.pixels.shape == (5, 64, 64)
    for slice_number in range(5):
        expected = volume[slice_number] * float(source.RescaleSlope) + float(source.RescaleIntercept)
        np.testing.assert_array_equal(scan.pixels[slice_number], expected)
    assert scan.slice_spacing_mm == pytest.approx(2.5)
    with pytest.raises(ScanError, match="different sizes"):
        read_series([tmp_path / "slice_0.dcm", shipped_file("CT_small.dcm")])


def _png_bytes(array, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_png_grey_8_and_16_bit_keep_their_levels():
    grey8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(read(_png_bytes(grey8)).pixels, grey8.astype(np.float32))
    grey16 = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    scan = read(_png_bytes(grey16))
    np.testing.assert_array_equal(scan.pixels, grey16.astype(np.float32))
    assert scan.modality == "OT" and scan.units == "" and scan.display_rgb is None


def test_colour_jpeg_and_multipage_tiff():
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(colour).save(buffer, format="JPEG", quality=95)
    scan = read(buffer.getvalue())
    assert scan.display_rgb.shape == (20, 30, 3) and scan.source_format == "JPEG"
    pages = [Image.fromarray(np.full((8, 9), value, dtype=np.uint8)) for value in (10, 20, 30)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    volume = read(buffer.getvalue())
    assert volume.pixels.shape == (3, 8, 9) and volume.pixels[2, 0, 0] == 30


def test_grey_saved_as_rgb_is_treated_as_grey():
    grey = np.tile(np.arange(10, dtype=np.uint8), (5, 1))
    scan = read(_png_bytes(np.stack([grey] * 3, axis=-1)))
    assert scan.display_rgb is None
    np.testing.assert_array_equal(scan.pixels, grey)
