"""Exports for slides on the page: a step player's sequence as GIF, MP4 or PNG frames, and any figure as a PNG.

The files are made in this session's memory (lessons/exports.py, viz/): an upload's export is never
written to disk. A figure's PNG is encoded only when its button is clicked (Streamlit's deferred
download), so showing the button costs a rerun nothing.
"""

import re

import streamlit as st

from lessons.exports import FORMATS, SPEEDS, export
from viz.images import png_bytes
from viz.step_frames import SLIDE

_FORMAT_LABELS = {"gif": "Animated GIF", "mp4": "MP4 video", "zip": "PNG frames (ZIP)"}
_FORMAT_NOUNS = {"gif": "animated GIF", "mp4": "MP4 video", "zip": "ZIP of PNG frames"}
_SIZES = {"slide": f"Slide ({SLIDE[1]} x {SLIDE[0]})", "natural": "Natural size (large cells)"}


def png_download(picture, file_name, *, key, label="PNG"):
    """A button that downloads ``picture`` (RGB uint8 array, or a function returning one) as a PNG file."""
    def encoded():
        return png_bytes(picture() if callable(picture) else picture, compress_level=6)
    st.download_button(label, data=encoded, file_name=file_name, mime="image/png", key=key, on_click="ignore",
                       icon=":material/download:", help="The full-resolution picture, for a slide.")


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def step_export(name, make_data, count, *, key, setting, scheme):
    """The export panel of one step player: format, steps, speed and size, a button, progress, the download.

    ``make_data()`` returns the sequence's viz.step_frames.StepData (made only when a file is asked for);
    ``count`` is its number of steps; ``key`` prefixes the widgets' keys; ``setting`` (hashable) names
    what the player shows, so a file made for another setting is not offered.
    """
    # Its widgets are drawn only while it is open: closed, it costs a rerun one element instead of ten.
    panel = st.expander(f"Export the {name} steps for slides (GIF, MP4, PNG frames)", key=f"{key}_open",
                        on_change="rerun")
    with panel:
        if not panel.open:
            return
        columns = st.columns([2, 3, 1, 2], vertical_alignment="bottom")
        kind = columns[0].radio("File", tuple(FORMATS), format_func=_FORMAT_LABELS.get, key=f"{key}_kind")
        if count > 1:
            first, last = columns[1].slider("Steps", 1, count, (1, count), key=f"{key}_range_{count}",
                                            help="A long sequence can be cut to the steps you need.")
        else:
            first = last = 1
        fps = columns[2].selectbox("Steps/s", SPEEDS, index=1, key=f"{key}_fps", disabled=kind == "zip")
        size = columns[3].radio("Size", tuple(_SIZES), format_func=_SIZES.get, key=f"{key}_size")
        settings = (kind, first, last, fps, size, scheme, setting)
        made = st.session_state.get(f"{key}__file")
        if st.button(f"Make the {_FORMAT_NOUNS[kind]} of steps {first} to {last}", key=f"{key}_make",
                     icon=":material/movie:"):
            bar = st.progress(0.0, text="Drawing the frames ...")

            def progress(done, total):
                bar.progress(done / total, text=f"Frame {done} of {total}")

            try:
                data = export(make_data(), kind, first=first, last=last, fps=fps, scheme=scheme,
                              size=None if size == "natural" else SLIDE, progress=progress)
            except (ValueError, RuntimeError) as error:
                bar.empty()
                st.error(f"The file could not be made: {error}")
                return
            bar.empty()
            made = (settings, data)
            st.session_state[f"{key}__file"] = made
        if made is not None and made[0] == settings:
            file_name = f"convscope_{_slug(name)}_steps_{first}-{last}.{kind}"
            st.download_button(f"Download {file_name} ({len(made[1]) / 1e6:.1f} MB)", data=made[1],
                               file_name=file_name, mime=FORMATS[kind], key=f"{key}_download", on_click="ignore",
                               icon=":material/download:", type="primary")
