"""Regenerate sample_images/ from pydicom's and pydicom-data's test files and scikit-image's data.

Run from the repository root:  python sample_images/make_samples.py

Needs pydicom, pydicom-data, pylibjpeg + pylibjpeg-openjpeg (one source is JPEG 2000), scikit-image
and Pillow; no network. Every DICOM is rebuilt from a whitelist of image attributes (so no name, ID,
date, institution, free text, overlay or private tag of the source survives), given fresh
deterministic UIDs, and written uncompressed (Explicit VR Little Endian) so the app reads it with the
same code as an upload and needs no decoder plugin for its own samples.
"""

import sys
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from skimage import data as skimage_data
from skimage.transform import resize

OUT_DIR = Path(__file__).resolve().parent
# The longest side of a downsampled radiograph or MR: enough detail for the lessons, small files.
MAX_SIDE = 640

# Attributes describing the image only (never the patient, the visit, the people or the place).
KEEP = (
    "SOPClassUID", "Modality", "ImageType", "BodyPartExamined", "PatientPosition",
    "PhotometricInterpretation", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
    "HighBit", "PixelRepresentation", "PlanarConfiguration", "NumberOfFrames",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth",
    "PixelSpacing", "ImagerPixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "ImageOrientationPatient", "ImagePositionPatient", "KVP", "MagneticFieldStrength",
    "ViewPosition", "ConvolutionKernel", "AcquisitionContrast", "PixelPresentation",
    "VolumetricProperties", "VolumeBasedCalculationTechnique",
)
FUNCTIONAL_GROUP_KEEP = ("PixelMeasuresSequence", "PixelValueTransformationSequence", "FrameVOILUTSequence",
                         "PlaneOrientationSequence")


def source_path(filename):
    """A test file from pydicom or pydicom-data (found locally; never downloaded)."""
    path = pydicom.data.get_testdata_file(filename, download=False)
    if path is None:
        sys.exit(f"{filename} not found: install pydicom-data (pip install pydicom-data)")
    return path


def rebuild(source, pixels, *, spacing_scale=1.0, description):
    """A new dataset with only the KEEP attributes of ``source`` and the given stored pixels."""
    dataset = Dataset()
    for keyword in KEEP:
        if keyword in source and source.data_element(keyword).value not in (None, ""):
            setattr(dataset, keyword, source.data_element(keyword).value)
    shared = source.get("SharedFunctionalGroupsSequence")
    if shared:
        item = Dataset()
        for keyword in FUNCTIONAL_GROUP_KEEP:
            if keyword in shared[0]:
                setattr(item, keyword, shared[0][keyword].value)
        dataset.SharedFunctionalGroupsSequence = Sequence([item])
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in dataset:
            values = [float(value) * spacing_scale for value in dataset.data_element(keyword).value]
            setattr(dataset, keyword, [f"{value:.6g}" for value in values])
    frames = pixels.shape[0] if pixels.ndim == 3 and dataset.get("SamplesPerPixel", 1) == 1 else 1
    dataset.Rows, dataset.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    if frames > 1:
        dataset.NumberOfFrames = frames
    # Type 2 patient and study attributes: present and empty, as the standard allows.
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "AccessionNumber", "ReferringPhysicianName", "StudyID"):
        setattr(dataset, keyword, "")
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = "ConvScope make_samples: whitelisted image attributes, new UIDs"
    dataset.BurnedInAnnotation = "NO"
    dataset.ImageComments = description
    seed = [description]
    dataset.StudyInstanceUID = generate_uid(entropy_srcs=seed + ["study"])
    dataset.SeriesInstanceUID = generate_uid(entropy_srcs=seed + ["series"])
    dataset.SOPInstanceUID = generate_uid(entropy_srcs=seed + ["instance"])
    dataset.InstanceNumber = 1
    dtype = np.int16 if dataset.get("PixelRepresentation", 0) == 1 else np.uint16
    if dataset.BitsAllocated == 8:
        dtype = np.uint8
    dataset.PixelData = np.ascontiguousarray(pixels.astype(dtype)).tobytes()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset


def downsample(stored, source, max_side=MAX_SIDE):
    """Anti-aliased downsampling of stored values, rounded back into the stored bit range."""
    rows, columns = stored.shape
    factor = max(rows, columns) / max_side
    if factor <= 1:
        return stored, 1.0
    shape = (round(rows / factor), round(columns / factor))
    smaller = resize(stored.astype(np.float64), shape, order=1, anti_aliasing=True, preserve_range=True)
    bits = int(source.BitsStored)
    low, high = ((-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if source.get("PixelRepresentation", 0) == 1
                 else (0, 2 ** bits - 1))
    # The true scale between pixel centres, per axis (nearly equal here).
    return np.clip(np.rint(smaller), low, high), rows / shape[0]


def write_dicom(out_dir, filename, source_name, description, max_side=None):
    source = pydicom.dcmread(source_path(source_name))
    stored = source.pixel_array
    scale = 1.0
    if max_side is not None:
        stored, scale = downsample(stored, source, max_side)
    dataset = rebuild(source, stored, spacing_scale=scale, description=description)
    dataset.save_as(out_dir / filename, enforce_file_format=True)
    return out_dir / filename


def write_fundus(out_dir):
    rgb = skimage_data.retina()  # (1411, 1411, 3) uint8, CC0 (see SOURCES.md)
    smaller = resize(rgb, (512, 512), order=1, anti_aliasing=True, preserve_range=True)
    path = out_dir / "fundus_retina.png"
    Image.fromarray(np.clip(np.rint(smaller), 0, 255).astype(np.uint8), mode="RGB").save(path, optimize=True)
    return path


def write_phantom(out_dir):
    phantom = skimage_data.shepp_logan_phantom()  # (400, 400) float64 in [0, 1]
    path = out_dir / "shepp_logan_phantom.png"
    # 16-bit grey keeps the phantom's small contrasts (0.1 vs 0.2 ...) exactly as levels of 65535.
    Image.fromarray(np.rint(phantom * 65535).astype(np.uint16)).save(path, optimize=True)
    return path


def main(out_dir=OUT_DIR):
    """Write every sample into ``out_dir`` (default: this folder) and print their sizes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        write_dicom(out_dir, "chest_xray_cr.dcm", "RG1_UNCR.dcm", "Chest radiograph, downsampled", MAX_SIDE),
        write_dicom(out_dir, "ct_head.dcm", "693_UNCR.dcm", "Head CT slice"),
        write_dicom(out_dir, "ct_abdomen.dcm", "explicit_VR-UN.dcm", "Abdomen CT slice"),
        write_dicom(out_dir, "mr_liver_lesion.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm", "Abdomen MR, liver lesion"),
        write_dicom(out_dir, "mr_shoulder.dcm", "MR2_UNCR.dcm", "Shoulder MR, downsampled", 512),
        write_dicom(out_dir, "mr_head_volume.dcm", "emri_small.dcm", "Head MR volume, 10 slices"),
        write_fundus(out_dir),
        write_phantom(out_dir),
    ]
    total = 0
    for path in written:
        size = path.stat().st_size
        total += size
        print(f"{path.name:28s} {size / 1024:8.0f} kB")
    print(f"{'total':28s} {total / 1024:8.0f} kB")
    return written


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else OUT_DIR)
