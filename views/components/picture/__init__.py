"""A picture the browser draws boxes and a ring on, and that a person clicks or drags a box on.

Before, every page sent its picture inside the message of each rerun (base64, ~60 kB for a scan, through
streamlit_image_coordinates) with the region drawn into the pixels, so moving the region meant a new
JPEG for the picture and another for the map, about a third of the server's work per click of the
convolution lesson. Here the picture is a media file: the browser fetches it once by its URL and keeps it
while the picture stays the same, and the boxes and the ring travel as numbers and are drawn on top of it.

A click comes back as {x, y, width, height} and a dragged box as {x1, y1, x2, y2, width, height}: positions
in the page's own units (``shape``, e.g. the scan's pixels), which :func:`pointer_of` checks before the
page's callback gets them.
"""

import math
from io import BytesIO

import streamlit as st
from PIL import Image
from streamlit import config, runtime

from viz.images import jpeg_bytes
from viz.steps import CHOSEN_COLOUR
from views.components import encode_data, from_files

_mount = from_files("picture")
_MIME_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def _mime_type(data):
    for magic, mime_type in _MIME_TYPES.items():
        if data.startswith(magic):
            return mime_type
    raise ValueError("a picture must be RGB pixels or the bytes of a JPEG or PNG")


def _colour(rgb):
    return "#" + "".join(f"{int(channel):02x}" for channel in rgb)


def _media_url(data, key):
    """The URL the browser fetches ``data`` from: Streamlit's in-memory media files, the store st.image
    uses (never the disk), which forgets the file when no session shows it any more."""
    url = runtime.get_instance().media_file_mgr.add(data, _mime_type(data), f"convscope_picture.{key}")
    base = config.get_option("server.baseUrlPath").strip("/")
    return f"/{base}{url}" if base else url


def _box(bounds, colour, line=None):
    top, left, height, width = bounds
    box = {"top": top, "left": left, "height": height, "width": width, "colour": _colour(colour)}
    if line is not None:
        box["line"] = line
    return box


def picture(image, *, key, shape=None, boxes=(), ring=None, on_click=None, drag=False, width="stretch", label=""):
    """Show ``image`` (RGB uint8, sent as JPEG, or the bytes of a JPEG or PNG) with boxes and a ring on it.

    Parameters
    ----------
    key : str
        The element's key (also names its media file).
    shape : (rows, cols), optional
        The units of ``boxes``, ``ring`` and the clicks: default the picture's own pixels. A page that
        sends a picture enlarged for sharpness gives the image's own size here.
    boxes : sequence of ((top, left, height, width), (r, g, b)) or ((top, left, height, width), (r, g, b), line)
        Outlined just outside their pixels, with lines ``line`` screen pixels wide (default 3).
    ring : (row, col), optional
        A pixel ringed in green (a map's peak).
    on_click : callable(event), optional
        Called with the checked click (see the module's docstring); without it the picture takes no clicks.
    drag : bool
        A drag reports the box it drew instead of a click.
    width : "stretch" or int or None
        Across the column, at most ``width`` pixels, or at most the picture's own width (None).
    label : str
        The picture's text alternative (screen readers).
    """
    data = image if isinstance(image, bytes) else jpeg_bytes(image)
    pixels = Image.open(BytesIO(data)).size[::-1]  # (rows, cols), from the header only
    shape = tuple(int(side) for side in (shape or pixels))
    shown = {
        "src": _media_url(data, key), "pixels": pixels, "shape": shape, "label": label,
        "boxes": [_box(*box) for box in boxes],
        "ring": None if ring is None else {"row": ring[0], "col": ring[1], "colour": _colour(CHOSEN_COLOUR)},
        "pointing": on_click is not None, "drag": bool(drag),
        "width": pixels[1] if width is None else (None if width == "stretch" else int(width)),
    }
    callbacks = {}
    if on_click is not None:
        def clicked():
            event = pointer_of(st.session_state.get(key), shape)
            if event is not None:
                on_click(event)
        callbacks["on_click_change"] = clicked
    return _mount(data=encode_data(shown), key=key, width="stretch", height="content", **callbacks)


def pointer_of(value, shape):
    """The click or dragged box in a picture's session-state ``value``, checked: numbers only, kept on the
    picture of ``shape`` (rows, cols) (just inside its far edges, so a position always names a pixel),
    with that width and height; None when it is not well formed."""
    event = (value or {}).get("click")
    if not isinstance(event, dict):
        return None
    fields = ("x1", "y1", "x2", "y2") if "x1" in event else ("x", "y")
    rows, cols = shape
    checked = {"width": cols, "height": rows}
    for field in fields:
        number = event.get(field)
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            return None
        side = cols if field.startswith("x") else rows
        checked[field] = min(max(float(number), 0.0), side - 1e-6)
    return checked
