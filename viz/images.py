"""Basic image-to-pixels helpers shared by every drawing: grey and signed colour maps, crisp upscaling."""

from io import BytesIO
from typing import NamedTuple

import numpy as np
from PIL import Image

# Blue (negative) - white (zero) - red (positive): signed feature maps read at a glance.
_DIVERGING_STOPS = np.array(
    [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]], dtype=np.float32
)
# Perceptually ordered dark-to-bright map for non-negative responses (heat maps).
_HEAT_STOPS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)




class ColourScheme(NamedTuple):
    """The colours of one scheme a lecturer can choose: the signed ramp and the marks drawn on grids."""

    label: str
    diverging_stops: np.ndarray  # (5, 3): most negative, half, zero, half, most positive
    window: tuple  # the kernel's window and the output cell just computed
    kept: tuple  # the value max pooling keeps (also drawn with a white inner ring: shape, not colour alone)
    padding: tuple  # padding cells' hatching and the edge of the real input
    line: tuple  # grid lines
    pending: tuple  # output cells not computed yet
    names: tuple = ("orange", "green", "violet")  # the window's, the kept value's and the padding's colour, in words


# "colourblind": blue against orange for the sign, black for the window and sky blue for the kept value:
# no mark is told from another by red against green (Okabe and Ito's palette, seen the same by the common
# colour-vision deficiencies). "contrast": darker ramp ends, black lines and marks, for washed-out projectors.
COLOUR_SCHEMES = {
    "standard": ColourScheme("Standard", _DIVERGING_STOPS, window=(255, 140, 0), kept=(0, 170, 60),
                             padding=(124, 92, 196), line=(180, 180, 180), pending=(236, 236, 236)),
    "contrast": ColourScheme("High contrast",
                             np.array([[0, 40, 120], [95, 150, 215], [255, 255, 255], [235, 115, 85], [130, 0, 20]],
                                      dtype=np.float32),
                             window=(0, 0, 0), kept=(0, 110, 30), padding=(80, 30, 150), line=(70, 70, 70),
                             pending=(255, 255, 255), names=("black", "dark green", "violet")),
    "colourblind": ColourScheme("Colour-blind safe",
                                np.array([[0, 68, 136], [110, 165, 215], [247, 247, 247], [240, 175, 90],
                                          [180, 80, 0]], dtype=np.float32),
                                window=(0, 0, 0), kept=(86, 180, 233), padding=(170, 51, 119),
                                line=(170, 170, 170), pending=(236, 236, 236), names=("black", "sky blue", "purple")),
}


_RAMP_STEPS = 4096  # colours precomputed per ramp: within 1/4 of a colour level of the exact interpolation


def _ramp_table(stops):
    """The ramp through ``stops`` sampled at ``_RAMP_STEPS`` evenly spaced values of [0, 1], as uint8 (steps, 3)."""
    positions = np.linspace(0.0, 1.0, _RAMP_STEPS) * (len(stops) - 1)
    lower = np.minimum(np.floor(positions).astype(np.intp), len(stops) - 2)
    fraction = (positions - lower)[:, None]
    return np.rint(stops[lower] * (1.0 - fraction) + stops[lower + 1] * fraction).astype(np.uint8)


_RAMP_TABLES = {}


def _interpolate_stops(unit_values, stops):
    """Map values in [0, 1] of any shape onto an (..., 3) uint8 colour ramp through ``stops``.

    A table lookup: interpolating every pixel afresh took 100 ms for a 512 x 512 map, a lookup 5 ms,
    and every page colours several maps per rerun.
    """
    key = stops.tobytes()
    if key not in _RAMP_TABLES:
        _RAMP_TABLES[key] = _ramp_table(stops)
    values = np.asarray(unit_values, dtype=np.float32)
    scaled = values * np.float32(_RAMP_STEPS - 1) + np.float32(0.5)
    # fmax / fmin rather than clip: a NaN (a blank map) becomes 0, the ramp's first colour.
    np.fmax(scaled, 0.0, out=scaled)
    np.fmin(scaled, _RAMP_STEPS - 1, out=scaled)
    index = scaled.astype(np.int32).reshape(-1)
    return _RAMP_TABLES[key].take(index, axis=0).reshape(values.shape + (3,))


def magnitude_percentile(values, percent):
    """``np.percentile(np.abs(values), percent)`` (its linear definition), 0.0 for no values.

    Only the two order statistics around the rank are sorted into place: a sixth of np.percentile's
    time on a whole image's map, which every kernel change colours afresh.
    """
    magnitudes = np.abs(np.asarray(values, dtype=np.float32)).reshape(-1)
    if magnitudes.size == 0:
        return 0.0
    rank = (magnitudes.size - 1) * float(percent) / 100.0
    below = int(np.floor(rank))
    above = min(below + 1, magnitudes.size - 1)
    ordered = np.partition(magnitudes, (below, above))
    return float(ordered[below] + (ordered[above] - ordered[below]) * (rank - below))


