"""Grey-level windowing: CT window presets, the level/width mapping to [0, 1], and an automatic window.

A window (level L, width W) shows the values from L - W/2 (black) to L + W/2 (white) and clips the
rest; on a CT in Hounsfield units a narrow window around 40 HU separates grey and white matter,
a wide one around -600 HU shows the lung.

Why not ``pydicom.pixels.apply_windowing``: it reads the window from the dataset (we need the level
and width a person sets with sliders), it returns values in the stored bit depth's range rather than
[0, 1], and it uses the DICOM "LINEAR" function (level - 0.5, width - 1), which makes the edges of the
window differ from what the app explains on screen by half a unit. ``apply_window`` here uses exactly
the formula the lesson shows: lower = L - W/2, upper = L + W/2, out = (x - lower) / W, clipped.
"""

import numpy as np

# CT window presets as (level, width) in Hounsfield units.
# Source: Radiopaedia, "Windowing (CT)", https://radiopaedia.org/articles/windowing-ct (rID 52108),
# which gives these values; where it gives a range (subdural W 130-300, L 50-100) we take a value
# inside it. Ordered head first, then chest, abdomen, bone.
WINDOW_PRESETS = {
    "Brain": (40.0, 80.0),
    "Subdural": (75.0, 215.0),
    "Stroke": (40.0, 40.0),
    "Temporal bone": (600.0, 2800.0),
    "Head soft tissue": (40.0, 380.0),
    "Lung": (-600.0, 1500.0),
    "Mediastinum": (50.0, 350.0),
    "Abdomen soft tissue": (50.0, 400.0),
    "Liver": (30.0, 150.0),
    "Spine soft tissue": (50.0, 250.0),
    "Bone": (400.0, 1800.0),
}

# Percentiles for the automatic window: ignore the brightest and darkest 0.5 % (noise, markers,
# burned-in text) so one hot pixel cannot squash the whole image to black.
AUTO_WINDOW_PERCENTILES = (0.5, 99.5)
_AUTO_WINDOW_MAX_SAMPLES = 1_000_000


def window_bounds(level, width):
    """The displayed range of a window.

    Parameters
    ----------
    level, width : float
        Window centre and width; width must be > 0.

    Returns
    -------
    (lower, upper) : tuple of float
        lower = level - width / 2 (shown black), upper = level + width / 2 (shown white).
    """
    level, width = _check_window(level, width)
    return level - width / 2.0, level + width / 2.0


def apply_window(pixels, level, width):
    """Map grey values through a window to float32 in [0, 1].

    Parameters
    ----------
    pixels : array_like, shape (H, W) or (D, H, W)
        Values in physical units (HU for CT).
    level : float
        Window centre L.
    width : float
        Window width W > 0.

    Returns
    -------
    numpy.ndarray, float32, same shape as ``pixels``
        0 at and below L - W/2, 1 at and above L + W/2, linear in between.

    Examples
    --------
    >>> apply_window([-1000.0, 0.0, 40.0, 80.0, 1000.0], 40, 80).tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    level, width = _check_window(level, width)
    values = np.asarray(pixels, dtype=np.float32)
    lower = np.float32(level - width / 2.0)
    out = (values - lower) * np.float32(1.0 / width)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def auto_window(pixels):
    """A percentile-based window for images without a standard scale (MR, radiographs, photos).

    Parameters
    ----------
    pixels : array_like, shape (H, W) or (D, H, W)

    Returns
    -------
    (level, width) : tuple of float
        The window from the 0.5th to the 99.5th percentile of the finite values; width is at
        least 1e-6 times the value scale (and > 0) even for a flat image.
    """
    values = np.asarray(pixels, dtype=np.float32).ravel()
    if values.size > _AUTO_WINDOW_MAX_SAMPLES:
        # A regular subsample gives the same percentiles to well under a grey level and keeps the
        # cost of a big volume small.
        values = values[:: values.size // _AUTO_WINDOW_MAX_SAMPLES + 1]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.5, 1.0
    lower, upper = (float(v) for v in np.percentile(values, AUTO_WINDOW_PERCENTILES))
    if upper <= lower:
        lower, upper = float(values.min()), float(values.max())
    width = upper - lower
    if width <= 0:
        width = max(abs(upper), 1.0)
    return (lower + upper) / 2.0, width


def _check_window(level, width):
    try:
        level, width = float(level), float(width)
    except (TypeError, ValueError):
        raise ValueError(f"window level and width must be numbers, got level={level!r}, width={width!r}") from None
    if not np.isfinite(level) or not np.isfinite(width) or width <= 0:
        raise ValueError(f"window width must be a finite number > 0 (and level finite); got level={level}, "
                         f"width={width}. Choose a wider window.")
    return level, width
