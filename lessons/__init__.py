"""Lesson logic without Streamlit: lesson state <-> URL query parameters (links), slide exports (GIF, MP4, PNG)."""
