"""Lesson logic without Streamlit: activations, template matching, receptive fields and stacks, links, exports."""
