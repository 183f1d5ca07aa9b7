"""The shipped sample scans: their names, files and descriptions, read once per process and shared read-only."""

import dataclasses
import functools
from pathlib import Path
from typing import NamedTuple

from scans.errors import ScanError
from scans.reader import read

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_images"


class Sample(NamedTuple):
    name: str
    filename: str
    modality: str  # overrides the file's when the file cannot say (pictures)
    description: str


# First is the default. sample_images/make_samples.py writes these files; SOURCES.md says where each
# comes from and under which licence.
SAMPLES = (
    Sample("Chest radiograph", "chest_xray_cr.dcm", "",
           "Posteroanterior chest radiograph (computed radiography), stored MONOCHROME1, downsampled."),
    Sample("Head CT slice", "ct_head.dcm", "",
           "Axial head CT in Hounsfield units, with the scanner's own brain window."),
    Sample("Abdomen CT slice", "ct_abdomen.dcm", "",
           "Axial abdominal CT in Hounsfield units: lung bases, liver, kidneys, spine."),
    Sample("Abdomen MR with a liver lesion", "mr_liver_lesion.dcm", "",
           "Axial abdominal MR slice showing a focal liver lesion."),
    Sample("Shoulder MR", "mr_shoulder.dcm", "",
           "Coronal shoulder MR slice, downsampled."),
    Sample("Head MR volume", "mr_head_volume.dcm", "",
           "A small 3-D T1 head MR: 10 slices of 64 x 64 pixels, one multi-frame DICOM file."),
    Sample("Chest CT volume", "ct_chest_volume.dcm", "",
           "Chest CT in Hounsfield units: 48 slices 5 mm apart, 128 x 128 pixels of 2.3 mm, one multi-frame file."),
    Sample("Echocardiogram clip", "us_echo_clip.dcm", "",
           "Cardiac ultrasound: 30 frames 55 ms apart, a heartbeat in time rather than slices in space."),
    Sample("Retina fundus photograph", "fundus_retina.png", "OP",
           "Colour photograph of a normal retina (the kind of image used to screen for diabetic retinopathy)."),
    Sample("Shepp-Logan phantom", "shepp_logan_phantom.png", "OT",
           "The classic synthetic head section used to test CT reconstruction: known shapes, known values."),
)
_BY_NAME = {sample.name: sample for sample in SAMPLES}


def list_samples():
    """Names of the shipped sample images, the default first.

    Returns
    -------
    list of str
    """
    return [sample.name for sample in SAMPLES]


def sample_description(name):
    """The one-line description of a sample."""
    return _lookup(name).description


def read_sample(name):
    """Read a shipped sample scan.

    The file is read once per process; every call gets a fresh Scan record whose pixel arrays are
    shared and read-only (so one session cannot change another's image) and whose info and
    warnings are its own copies.

    Parameters
    ----------
    name : str
        One of ``list_samples()``.

    Returns
    -------
    Scan
    """
    scan = _read_sample_cached(_lookup(name).name)
    return dataclasses.replace(scan, info=dict(scan.info), warnings=list(scan.warnings))


def _lookup(name):
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ScanError(f"There is no sample image called {name!r}; choose one of: {', '.join(_BY_NAME)}.") from None


@functools.lru_cache(maxsize=None)
def _read_sample_cached(name):
    sample = _BY_NAME[name]
    path = SAMPLE_DIR / sample.filename
    if not path.is_file():
        raise ScanError(f"The sample file {path} is missing; run 'python sample_images/make_samples.py' to "
                        "recreate the sample images.")
    scan = read(path, name=name)
    for array in (scan.pixels, scan.display_rgb):
        if array is not None:
            array.flags.writeable = False
    changes = {}
    if scan.source_format != "DICOM":
        # The "a picture carries no metadata" warning is meant for uploads; these pictures are public.
        changes["warnings"] = []
    if sample.modality:
        changes["modality"] = sample.modality
        changes["info"] = {**scan.info, "Modality": sample.modality}
    return dataclasses.replace(scan, **changes)
