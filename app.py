"""ConvScope's entry point: page settings and navigation between the lessons."""

import gc

import streamlit as st

from kernels import warm_up
from kernels._config import keep_freed_memory
from views.pages import PAGE_TABLE
from views.presenter import presenter_bar

st.set_page_config(page_title="ConvScope", page_icon=":material/biotech:", layout="wide")


@st.cache_resource(show_spinner="Preparing the convolution engine (once per server start)...")
def _engine_ready():
    # What is alive now (Numba, NumPy, pandas, pydicom, the engine's modules) lives as long as the server:
    # move it out of the collector's sight, so Python's automatic full collections only walk the sessions'
    # objects. Frozen first thing in the first visitor's run, while that session holds almost nothing
    # (what is frozen is never collected).
    gc.collect()
    gc.freeze()
    # Every click makes and drops arrays of a few MB (a whole image's map, its colours, its JPEG): kept
    # for reuse, their pages are not faulted in afresh each time (colouring a 640 x 603 map: 11.6 -> 3.9
    # ms of CPU; its 99.5th percentile 6.5 -> 2.9 ms).
    keep_freed_memory()
    # Compiled loops from Numba's on-disk cache when they are there; on a fresh install they compile in a
    # background process while NumPy paths answer the first clicks (kernels/_warm.py).
    return warm_up(wait=False)


_engine_ready()
presenter_bar()  # above every page: the presenter switch and the colour scheme

sections = {}
for entry in PAGE_TABLE:
    page = st.Page(entry.path, title=entry.title, icon=entry.icon, default=entry is PAGE_TABLE[0])
    sections.setdefault(entry.section, []).append(page)
st.navigation(sections).run()
