"""The shipped samples: present, small, documented, free of identifiers, reproducible, read-only when read."""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from scans import ScanError, list_samples, read_sample
from scans.samples import SAMPLE_DIR, SAMPLES

SOURCES = SAMPLE_DIR / "SOURCES.md"
REQUIRED_KINDS = {
    "CT slice in HU": lambda scan: scan.modality == "CT" and scan.units == "HU" and not scan.is_volume,
    "MR slice": lambda scan: scan.modality == "MR" and not scan.is_volume,
    "chest radiograph": lambda scan: scan.modality in ("CR", "DX") and "CHEST" in scan.info.get("Body part examined", ""),
    "multi-slice volume": lambda scan: scan.is_volume and scan.num_slices > 1,
    "fundus photograph": lambda scan: scan.modality == "OP" and scan.display_rgb is not None,
    "Shepp-Logan phantom": lambda scan: "Shepp-Logan" in scan.name,
}


def test_every_required_kind_of_sample_is_shipped():
    scans_read = [read_sample(name) for name in list_samples()]
    for kind, test in REQUIRED_KINDS.items():
        assert any(test(scan) for scan in scans_read), f"no sample is a {kind}"


def test_default_sample_is_a_chest_radiograph_or_ct_slice():
    first = read_sample(list_samples()[0])
    assert first.modality in ("CR", "DX", "CT") and not first.is_volume


def test_folder_is_small_and_every_file_is_documented():
    files = [path for path in SAMPLE_DIR.iterdir() if path.suffix in (".dcm", ".png")]
    assert sum(path.stat().st_size for path in files) < 8 * 1024 * 1024
    assert {path.name for path in files} == {sample.filename for sample in SAMPLES}
    sources = SOURCES.read_text()
    for sample in SAMPLES:
        assert f"`{sample.filename}`" in sources, f"{sample.filename} is not in SOURCES.md"
    assert "licence" in sources.lower() or "license" in sources.lower()


@pytest.mark.parametrize("sample", [sample for sample in SAMPLES if sample.filename.endswith(".dcm")],
                         ids=lambda sample: sample.filename)
def test_shipped_dicoms_carry_no_identifiers_or_private_tags(sample):
    dataset = pydicom.dcmread(SAMPLE_DIR / sample.filename)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "AccessionNumber",
                    "ReferringPhysicianName"):
        assert str(dataset.get(keyword, "")) == "", keyword
    for keyword in ("InstitutionName", "InstitutionAddress", "StationName", "OperatorsName", "StudyDescription",
                    "SeriesDescription", "DeviceSerialNumber", "OtherPatientIDs"):
        assert keyword not in dataset, keyword
    assert not any(element.tag.is_private for element in dataset.iterall())
    assert not any(0x6000 <= element.tag.group <= 0x60FF for element in dataset)  # no overlay planes
    assert dataset.PatientIdentityRemoved == "YES"
    assert dataset.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_read_sample_arrays_are_shared_and_read_only():
    first, second = read_sample("Head CT slice"), read_sample("Head CT slice")
    assert first.pixels is second.pixels
    with pytest.raises(ValueError):
        first.pixels[0, 0] = 0
    first.info["Modality"] = "changed"
    assert read_sample("Head CT slice").info["Modality"] == "CT"


def test_unknown_sample_name_lists_the_choices():
    with pytest.raises(ScanError, match="Head CT slice"):
        read_sample("No such scan")


def test_ct_sample_matches_pydicoms_rescale():
    path = SAMPLE_DIR / "ct_head.dcm"
    dataset = pydicom.dcmread(path)
    reference = pydicom.pixels.apply_modality_lut(dataset.pixel_array, dataset)
    scan = read_sample("Head CT slice")
    for row, column in [(256, 256), (100, 300), (0, 0), (400, 200)]:
        assert scan.pixels[row, column] == pytest.approx(reference[row, column])
    # Physical plausibility: outside the scanner's field of view and air are far below water.
    assert scan.pixels.min() <= -1000 and np.median(scan.pixels[200:300, 200:300]) > 0


def test_make_samples_reproduces_the_shipped_files(tmp_path):
    pytest.importorskip("data_store", reason="needs pydicom-data (requirements-dev.txt)")
    import runpy

    make_samples = runpy.run_path(str(SAMPLE_DIR / "make_samples.py"))
    written = make_samples["main"](tmp_path)
    for path in written:
        assert Path(path).read_bytes() == (SAMPLE_DIR / Path(path).name).read_bytes(), Path(path).name
