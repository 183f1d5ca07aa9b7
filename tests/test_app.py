"""The app shell: it starts with no exception, shows the teaching notice and opens every page."""

import pytest
from streamlit.testing.v1 import AppTest

from views.notices import TEACHING_NOTICE
from views.pages import PAGE_TABLE

APP_TIMEOUT = 120  # the first run may load the Numba engine from its on-disk cache


def test_home_page_runs_and_shows_notice_and_sample():
    app = AppTest.from_file("app.py", default_timeout=APP_TIMEOUT).run()
    assert not app.exception, app.exception
    assert app.title[0].value == "ConvScope"
    assert any(TEACHING_NOTICE in warning.value for warning in app.warning)
    assert app.get("imgs"), "the home page should show a sample image"


@pytest.mark.parametrize("entry", PAGE_TABLE, ids=[entry.path for entry in PAGE_TABLE])
def test_every_page_opens_without_exception(entry):
    app = AppTest.from_file("app.py", default_timeout=APP_TIMEOUT).run()
    app.switch_page(entry.path).run()
    assert not app.exception, app.exception
