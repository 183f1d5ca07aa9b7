"""The notices every page shows: what ConvScope is for, and what it is not for."""

import streamlit as st

from views.presenter import is_presenting

TEACHING_NOTICE = (
    "**For teaching only, not for diagnosis.** ConvScope shows how convolutional networks compute; "
    "nothing it displays is a clinical finding. Upload only de-identified scans."
)
# In presenter view one line beside the switch: the lesson's tabs and player need the screen's height.
TEACHING_NOTICE_SHORT = "**For teaching only, not for diagnosis.** Upload only de-identified scans."


def show_teaching_notice():
    """Draw the teaching-use notice as a visible warning box (one line of small print in presenter view)."""
    if is_presenting():
        st.caption(TEACHING_NOTICE_SHORT)
    else:
        st.warning(TEACHING_NOTICE, icon=":material/school:")
