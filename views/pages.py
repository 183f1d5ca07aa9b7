"""The table of pages: which file, which title, which sidebar section (app.py turns it into navigation)."""

from typing import NamedTuple


class PageEntry(NamedTuple):
    section: str
    path: str
    title: str
    icon: str


# In teaching order. A lesson is listed here once it works; tests run every page in this table.
PAGE_TABLE = (
    PageEntry("Start", "views/home.py", "What is ConvScope?", ":material/home:"),
    PageEntry("Lessons", "views/input.py", "The input", ":material/input:"),
    PageEntry("Lessons", "views/convolution.py", "A kernel scans the image", ":material/grid_on:"),
    PageEntry("Lessons", "views/stacks.py", "Deeper layers see larger things", ":material/stacks:"),
    PageEntry("Lessons", "views/detection.py", "Where is it?", ":material/frame_inspect:"),
)
