"""The table of pages: which file, which title, which sidebar section (app.py turns it into navigation)."""

from typing import NamedTuple


class PageEntry(NamedTuple):
    section: str
    path: str
    title: str
    icon: str
    summary: str = ""  # one line for the home page's list of lessons


# In teaching order. A lesson is listed here once it works; tests run every page in this table.
PAGE_TABLE = (
    PageEntry("Start", "views/home.py", "What is ConvScope?", ":material/home:"),
    PageEntry("Lessons", "views/input.py", "The input", ":material/input:",
              "From a scan in Hounsfield units to the array of numbers a network receives."),
    PageEntry("Lessons", "views/convolution.py", "A kernel scans the image", ":material/grid_on:",
              "Convolution step by step with the real numbers, then ReLU and pooling."),
    PageEntry("Lessons", "views/stacks.py", "Deeper layers see larger things", ":material/stacks:",
              "Stacked stages: maps shrink while the region each value depends on grows."),
    PageEntry("Lessons", "views/volumes.py", "Volumes and video", ":material/view_in_ar:",
              "A 3-D kernel steps through CT slices voxel by voxel; a clip is 2-D + time."),
    PageEntry("Lessons", "views/detection.py", "Where is it?", ":material/frame_inspect:",
              "A kernel shaped like its target answers most where the target is."),
    PageEntry("Lessons", "views/classifier.py", "Does this patch contain a lesion?", ":material/psychology:",
              "A small trained CNN, opened up layer by layer, finds a synthetic lesion."),
    PageEntry("Lessons", "views/learning.py", "Watch it learn", ":material/model_training:",
              "Train the network here: random kernels become detectors; then teach it your own scan."),
)
