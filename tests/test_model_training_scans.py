"""The vendored training scans (model/training_scans.npz): what make_training_scans.py says they are,
never the held-out modality, and part of the classifier's training images."""

import gzip

import numpy as np
import pytest

from model import data
from model.make_training_scans import SOURCES, image_names, read_nrrd


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


def test_npz_holds_no_held_out_modality_and_only_usable_windows(vendored):
    assert data.HELD_OUT_MODALITY not in set(vendored["modalities"].tolist())
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


def test_vendored_images_refuse_a_held_out_modality(tmp_path, vendored):
    tampered = dict(vendored)
    tampered["modalities"] = np.array([data.HELD_OUT_MODALITY] + vendored["modalities"].tolist()[1:])
    path = tmp_path / "tampered.npz"
    np.savez_compressed(path, **tampered)
    with pytest.raises(ValueError, match="held-out"):
        data._vendored_images(path)


def test_vendored_images_are_float32_copies_of_the_stored_integers(vendored):
    images, thumbnails = data._vendored_images()
    assert len(thumbnails) == len(set(vendored["pixel_keys"].tolist()))
    for image, key, window in zip(images, vendored["pixel_keys"].tolist(), vendored["windows"]):
        assert image.pixels.dtype == np.float32
        np.testing.assert_array_equal(image.pixels, vendored[key])
        assert image.window == (float(window[0]), float(window[1]))


def test_load_source_images_trains_on_the_vendored_images_and_holds_out_the_same_scans(vendored):
    pytest.importorskip("data_store", reason="the DICOM sources come from pydicom-data (pip install pydicom-data)")
    images = data.load_source_images()
    training, held = data.split_by_modality(images)
    training_names = {image.name for image in training}
    assert set(vendored["names"].tolist()) <= training_names
    # The held-out set is the MR scans of pydicom and pydicom-data only.
    dicom_mr = {name for name, _, _ in data.DICOM_SOURCES if name.startswith(("MR", "emri"))}
    assert {image.name.split("[")[0] for image in held} == dicom_mr
    assert not set(vendored["names"].tolist()) & {image.name for image in held}


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
