"""Home page: what ConvScope teaches, one sample scan, and the way into the lessons."""

import streamlit as st

from scans import apply_window, list_samples, read_sample
from views.notices import show_teaching_notice
from views.pages import PAGE_TABLE
from viz.images import grey_rgb


@st.cache_data(show_spinner=False)
def _sample_preview(name):
    # Sample scans are the same for every session, so one shared cached copy is safe.
    scan = read_sample(name)
    pixels = scan.slice(scan.pixels.shape[0] // 2) if scan.is_volume else scan.pixels
    level, width = scan.default_window
    return grey_rgb(apply_window(pixels, level, width)), scan.modality, pixels.shape


st.title("ConvScope")
st.subheader("How a convolutional neural network looks at a medical image")
show_teaching_notice()

text_column, image_column = st.columns([3, 2], gap="large")
with text_column:
    st.markdown(
        """
A convolutional neural network (CNN) is the kind of network behind most image AI in radiology.
It reads an image (or a whole volume) in three stages:

1. **Input.** The scan is turned into a grid of numbers and prepared: a region is chosen,
   the image is cropped or shrunk, and intensities are brought to a common range.
2. **Feature extraction.** A small grid of weights, the *kernel*, slides over the image one
   position at a time; at each position it multiplies the pixels under it by its weights and adds
   the products up. The results form a *feature map*. A *ReLU* then sets the negative values to
   zero, and *pooling* keeps one value per small block, so the map shrinks. Repeating these steps
   lets later layers respond to ever larger structures.
3. **Classification.** The last maps feed ordinary fully connected layers that give the answer,
   for instance "does this patch hold a lesion?". During training, backpropagation adjusts both
   those weights and every kernel.

ConvScope lets you watch each step on real CT, MR and radiograph images, with the real numbers,
and on your own de-identified scans. The lessons, in teaching order:
"""
    )
    for entry in PAGE_TABLE:
        if entry.section == "Lessons":
            # A page link is one line that cuts what does not fit: the title goes in it, the summary right
            # under it (no gap, so each summary reads with its own link).
            with st.container(gap=None):
                st.page_link(entry.path, label=f"**{entry.title}**", icon=entry.icon)
                st.caption(entry.summary)

with image_column:
    default_sample = list_samples()[0]
    preview, modality, shape = _sample_preview(default_sample)
    st.image(preview, caption=f"Sample: {default_sample} ({modality}, {shape[0]} x {shape[1]} pixels)",
             width="stretch")
