"""The Scan record: pixels in physical units plus the safe facts about them, as every reader returns it."""

from dataclasses import dataclass, field

import numpy as np

from scans.errors import ScanError


@dataclass(frozen=True, eq=False)
class Scan:
    """One image or volume, ready for windowing and preprocessing.

    Attributes
    ----------
    pixels : numpy.ndarray, float32, shape (H, W) or (D, H, W)
        Grey values in the file's physical units after the modality LUT: Hounsfield units for CT,
        scanner units for MR, detector units for radiographs, 0..255 (or 0..65535) for pictures.
        MONOCHROME1 images are already inverted, so larger always means brighter.
    modality : str
        DICOM modality code ("CT", "MR", "CR", "DX", "US", "OT" ...); "OP" for the fundus photograph;
        "OT" (other) for pictures without metadata.
    units : str
        "HU" for CT in Hounsfield units, otherwise "".
    spacing : tuple of float or None
        (row_mm, col_mm): the distance between pixel centres, or None when the file does not say.
    default_window : tuple of float
        (level, width) to show first: the file's own window when it has one, else an automatic one.
    info : dict of str to str
        Whitelisted, safe metadata only (modality, size, spacing, window, body part, ...). Never
        names, identifiers, dates, institutions, free text or private tags.
    warnings : list of str
        Things a person must know before showing the image (burned-in text, ...).
    display_rgb : numpy.ndarray, uint8, shape pixels.shape + (3,), or None
        The original colours, kept for display when the source was colour; ``pixels`` is then its
        luminance.
    name : str
        A label for the scan (the sample name, or the uploaded file's name).
    file_windows : tuple of (level, width)
        Every window the file itself suggests (DICOM WindowCenter/WindowWidth), in file order, in
        the same units as ``pixels``.
    slice_spacing_mm : float or None
        For volumes, the distance between slices when the file says it.
    """

    pixels: np.ndarray
    modality: str
    units: str
    spacing: tuple | None
    default_window: tuple
    info: dict
    warnings: list
    display_rgb: np.ndarray | None
    name: str
    file_windows: tuple = ()
    slice_spacing_mm: float | None = None
    source_format: str = field(default="")

    def __post_init__(self):
        if self.pixels.dtype != np.float32 or self.pixels.ndim not in (2, 3):
            raise ScanError(
                f"Scan pixels must be float32 (H, W) or (D, H, W); got {self.pixels.dtype} with shape "
                f"{self.pixels.shape}. This is a bug in the reader, please report it."
            )

    @property
    def is_volume(self):
        """True for a stack of slices (D, H, W), False for a single image (H, W)."""
        return self.pixels.ndim == 3

    @property
    def num_slices(self):
        """The number of slices D of a volume, 1 for a single image."""
        return self.pixels.shape[0] if self.is_volume else 1

    @property
    def shape_hw(self):
        """(H, W) of one slice."""
        return tuple(self.pixels.shape[-2:])

    def slice(self, index):
        """One slice as float32 (H, W); for a single image, index 0 is the image itself.

        Parameters
        ----------
        index : int
            0 <= index < num_slices.
        """
        index = int(index)
        if not 0 <= index < self.num_slices:
            raise ScanError(f"slice index {index} is outside 0..{self.num_slices - 1} for scan '{self.name}'")
        return self.pixels[index] if self.is_volume else self.pixels

    def slice_rgb(self, index):
        """The colour version of one slice as uint8 (H, W, 3), or None when the source was grey."""
        if self.display_rgb is None:
            return None
        index = int(index)
        self.slice(index)  # validates the index
        return self.display_rgb[index] if self.is_volume else self.display_rgb
