"""Preprocessing a slice into network input: region-of-interest crop, anti-aliased resize, normalisation."""

import numpy as np
from skimage.transform import resize as _skimage_resize

from scans.windowing import apply_window

NORMALISATIONS = ("window", "min-max", "z-score")


def crop(image, top, left, height, width):
    """Cut a region of interest out of an image.

    Parameters
    ----------
    image : array_like, shape (H, W) or (H, W, C)
    top, left : int
        Row and column of the region's top-left pixel, 0-based.
    height, width : int
        Size of the region, >= 1; the region must lie inside the image.

    Returns
    -------
    numpy.ndarray, shape (height, width) or (height, width, C)
        A copy (so changing it never changes the scan).

    Examples
    --------
    >>> crop(np.arange(16).reshape(4, 4), 1, 2, 2, 2).tolist()
    [[6, 7], [10, 11]]
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"crop expects an image of shape (H, W) or (H, W, C), got shape {image.shape}")
    rows, columns = image.shape[:2]
    top, left, height, width = (int(value) for value in (top, left, height, width))
    if height < 1 or width < 1:
        raise ValueError(f"crop size must be at least 1 x 1, got {height} x {width}")
    if top < 0 or left < 0 or top + height > rows or left + width > columns:
        raise ValueError(
            f"crop region rows {top}..{top + height - 1}, columns {left}..{left + width - 1} is outside the "
            f"{rows} x {columns} image; choose a region inside it"
        )
    return image[top:top + height, left:left + width].copy()


def centre_square(shape_hw, size):
    """(top, left, height, width) of the largest square of side <= size centred in an image of shape_hw."""
    rows, columns = (int(value) for value in shape_hw)
    side = max(1, min(int(size), rows, columns))
    return (rows - side) // 2, (columns - side) // 2, side, side


def resize(image, output_shape, *, anti_aliasing=True):
    """Resize an image with scikit-image, smoothing first when shrinking so fine detail does not alias.

    Parameters
    ----------
    image : array_like, shape (H, W)
    output_shape : tuple of int
        (rows, columns) wanted, each >= 1.
    anti_aliasing : bool
        Gaussian pre-filter when shrinking (scikit-image's default sigma, (scale - 1) / 2).

    Returns
    -------
    numpy.ndarray, float32, shape output_shape
        Bilinear (order 1) interpolation of the values, in the same units as ``image``.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"resize expects a 2-D image (H, W), got shape {image.shape}")
    try:
        rows, columns = (int(value) for value in output_shape)
    except (TypeError, ValueError):
        raise ValueError(f"output_shape must be (rows, columns), got {output_shape!r}") from None
    if rows < 1 or columns < 1:
        raise ValueError(f"output_shape must be at least (1, 1), got {output_shape!r}")
    if (rows, columns) == image.shape:
        return image.copy()
    shrinking = rows < image.shape[0] or columns < image.shape[1]
    resized = _skimage_resize(image, (rows, columns), order=1, mode="reflect",
                              anti_aliasing=bool(anti_aliasing and shrinking), preserve_range=True)
    return resized.astype(np.float32)


def normalise(image, method, *, level=None, width=None):
    """Bring intensities to the range a network is trained on.

    Parameters
    ----------
    image : array_like, shape (H, W)
        Values in physical units (HU for CT) or grey levels.
    method : {"window", "min-max", "z-score"}
        "window": clip to the window [level - width/2, level + width/2] and scale to [0, 1]
        (needs level and width). "min-max": (x - min) / (max - min), to [0, 1]. "z-score":
        (x - mean) / standard deviation, so the image has mean 0 and standard deviation 1.
    level, width : float, optional
        The window, for method "window".

    Returns
    -------
    numpy.ndarray, float32, same shape as ``image``
        A flat image (max == min, or standard deviation 0) gives zeros.
    """
    values = np.asarray(image, dtype=np.float32)
    if method == "window":
        if level is None or width is None:
            raise ValueError("normalise(method='window') needs level and width; pass the window you show")
        return apply_window(values, level, width)
    if method == "min-max":
        low, high = float(values.min()), float(values.max())
        if high <= low:
            return np.zeros_like(values)
        return ((values - np.float32(low)) / np.float32(high - low)).astype(np.float32)
    if method == "z-score":
        mean = float(values.mean(dtype=np.float64))
        spread = float(values.std(dtype=np.float64))
        if spread == 0:
            return np.zeros_like(values)
        return ((values - np.float32(mean)) / np.float32(spread)).astype(np.float32)
    raise ValueError(f"unknown normalisation {method!r}; choose one of {', '.join(NORMALISATIONS)}")


