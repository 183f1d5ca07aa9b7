"""Reading pictures (PNG, JPEG, TIFF) through Pillow, with the pixel count checked before decoding."""

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from scans.errors import ScanError
from scans.privacy import raster_privacy_warnings
from scans.safety import MAX_SLICES, MAX_VOXELS, check_declared_size
from scans.scan import Scan
from scans.windowing import auto_window

# Pillow's own decompression-bomb guard, capped at our limit: it warns above MAX_IMAGE_PIXELS and
# raises above twice that. The warning is made an error for the whole process (a filter added once,
# which is thread-safe, unlike catch_warnings around each call) and turned into a ScanError below.
Image.MAX_IMAGE_PIXELS = MAX_VOXELS
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

FORMATS = ("PNG", "JPEG", "TIFF")
_LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L"


def read_raster(data, name):
    """Read a PNG, JPEG or TIFF held in memory into a Scan.

    Parameters
    ----------
    data : bytes
    name : str

    Returns
    -------
    Scan
        pixels float32 (H, W) in the file's grey levels (0..255 for 8-bit, 0..65535 for 16-bit), or
        (D, H, W) for a multi-page TIFF; colour pictures also keep display_rgb uint8 (..., 3).
    """
    try:
        image_format, grey_pages, colour_pages = _decode_pages(data)
    except ScanError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ScanError(f"This picture is too large to read safely ({error}).") from None
    except UnidentifiedImageError:
        raise ScanError("This file is not a DICOM file or a PNG, JPEG or TIFF image that can be read.") from None
    except MemoryError:
        raise ScanError("Decoding this picture needs more memory than the server has free.") from None
    except Exception as error:  # Pillow raises many kinds of errors on damaged files
        raise ScanError(f"The picture is damaged or truncated and cannot be decoded "
                        f"({type(error).__name__}: {_short(error)}).") from None
    pages = len(grey_pages)
    if len({page.shape for page in grey_pages}) > 1:
        raise ScanError("The pages of this TIFF have different sizes, so they cannot be one volume. "
                        "Save each page as its own file.")
    pixels = grey_pages[0] if pages == 1 else np.stack(grey_pages)
    if not np.all(np.isfinite(pixels)):  # floating-point TIFFs may hold NaN or infinity
        pixels = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0)
    display_rgb = None
    if any(page is not None for page in colour_pages):
        # A grey page among colour pages is shown as grey in the colour stack.
        colour_pages = [page if page is not None else np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, -1)
                        for page, grey in zip(colour_pages, grey_pages)]
        display_rgb = colour_pages[0] if pages == 1 else np.stack(colour_pages)
    info = {
        "Format": image_format,
        "Image size": (f"{pixels.shape[0]} x {pixels.shape[1]} pixels" if pages == 1
                       else f"{pages} pages x {pixels.shape[1]} x {pixels.shape[2]} pixels"),
        "Colour": "colour (shown in colour; the lessons use its brightness)" if display_rgb is not None else "grey",
        "Grey levels": f"{float(pixels.min()):.6g} to {float(pixels.max()):.6g}",
        "Units": "grey levels (no physical scale)",
        "File size": f"{len(data) / 1024:,.0f} kB",
    }
    return Scan(pixels=pixels, modality="OT", units="", spacing=None, default_window=auto_window(pixels),
                info=info, warnings=raster_privacy_warnings(), display_rgb=display_rgb, name=name,
                source_format=image_format)


def _decode_pages(data):
    """Open with Pillow, check every declared size, decode: (format, grey pages, colour pages or Nones)."""
    with Image.open(io.BytesIO(data)) as picture:
        if picture.format not in FORMATS:
            raise ScanError(f"This is a {picture.format} picture; ConvScope reads DICOM, PNG, JPEG and TIFF. "
                            "Convert it to PNG first.")
        image_format = picture.format
        width, height = picture.size
        pages = _page_count(picture)
        check_declared_size(height, width, pages, what=f"{image_format} image")
        grey_pages, colour_pages = zip(*(_page_arrays(picture, index) for index in range(pages)))
    return image_format, grey_pages, colour_pages


def _page_count(picture):
    pages = int(getattr(picture, "n_frames", 1) or 1)
    if pages > MAX_SLICES:
        raise ScanError(f"This picture has {pages} pages; ConvScope reads at most {MAX_SLICES}.")
    return pages


def _page_arrays(picture, index):
    """One page -> (grey float32 (H, W), RGB uint8 (H, W, 3) or None)."""
    picture.seek(index)
    # Each TIFF page has its own header: check its size before decoding it, as for the first page.
    check_declared_size(picture.height, picture.width, what=f"page {index + 1} of this {picture.format} image")
    mode = picture.mode
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        grey = np.asarray(picture if mode != "1" else picture.convert("L"), dtype=np.float32)
        return np.ascontiguousarray(grey), None
    if mode in ("LA", "La"):
        return np.asarray(picture.getchannel(0), dtype=np.float32), None
    rgb = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    if _is_grey(rgb):
        return rgb[..., 0].astype(np.float32), None
    return (rgb.astype(np.float32) @ _LUMINANCE_WEIGHTS).astype(np.float32), rgb


def _is_grey(rgb):
    """True when the three channels are equal (a grey picture saved as RGB)."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def _short(error, limit=200):
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
