"""Pictures a person clicks (or drags a box on): every page sends them the same way.

The picture goes to the browser on every rerun. streamlit_image_coordinates would encode a NumPy
picture itself, by default as an uncompressed PNG (1.1 MB for a 640 x 640 scan); here it gets bytes:
JPEG for scans and maps (~45 kB, ~5 ms to encode), PNG where flat cells or drawn text must stay crisp.
A page may remember the bytes while its picture stays the same.
"""

from streamlit_image_coordinates import streamlit_image_coordinates

from viz.images import jpeg_bytes

_FORMATS = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG"}


class _Encoded:
    """Encoded bytes that streamlit_image_coordinates can "save" without encoding them again."""

    def __init__(self, data):
        self.data = data

    def save(self, buffer, **_options):
        buffer.write(self.data)


def _format_of(data):
    for magic, name in _FORMATS.items():
        if data.startswith(magic):
            return name
    raise ValueError("a clickable picture must be RGB pixels or JPEG or PNG bytes")


def clickable_picture(picture, *, key, on_click, width="stretch", click_and_drag=False):
    """Show ``picture`` (RGB uint8, sent as JPEG, or the bytes of a JPEG or PNG) for clicking; returns the click.

    ``on_click`` runs when the person clicks (or, with ``click_and_drag``, releases a drag); the click is
    then in ``st.session_state[key]`` in displayed pixels, with the displayed width and height.
    """
    data = picture if isinstance(picture, bytes) else jpeg_bytes(picture)
    return streamlit_image_coordinates(_Encoded(data), key=key, width=width, image_format=_format_of(data),
                                       click_and_drag=click_and_drag, on_click=on_click, cursor="crosshair")
