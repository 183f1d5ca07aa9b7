"""The cache rule (views/caching.py): a sample's results are shared by every session, an upload's stay in its own.

Each AppTest is one browser session; the task counts its calls in this process, so a second session that
gets a sample's result without a call used the shared cache, and one that calls again for an upload did not.
"""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from views import caching

CALLS = []


def scaled_sum(image, parameters):
    """The probe task: it records each call."""
    CALLS.append((float(image.sum()), parameters))
    return float(image.sum()) * parameters[0]


def _session_script():
    import types

    import numpy as np
    import streamlit as st

    from tests.test_caching import scaled_sum
    from views.caching import computed

    upload = st.session_state.get("upload", False)
    image = np.full((4, 4), st.session_state.get("pixel", 1.0), dtype=np.float32)
    chosen = types.SimpleNamespace(name="probe", image=image, cache_key=None if upload else "probe|sample")
    st.session_state["result"] = computed(scaled_sum, chosen, (st.session_state.get("factor", 2.0),))


def _session(**state):
    app = AppTest.from_function(_session_script)
    for key, value in state.items():
        app.session_state[key] = value
    return app


@pytest.fixture(autouse=True)
def _fresh():
    caching.clear_shared()
    CALLS.clear()


def test_a_samples_result_is_computed_once_for_every_session():
    first = _session().run()
    second = _session().run()
    assert not first.exception and not second.exception
    assert first.session_state["result"] == second.session_state["result"] == 32.0
    assert len(CALLS) == 1


def test_an_uploads_result_stays_in_its_session_and_is_never_shared():
    first = _session(upload=True).run()
    first.run()  # a rerun of the same session: from its memory
    assert len(CALLS) == 1
    second = _session(upload=True).run()  # the same pixels in another session: computed again
    assert second.session_state["result"] == first.session_state["result"] == 32.0
    assert len(CALLS) == 2
    # And the shared cache never saw it: a sample with the same pixels and parameters is a new call.
    _session().run()
    assert len(CALLS) == 3


def test_an_uploads_memory_tells_images_apart_and_keeps_a_few_results():
    app = _session(upload=True).run()
    app.session_state["pixel"] = 3.0
    app.run()
    assert app.session_state["result"] == 96.0 and len(CALLS) == 2
    for factor in range(10):
        app.session_state["factor"] = float(factor)
        app.run()
    memory = app.session_state[caching.UPLOAD_MEMORY]
    assert sum(len(results) for results in memory.values()) <= caching.UPLOAD_RESULTS_PER_TASK