def grey_rgb(image, low=0.0, high=1.0):
    """Grey image (H, W) -> RGB uint8 (H, W, 3), with ``low`` black and ``high`` white."""
    image = np.asarray(image, dtype=np.float32)
    span = float(high - low) or 1.0
    grey = np.rint(np.clip((image - low) / span, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def diverging_rgb(values, limit=None, *, scheme="standard"):
    """Signed values (H, W) -> RGB uint8: negative blue, zero white, positive red (orange when colour-blind safe).

    ``limit`` is the magnitude drawn at full colour (default: the largest magnitude present), so a
    shared ``limit`` gives several maps one colour scale. ``scheme`` names a ``COLOUR_SCHEMES`` entry.
    """
    values = np.asarray(values, dtype=np.float32)
    if limit is None:
        limit = float(np.max(np.abs(values))) if values.size else 1.0
    limit = limit if limit > 0 else 1.0
    return _interpolate_stops(0.5 + 0.5 * values / limit, COLOUR_SCHEMES[scheme].diverging_stops)


def heat_rgb(values, low=None, high=None):
    """Non-negative responses (H, W) -> RGB uint8 on a dark-to-bright heat ramp."""
    values = np.asarray(values, dtype=np.float32)
    low = float(values.min()) if low is None else low
    high = float(values.max()) if high is None else high
    span = (high - low) or 1.0
    return _interpolate_stops((values - low) / span, _HEAT_STOPS)


def blend(base_rgb, overlay_rgb, opacity):
    """Mix two RGB uint8 images; ``opacity`` (scalar or (H, W)) is the overlay's weight in [0, 1]."""
    weight = np.asarray(opacity, dtype=np.float32)
    if weight.ndim == 2:
        weight = weight[..., None]
    mixed = base_rgb.astype(np.float32) * (1.0 - weight) + overlay_rgb.astype(np.float32) * weight
    return np.rint(mixed).astype(np.uint8)


def upscale_nearest(rgb, factor):
    """Enlarge an image by an integer ``factor`` with nearest neighbour, so pixels stay crisp squares."""
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"upscale factor must be a whole number >= 1, got {factor}")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    factor = int(factor)
    if factor == 1:
        return rgb.copy()
    # Pillow's nearest resize copies each pixel into its square in one pass: 2-3x faster than two np.repeat.
    return np.array(Image.fromarray(rgb).resize((rgb.shape[1] * factor, rgb.shape[0] * factor), Image.NEAREST))


def fit_factor(height, width, target):
    """The largest whole upscale factor that keeps the longer side at most ``target`` pixels (>= 1)."""
    return max(1, int(target) // max(int(height), int(width), 1))


def png_bytes(rgb, compress_level=1):
    """Encode an RGB uint8 image (H, W, 3) as PNG bytes: lossless, so numbers drawn in it stay crisp.

    Level 1 compresses flat-coloured frames almost as well as the default 6 at a fraction of the time.
    """
    buffer = BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="PNG",
                                                                    compress_level=compress_level)
    return buffer.getvalue()


def jpeg_bytes(rgb, quality=90, *, sharp_text=False):
    """Encode an RGB uint8 image (H, W, 3) as JPEG bytes: small and fast, for photographs and maps.

    ``sharp_text=True`` keeps full colour resolution (4:4:4) at quality 95: frames with numbers drawn in
    them then look the same as a PNG at a few times less encoding time.
    """
    options = {"quality": 95, "subsampling": 0} if sharp_text else {"quality": quality}
    buffer = BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def qr_picture(modules, *, module_pixels=8, quiet_modules=4):
    """A QR code's modules (n, n) bool (True dark) as a black-on-white RGB uint8 image with its quiet zone.

    Each module becomes a ``module_pixels`` square; ``quiet_modules`` white modules surround the code, as
    the standard asks, so a phone reads it off a projector screen.
    """
    modules = np.asarray(modules, dtype=bool)
    framed = np.pad(modules, quiet_modules, constant_values=False)
    grey = np.where(framed, 0, 255).astype(np.uint8)
    return upscale_nearest(np.repeat(grey[..., None], 3, axis=-1), module_pixels)


BELOW_WINDOW_COLOUR = np.array([40, 90, 220], dtype=np.uint8)  # values under the window: shown black
ABOVE_WINDOW_COLOUR = np.array([230, 60, 40], dtype=np.uint8)  # values over the window: shown white


def window_clipping_rgb(image, pixels, bounds=None):
    """The windowed image (H, W) in [0, 1] as grey RGB uint8; with ``bounds`` = (lower, upper), the pixels
    (physical values (H, W)) at or below the window blue and at or above it red."""
    rgb = grey_rgb(image)
    if bounds is not None:
        lower, upper = bounds
        rgb[pixels <= lower] = BELOW_WINDOW_COLOUR
        rgb[pixels >= upper] = ABOVE_WINDOW_COLOUR
    return rgb


def outline(rgb, box, colour=(240, 180, 40)):
    """Draw a box's (top, left, height, width) border on an RGB frame in place (2 pixels wide on big images)."""
    top, left, height, width = box
    thickness = max(1, min(rgb.shape[:2]) // 200)
    bottom, right = top + height, left + width
    rgb[top:top + thickness, left:right] = colour
    rgb[bottom - thickness:bottom, left:right] = colour
    rgb[top:bottom, left:left + thickness] = colour
    rgb[top:bottom, right - thickness:right] = colour
