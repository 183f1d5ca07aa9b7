"""The notices every page shows: what ConvScope is for, and what it is not for."""

import streamlit as st

from views.presenter import is_presenting

TEACHING_NOTICE = (
    "**For teaching only, not for diagnosis.** ConvScope shows how convolutional networks compute; "
    "nothing it displays is a clinical finding. Upload only de-identified scans."
)


def show_teaching_notice():
    """Draw the teaching-use notice as a visible warning box (one line of small print in presenter view)."""
    if is_presenting():
        st.caption(TEACHING_NOTICE)
    else:
        st.warning(TEACHING_NOTICE, icon=":material/school:")
