"""Opening the app (or one of its pages) under Streamlit's AppTest, the same way in every test."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "app.py"
APP_TIMEOUT_S = 120  # a first run may load the Numba engine from its on-disk cache


def open_page(page_path=None):
    """Run app.py under AppTest and, if given, switch to ``page_path`` (e.g. "views/home.py")."""
    app = AppTest.from_file(str(APP_PATH), default_timeout=APP_TIMEOUT_S).run()
    if page_path is not None:
        app.switch_page(page_path).run()
    return app


def run_page_file(page_path):
    """Run one page file (e.g. "views/stacks.py") on its own, without app.py's navigation: faster."""
    return AppTest.from_file(str(REPO_ROOT / page_path), default_timeout=APP_TIMEOUT_S).run()
