"""Opening the app (or one of its pages) under Streamlit's AppTest, the same way in every test."""

import uuid
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


def scan_uploader(app):
    """The sidebar's scan uploader. Found by place, not key: its key changes after each upload."""
    return app.sidebar.file_uploader[0]


def add_to_uploader(app, name, content, mime_type):
    """Drop one more file on the sidebar uploader, as the browser does: the files it lists stay, with their ids.

    AppTest's own set_value and upload() replace the listed files with new ones under new ids, which is
    not what a person meets; AppTest keeps a widget's files in ``_files``.
    """
    uploader = scan_uploader(app)
    uploader._files = uploader._get_files_to_register() + [(str(uuid.uuid4()), name, content, mime_type)]
    return uploader
