"""The app shell: it starts with no exception, shows the teaching notice and opens every page."""

import pytest

from tests.apptest import open_page
from views.notices import TEACHING_NOTICE
from views.pages import PAGE_TABLE


def test_home_page_runs_and_shows_notice_and_sample():
    app = open_page()
    assert not app.exception, app.exception
    assert app.title[0].value == "ConvScope"
    assert any(TEACHING_NOTICE in warning.value for warning in app.warning)
    assert app.get("image"), "the home page should show a sample image"
    lessons = [entry for entry in PAGE_TABLE if entry.section == "Lessons"]
    link_labels = [link.proto.label for link in app.get("page_link")]
    assert len(link_labels) == len(lessons)
    for entry, label in zip(lessons, link_labels):
        assert entry.title in label
    captions = [caption.value for caption in app.caption]
    assert all(entry.summary in captions for entry in lessons), "each lesson's summary under its link"


@pytest.mark.parametrize("entry", PAGE_TABLE, ids=[entry.path for entry in PAGE_TABLE])
def test_every_page_opens_without_exception(entry):
    app = open_page(entry.path)
    assert not app.exception, app.exception
