"""Streamlit pages, one module per lesson; with app.py, the only code that calls st.*."""