class PipelineStep:
    """One stage of preprocessing: its label, what it did, and the array after it.

    Attributes
    ----------
    label : str
    detail : str
        One sentence with the numbers (region, sizes, formula).
    values : numpy.ndarray, float32, shape (h, w)
    """

    __slots__ = ("label", "detail", "values")

    def __init__(self, label, detail, values):
        self.label, self.detail, self.values = label, detail, values

    def __repr__(self):
        return f"PipelineStep({self.label!r}, shape={self.values.shape})"


def run_pipeline(pixels, *, roi=None, output_shape=None, anti_aliasing=True, method="window", level=None,
                 width=None):
    """Apply the preprocessing a person switched on, keeping every intermediate array.

    Order: crop (physical units) -> resize (physical units) -> normalise, so the window and the
    statistics of min-max and z-score are those of what the network will see.

    Parameters
    ----------
    pixels : array_like, shape (H, W)
        One slice in physical units.
    roi : tuple of int, optional
        (top, left, height, width) of the region of interest; None keeps the whole image.
    output_shape : tuple of int, optional
        (rows, columns) to resize to; None keeps the size.
    anti_aliasing : bool
    method : {"window", "min-max", "z-score"}
    level, width : float, optional
        The window, for method "window".

    Returns
    -------
    list of PipelineStep
        The first is the input slice, the last is the network input (float32).
    """
    values = np.asarray(pixels, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"run_pipeline expects one slice (H, W), got shape {values.shape}")
    steps = [PipelineStep("Slice", f"{values.shape[0]} x {values.shape[1]} values in physical units", values)]
    if roi is not None:
        top, left, height, width_roi = roi
        values = crop(values, top, left, height, width_roi)
        steps.append(PipelineStep("Region of interest",
                                  f"rows {top}..{top + height - 1}, columns {left}..{left + width_roi - 1}: "
                                  f"{height} x {width_roi}", values))
    if output_shape is not None and tuple(output_shape) != values.shape:
        before = values.shape
        values = resize(values, output_shape, anti_aliasing=anti_aliasing)
        smoothing = "with anti-aliasing (blur before shrinking)" if anti_aliasing else "without anti-aliasing"
        steps.append(PipelineStep("Resize", f"{before[0]} x {before[1]} -> {values.shape[0]} x {values.shape[1]}, "
                                            f"bilinear, {smoothing}", values))
    if method == "window":
        low, high = level - width / 2.0, level + width / 2.0
        detail = f"window L {level:.6g} / W {width:.6g}: {low:.6g} -> 0, {high:.6g} -> 1, clipped outside"
    elif method == "min-max":
        detail = f"(x - {float(values.min()):.6g}) / ({float(values.max()):.6g} - {float(values.min()):.6g})"
    else:
        detail = f"(x - mean {float(values.mean()):.6g}) / std {float(values.std()):.6g}"
    values = normalise(values, method, level=level, width=width)
    steps.append(PipelineStep("Network input", detail, values))
    return steps


def value_histogram(values, *, bins=64, value_range=None):
    """Counts of values in equal bins, for the histograms the page draws.

    Parameters
    ----------
    values : array_like
    bins : int
    value_range : (float, float), optional
        Default: the finite minimum and maximum.

    Returns
    -------
    (edges, counts) : numpy.ndarray float64 (bins + 1,), numpy.ndarray int64 (bins,)
    """
    values = np.asarray(values, dtype=np.float32).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.linspace(0.0, 1.0, bins + 1), np.zeros(bins, dtype=np.int64)
    low, high = value_range if value_range is not None else (float(values.min()), float(values.max()))
    if high <= low:
        high = low + 1.0
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return edges, counts.astype(np.int64)
