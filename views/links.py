"""Lesson links on the page: open a lesson from its address, keep the address in step, show the link and its QR code.

A page calls :func:`opened` before drawing any widget: when the address holds lesson parameters this
session did not write itself (a shared link was opened, or the page was reloaded), the image choice is
applied at once and the page's own values are returned for the page to apply. At the end of its run the
page calls :func:`publish` with its current values: the address is updated (so a reload keeps the view)
and the "Link for students" popover shows the link and its QR code. The presenter switch and the colour
scheme stay in the address but not in the students' link (views/presenter.py owns them).
"""

from functools import lru_cache

import streamlit as st

from lessons.links import UPLOAD, decode, encode, image_fields, link, qr_matrix
from scans import list_samples
from views import scan_picker
from views.presenter import PRESENT_PARAM, SCHEME_PARAM
from viz.images import png_bytes, qr_picture

WRITTEN = "links__written"  # the lesson parameters this session last put in the address
NOTES = "links__notes"  # (notes about the link that was opened, the parameters they are about)
PRESENTER_PARAMS = (PRESENT_PARAM, SCHEME_PARAM)
FALLBACK_ADDRESS = "http://localhost:8501"  # when the browser has not said where it is (tests)
QR_MODULE_PIXELS = 10
LINK_OPEN = "link_open"  # the "Link for students" popover is open
UPLOAD_NOTE = ("This link was made on an uploaded scan, and an upload cannot travel in a link: the first "
               "sample is shown instead, with the link's other settings.")


def _lesson_params():
    return {name: value for name, value in st.query_params.to_dict().items() if name not in PRESENTER_PARAMS}


def opened(fields, *, picker_key="scan"):
    """The page's values from a link just opened (field name -> value), or {} when there is none.

    Call before the page draws any widget. The sample, slice and window are applied here; the page
    applies the rest. Refused parameters become notes, shown by :func:`publish`.
    """
    incoming = _lesson_params()
    if not incoming or incoming == st.session_state.get(WRITTEN):
        return {}
    every_field = image_fields() + tuple(fields)
    values, notes = decode(every_field, incoming, ignore=PRESENTER_PARAMS)
    sample = values.pop("sample", None)
    slice_number, level, width = (values.pop(name, None) for name in ("slice", "level", "width"))
    if sample == UPLOAD:
        notes.insert(0, UPLOAD_NOTE)
        sample, slice_number, level, width = list_samples()[0], None, None, None
    if sample is not None or level is not None:
        scan_picker.apply_link(sample or list_samples()[0], slice_number=slice_number, level=level, width=width,
                               key=picker_key)
    st.session_state[WRITTEN] = incoming
    st.session_state[NOTES] = (notes, None)
    return values


def image_values(chosen):
    """The picker's part of a link: the sample (or the upload marker), the slice and the window.

    The slice and the window are left out where they are the ones the sample opens with.
    """
    if chosen.is_upload:
        return {"sample": UPLOAD}
    scan = chosen.scan
    values = {"sample": chosen.name}
    if chosen.slice_index is not None and chosen.slice_index != scan.num_slices // 2:
        values["slice"] = chosen.slice_index + 1
    if (float(chosen.level), float(chosen.width)) != tuple(float(value) for value in scan.default_window):
        values.update(level=float(chosen.level), width=float(chosen.width))
    return values


def publish(fields, values, chosen, *, page, slot=None, defaults=None):
    """Put the lesson's current state in the address and show the students' link (in ``slot`` if given).

    ``page`` is the page's address path (e.g. "convolution"), used when the browser has not said its
    address; values equal to their ``defaults`` entry are left out of the link. Returns the link.
    """
    params = {**encode(image_fields(), image_values(chosen)), **encode(fields, values, defaults)}
    current = st.query_params.to_dict()
    wanted = {**params, **{name: current[name] for name in PRESENTER_PARAMS if name in current}}
    if current != wanted:
        st.query_params.from_dict(wanted)
    st.session_state[WRITTEN] = params
    address = link(st.context.url or f"{FALLBACK_ADDRESS}/{page}", params)
    with slot if slot is not None else st.container():
        _show_notes(params)
        _link_block(address, chosen.is_upload)
    return address


def _show_notes(params):
    """The notes about an opened link, until the lesson is changed from what the link opened."""
    notes, about = st.session_state.get(NOTES) or ((), None)
    if not notes:
        return
    if about is None:
        st.session_state[NOTES] = (notes, params)
    elif about != params:
        st.session_state[NOTES] = ((), None)
        return
    st.warning("  \n".join(["Some of this link's settings could not be used; defaults are shown instead."]
                           + [f"- {note}" for note in notes]), icon=":material/link_off:")


def _link_block(address, is_upload):
    # A lazy popover: a student's click costs the server one button here; the link and its QR code are
    # made only while the lecturer has it open.
    panel = st.popover("Link for students", key=LINK_OPEN, on_change="rerun", icon=":material/qr_code_2:",
                       help="The link to this lesson as it is set up now, and its QR code for the projector")
    with panel:
        if not panel.open:
            return
        st.code(address, language=None, wrap_lines=True)
        st.image(_qr_png(address), caption="Link for students", width="content")
        if is_upload:
            st.caption("Your upload is not in the link (it never leaves this session): whoever opens the link "
                       "sees the first sample with these settings.")


@lru_cache(maxsize=64)
def _qr_png(address):
    # Addresses hold settings and sample names only (never an upload's pixels), so a process-wide cache is safe.
    return png_bytes(qr_picture(qr_matrix(address), module_pixels=QR_MODULE_PIXELS), compress_level=6)
