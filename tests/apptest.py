"""Opening the app (or one of its pages) under Streamlit's AppTest, the same way in every test."""

import json
import uuid
from pathlib import Path

from streamlit.runtime.state.session_state import STREAMLIT_INTERNAL_KEY_PREFIX
from streamlit.testing.v1 import AppTest

from views.components import decode_data

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "app.py"
STEP_PLAYER = "convscope_step_player"  # views/components/step_player's component name
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


class BrowserSelectbox:
    """One keyed st.selectbox as a browser holds it: the label it shows, sent back on every rerun.

    AppTest encodes a selectbox's value with the labels of the latest run. Streamlit's frontend does not:
    a keyed box keeps its identity when its options change, and the browser goes on showing, and sending
    back, the label it last showed until the server sets the value (the proto's ``set_value``). A label
    that is no longer among the options reaches the script as a plain string. Run the app through
    ``run(app)`` to send what a browser would send.
    """

    def __init__(self, app, key):
        self.key = key
        box = app.selectbox(key=key)
        self.label = box.proto.raw_value if box.proto.set_value else box.options[box.proto.default]

    def choose(self, app, label):
        """A click on ``label`` in the open box, then the rerun it causes."""
        self.label = label
        return self.run(app)

    def run(self, app):
        box = app.selectbox(key=self.key)
        collect = box.root.get_widget_states

        def states_a_browser_sends():
            states = collect()
            for state in states.widgets:
                if state.id == box.id:
                    state.string_value = self.label
            return states

        box.root.get_widget_states = states_a_browser_sends  # this run's tree only: each run makes a new one
        app.run()
        if not app.exception:
            shown = app.selectbox(key=self.key).proto
            if shown.set_value:
                self.label = shown.raw_value
        return app


def open_tab(app, key, label):
    """Open the tab (of the tabs keyed ``key``) whose label starts with ``label``, then the rerun a click causes.

    The lessons' tabs run only while open, so a test reaches a tab's widgets this way first.
    """
    labels = [tab.label for tab in app.tabs]
    chosen = [text for text in labels if text.startswith(label)]
    assert len(chosen) == 1, f"no single tab starting with {label!r} among {labels}"
    app.session_state[key] = chosen[0]
    return app.run()


def step_players(app):
    """The step players on the page: key -> the data each received on the last run (JSON, as the browser gets it)."""
    return {element.key: decode_data(element.proto) for element in app.get("bidi_component")
            if element.proto.component_name == STEP_PLAYER}


def component_data(app, key):
    """The data our components v2 element ``key`` received on the last run, as the browser gets it (JSON)."""
    return decode_data(_component(app, key).proto)


def send_component_event(app, key, event, value):
    """Rerun as the browser does after component ``key``'s JavaScript called setTriggerValue(event, value).

    AppTest cannot run a component's JavaScript, so this builds the widget state that call sends: the
    other widgets' states as they are, plus the component's trigger list (Streamlit's own format for it,
    streamlit.components.v2.bidi_component.main._make_trigger_id).
    """
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    states = app._tree.get_widget_states()
    trigger = WidgetState(id=f"{STREAMLIT_INTERNAL_KEY_PREFIX}_{_component(app, key).proto.id}__events",
                          json_trigger_value=json.dumps([{"event": event, "value": value}]))
    states.widgets.append(trigger)
    return app._run(widget_state=states)


def set_control(app, panel, name, value):
    """Rerun as the browser does after the person changed control ``name`` of control panel ``panel``."""
    return send_component_event(app, panel, "change", {"name": name, "value": value})


def click_picture(app, key, x, y, **drag_end):
    """Rerun as the browser does after a click at (x, y) on picture ``key`` (views/components/picture), in
    its own units; with ``x2`` and ``y2`` a drag from (x, y) to there."""
    rows, cols = component_data(app, key)["shape"]
    if drag_end:
        value = {"x1": x, "y1": y, "x2": drag_end["x2"], "y2": drag_end["y2"], "width": cols, "height": rows}
    else:
        value = {"x": x, "y": y, "width": cols, "height": rows}
    return send_component_event(app, key, "click", value)


def _component(app, key):
    found = [element for element in app.get("bidi_component") if element.key == key]
    assert found, f"no component with key {key!r} on the page"
    return found[0]


def students_link(app):
    """The students' link as the page shows it in its "Link for students" popover (opened if it is not)."""
    from views.links import LINK_OPEN

    if not app.session_state[LINK_OPEN]:
        app.session_state[LINK_OPEN] = True
        app.run()
        assert not app.exception, app.exception
    (code,) = [block.value for block in app.code if block.value.startswith("http")]
    return code
