"""Privacy: only whitelisted attributes reach Scan.info; identifiers never do; text-risk warnings appear."""

import io

import pydicom
import pydicom.data
import pytest

from scans import read
from scans.privacy import SAFE_DICOM_ATTRIBUTES

SECRETS = {
    "PatientName": "Doe^Jane^Secret",
    "PatientID": "PID-99887766",
    "PatientBirthDate": "19610203",
    "OtherPatientIDs": "OTHER-5544",
    "AccessionNumber": "ACC-123123",
    "InstitutionName": "Saint Nowhere General Hospital",
    "InstitutionAddress": "1 Hidden Lane, Secretville",
    "ReferringPhysicianName": "House^Gregory",
    "StudyDate": "20230405",
    "StudyDescription": "CT CHEST FOR JANE DOE",
    "SeriesDescription": "Series of Jane Doe",
    "StationName": "SCANNER-ROOM-7",
    "OperatorsName": "Smith^Operator",
}
PRIVATE_VALUE = "PRIVATE-VENDOR-SECRET-VALUE"


def shipped_file(name):
    path = pydicom.data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def identifying_dicom(**changes):
    dataset = pydicom.dcmread(shipped_file("CT_small.dcm"))
    for keyword, value in {**SECRETS, **changes}.items():
        setattr(dataset, keyword, value)
    block = dataset.private_block(0x0029, "ConvScope test", create=True)
    block.add_new(0x01, "LO", PRIVATE_VALUE)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def everything_shown(scan):
    return " ".join([*scan.info.keys(), *scan.info.values(), *scan.warnings, scan.name])


def test_identifiers_never_reach_info_or_warnings():
    scan = read(identifying_dicom(), name="upload.dcm")
    shown = everything_shown(scan)
    for value in [*SECRETS.values(), PRIVATE_VALUE, "Jane", "Secret", "1961", "20230405", "Nowhere"]:
        assert value.lower() not in shown.lower(), f"{value!r} leaked into {shown!r}"
    assert scan.info["Modality"] == "CT"


def test_info_keys_come_from_the_whitelist():
    scan = read(identifying_dicom())
    reader_labels = {"Format", "Image kind (SOP class)", "Image size", "Pixel spacing (mm, row x column)",
                     "Window in the file (level / width)", "Units", "Transfer syntax", "File size"}
    assert set(scan.info) <= set(SAFE_DICOM_ATTRIBUTES.values()) | reader_labels


def test_a_file_with_identifiers_is_flagged_without_showing_them():
    scan = read(identifying_dicom())
    assert any("not de-identified" in warning for warning in scan.warnings)
    clean = pydicom.dcmread(shipped_file("CT_small.dcm"))
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "AccessionNumber",
                    "InstitutionName", "ReferringPhysicianName"):
        if keyword in clean:
            setattr(clean, keyword, "")
    buffer = io.BytesIO()
    clean.save_as(buffer)
    assert not any("not de-identified" in warning for warning in read(buffer.getvalue()).warnings)


def test_burned_in_annotation_yes_warns():
    scan = read(identifying_dicom(BurnedInAnnotation="YES"))
    assert any("burned-in annotation" in warning for warning in scan.warnings)
    scan = read(identifying_dicom(BurnedInAnnotation="NO"))
    assert not any("BurnedInAnnotation = YES" in warning for warning in scan.warnings)


def test_ultrasound_and_secondary_capture_warn():
    assert any("Ultrasound" in warning for warning in read(identifying_dicom(Modality="US")).warnings)
    secondary = read(shipped_file("SC_rgb.dcm"))  # SOP class 1.2.840.10008.5.1.4.1.1.7
    assert any("secondary-capture" in warning for warning in secondary.warnings)
    multiframe_secondary = identifying_dicom(SOPClassUID="1.2.840.10008.5.1.4.1.1.7.2")
    assert any("secondary-capture" in warning for warning in read(multiframe_secondary).warnings)


def test_picture_uploads_get_the_no_metadata_warning():
    from PIL import Image
    import numpy as np

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(buffer, format="PNG")
    assert any("no metadata" in warning for warning in read(buffer.getvalue()).warnings)


def test_overlong_whitelisted_values_are_cut():
    scan = read(identifying_dicom(BodyPartExamined="X" * 16, ConvolutionKernel="K" * 200))
    assert len(scan.info["Reconstruction kernel"]) <= 64
