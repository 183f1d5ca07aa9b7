"""Our own browser components (Streamlit components v2): HTML, CSS and JavaScript kept in the repo, no build step."""
