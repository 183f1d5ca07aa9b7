"""What of a file's metadata may be shown (a whitelist), and the privacy warnings an image deserves.

Uploads are patients' data. Only attributes that describe the image itself are ever copied out of a
DICOM file: never names, identifiers, dates, times, institutions, people, free-text descriptions or
private tags. The whitelist is positive (we name what may be shown), so a new or unusual tag can
never slip through.
"""

import numpy as np

UPLOAD_NOTICE = (
    "Your file is read in this server's memory for this browser session only: it is not saved to "
    "disk, not logged and not shared with other users, and it is gone when you close the tab. Only the "
    "safe attributes listed below are shown. Upload de-identified images only; ConvScope is for "
    "teaching, not for diagnosis."
)

# Keyword -> label shown. Only coded, non-identifying attributes that describe the image.
# (Rows, columns, spacing, window and transfer syntax are added by the reader in their own form.)
SAFE_DICOM_ATTRIBUTES = {
    "Modality": "Modality",
    "BodyPartExamined": "Body part examined",
    "PhotometricInterpretation": "Photometric interpretation",
    "SamplesPerPixel": "Samples per pixel",
    "BitsAllocated": "Bits allocated",
    "BitsStored": "Bits stored",
    "PixelRepresentation": "Pixel representation (0 unsigned, 1 signed)",
    "RescaleSlope": "Rescale slope",
    "RescaleIntercept": "Rescale intercept",
    "RescaleType": "Rescale type",
    "SliceThickness": "Slice thickness (mm)",
    "SpacingBetweenSlices": "Spacing between slices (mm)",
    "FrameTime": "Frame time (ms)",  # a clip's frames follow one another in time
    "CineRate": "Cine rate (frames/s)",
    "PatientPosition": "Patient position",
    "ImageType": "Image type",
    "MagneticFieldStrength": "Magnetic field strength (T)",
    "KVP": "Peak kilovoltage (kVp)",
    "ConvolutionKernel": "Reconstruction kernel",
    "LossyImageCompression": "Lossy image compression (00 no, 01 yes)",
    "BurnedInAnnotation": "Burned-in annotation",
    "PatientIdentityRemoved": "Patient identity removed",
}
# Longest value shown: coded strings are short, so anything longer is not what the attribute means.
_MAX_VALUE_CHARS = 64

SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
# Identifying attributes we look for only to warn that they are present; their values are never read out.
_IDENTIFYING_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
                         "OtherPatientNames", "PatientAddress", "AccessionNumber", "InstitutionName",
                         "ReferringPhysicianName")


def safe_value(value):
    """A whitelisted attribute's value as a short, single-line string ('' when absent or unreadable)."""
    if value is None:
        return ""
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            text = " \\ ".join(_format_number(item) for item in value)
        else:
            text = _format_number(value)
    except Exception:  # a damaged value: show nothing rather than fail
        return ""
    text = " ".join(text.split())
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS - 1] + "…"


def _format_number(value):
    if isinstance(value, (float, np.floating)) or type(value).__name__ in ("DSfloat", "DSdecimal"):
        return f"{float(value):.6g}"
    return str(value)


def safe_dicom_info(dataset):
    """The whitelisted attributes present in ``dataset``, as label -> string.

    Parameters
    ----------
    dataset : pydicom.Dataset

    Returns
    -------
    dict of str to str
        Only keys of SAFE_DICOM_ATTRIBUTES (as their labels), only when present and non-empty.
    """
    info = {}
    for keyword, label in SAFE_DICOM_ATTRIBUTES.items():
        try:
            element = dataset.get(keyword)
        except Exception:  # a damaged element: leave it out
            continue
        text = safe_value(element)
        if text:
            info[label] = text
    return info


def dicom_privacy_warnings(dataset, modality, sop_class_uid):
    """Warnings about text or identifiers a DICOM image may carry.

    Parameters
    ----------
    dataset : pydicom.Dataset
    modality : str
    sop_class_uid : str

    Returns
    -------
    list of str
    """
    warnings = []
    burned_in = safe_value(_get(dataset, "BurnedInAnnotation")).upper()
    if burned_in == "YES":
        warnings.append("This image says it has burned-in annotation (BurnedInAnnotation = YES): text such as "
                        "a name or date may be part of the pixels. Check the image before showing it.")
    if modality == "US":
        warnings.append("Ultrasound images often carry text burned into the pixels (names, dates, "
                        "settings). Check the image before showing it.")
    if sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX):
        warnings.append("This is a secondary-capture image (a screenshot-like copy); these often carry "
                        "burned-in text. Check the image before showing it.")
    present = [keyword for keyword in _IDENTIFYING_KEYWORDS if safe_value(_get(dataset, keyword)).strip()]
    if present:
        warnings.append("This file still contains identifying attributes (for example "
                        f"{', '.join(present[:3])}); ConvScope does not show them, but the file is not "
                        "de-identified. Please de-identify scans before uploading them.")
    return warnings


def raster_privacy_warnings():
    """The warning for a picture file (PNG/JPEG/TIFF), which carries no metadata we can check."""
    return ["A picture file carries no metadata ConvScope can check: make sure no name, date or other "
            "identifier is visible in the image itself."]


def _get(dataset, keyword):
    try:
        return dataset.get(keyword)
    except Exception:
        return None
