"""The app shell: it starts with no exception, shows the teaching notice and opens every page."""

import json

import pandas as pd
import pytest
from streamlit.proto.Dataframe_pb2 import Dataframe as DataframeProto

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


def test_no_forced_full_garbage_collection_after_each_run():
    # Streamlit's post-run gc.collect(2) cost 150-200 ms per click with this app's heap (bench/classroom.py).
    import tomllib

    from tests.apptest import REPO_ROOT

    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    # Nor a walk over every imported module's path to watch it for edits.
    assert config["server"]["fileWatcherType"] == "none"


def test_start_up_heap_is_frozen_out_of_the_collector():
    import gc

    app = open_page()
    assert not app.exception, app.exception
    assert gc.get_freeze_count() > 100_000, "app.py should gc.freeze() the start-up heap after warming up"


@pytest.mark.parametrize("entry", PAGE_TABLE, ids=[entry.path for entry in PAGE_TABLE])
def test_every_number_column_of_a_grid_has_a_format_and_a_width(entry):
    # st.dataframe and st.data_editor draw on a canvas whose columns, unless told, keep the widths of the
    # first numbers they showed: larger numbers later lost their leading digits (2671.63 showed as
    # "671.6301"). So every number column says how it is written and how wide it is; an editable grid
    # says how it is written.
    # Small tables of numbers are st.table (HTML), which grows to fit; tests/e2e/test_tables.py checks both
    # kinds as the browser draws them.
    app = open_page(entry.path)
    assert not app.exception, app.exception
    for grid in app.dataframe:
        config = json.loads(grid.proto.columns or "{}")
        frame = grid.value
        editable = grid.proto.editing_mode != DataframeProto.EditingMode.READ_ONLY
        for column in frame.columns:
            column_config = config.get(str(column), {})
            if pd.api.types.is_numeric_dtype(frame[column]):
                assert column_config.get("type_config", {}).get("format"), (entry.path, column, column_config)
            if not editable:
                assert isinstance(column_config.get("width"), int), (entry.path, column, column_config)
