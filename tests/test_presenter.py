"""Presenter view and colour schemes: the switch and ?present=1, what the lessons leave out, the player's view.

The colour-blind-safe scheme is checked the way a person with a colour-vision deficiency would see it:
each mark's colour through Machado, Oliveira and Fernandes' (2009) simulation of protanopia, deuteranopia
and tritanopia, compared in CIELAB. The standard scheme's orange window and green kept value fail that test
for protanopia, which is why the scheme exists.
"""


import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import APP_PATH, APP_TIMEOUT_S, open_tab, step_players
from viz.images import COLOUR_SCHEMES, diverging_rgb

CONVOLUTION = "views/convolution.py"
LESSONS = ("views/input.py", CONVOLUTION, "views/stacks.py", "views/detection.py", "views/classifier.py",
           "views/learning.py")
EXPLANATION = "A convolution layer slides a small grid of weights"  # the convolution lesson's first paragraph

# Machado et al. 2009, severity 1.0, on linear RGB.
_SIMULATIONS = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.145602],
                            [0.004733, 0.691367, 0.303900]]),
}
DISTINCT = 20.0  # CIELAB distance (Delta E 1976) two marks keep apart under every simulation


def _open(page, query=None):
    app = AppTest.from_file(str(APP_PATH), default_timeout=APP_TIMEOUT_S)
    app.query_params.update(query or {})
    app.run()
    app.switch_page(page).run()
    assert not app.exception, app.exception
    return app


def _texts(app):
    return "\n".join(element.value for element in list(app.markdown) + list(app.caption))


def test_present_in_the_address_opens_the_presenter_view_and_the_switch_leaves_it():
    app = _open(CONVOLUTION, {"present": "1"})
    assert app.session_state["presenter_on"] is True
    assert EXPLANATION not in _texts(app)
    assert not [alert for alert in app.warning if "For teaching only" in alert.value], "the notice shrinks to a line"
    assert "For teaching only" in _texts(app)
    assert step_players(app)["conv_player"]["view"]["presenting"] is True
    open_tab(app, "conv_section", "5.")
    assert step_players(app)["pool_player"]["view"]["presenting"] is True  # both players fill a screen
    open_tab(app, "conv_section", "3.")
    players = step_players(app)
    assert "hatching" not in players["conv_player"]["titles"]["input"]  # short captions

    app.toggle(key="presenter_on").set_value(False).run()
    assert not app.exception
    assert "present" not in app.query_params
    assert EXPLANATION in _texts(app)
    assert step_players(app)["conv_player"]["view"]["presenting"] is False

    app.toggle(key="presenter_on").set_value(True).run()
    assert app.query_params["present"] == "1"


@pytest.mark.parametrize("page", LESSONS)
def test_every_lesson_runs_in_presenter_view_with_less_text(page):
    normal = _open(page)
    presenting = _open(page, {"present": "1"})
    assert len(_texts(presenting)) < len(_texts(normal)), "presenter view hides the explanations"


def test_colour_scheme_from_the_address_reaches_thestep_players():
    app = _open(CONVOLUTION, {"colours": "colourblind"})
    assert app.session_state["presenter_scheme"] == "colourblind"
    for data in step_players(app).values():
        view = data["view"]["scheme"]
        assert view["name"] == "colourblind"
        assert view["palettes"] == {"diverging": "diverging_colourblind"}
        assert view["colours"]["window"] == "#000000"
        assert len(data["palettes"]["diverging_colourblind"]) == 256
    assert "Black: the kernel's window" in step_players(app)["conv_player"]["titles"]["input"]

    app.selectbox(key="presenter_scheme").set_value("contrast").run()
    assert app.query_params["colours"] == "contrast"
    app.selectbox(key="presenter_scheme").set_value("standard").run()
    assert "colours" not in app.query_params


def test_an_unknown_colour_scheme_in_the_address_falls_back_to_standard():
    app = _open(CONVOLUTION, {"colours": "<script>", "present": "yes"})
    assert app.session_state["presenter_scheme"] == "standard"
    assert app.session_state["presenter_on"] is False


def _lab(rgb, simulation=None):
    """sRGB (0-255) -> CIELAB (D65), optionally as seen with a colour-vision deficiency."""
    channels = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    if simulation is not None:
        linear = np.clip(_SIMULATIONS[simulation] @ linear, 0.0, 1.0)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    ratio = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(ratio > 0.008856, np.cbrt(ratio), 7.787 * ratio + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _smallest_distance(first, second):
    return min(np.linalg.norm(_lab(first, simulation) - _lab(second, simulation))
               for simulation in (None, *_SIMULATIONS))


def test_colour_blind_safe_marks_stay_apart_under_every_simulated_deficiency():
    scheme = COLOUR_SCHEMES["colourblind"]
    most_negative, most_positive = diverging_rgb(np.array([[-1.0, 1.0]]), 1.0, scheme="colourblind")[0]
    pairs = {"window and kept": (scheme.window, scheme.kept), "window and padding": (scheme.window, scheme.padding),
             "kept and padding": (scheme.kept, scheme.padding), "negative and positive": (most_negative, most_positive)}
    for name, (first, second) in pairs.items():
        assert _smallest_distance(first, second) >= DISTINCT, name


def test_the_standard_window_and_kept_colours_need_the_colour_blind_scheme():
    standard = COLOUR_SCHEMES["standard"]
    assert _smallest_distance(standard.window, standard.kept) < DISTINCT  # orange and green, to a protanope


def test_every_scheme_has_a_signed_ramp_through_white():
    for name in COLOUR_SCHEMES:
        ramp = diverging_rgb(np.array([[-1.0, 0.0, 1.0]]), 1.0, scheme=name)[0]
        assert ramp[1].min() >= 245, name  # zero is (nearly) white
        assert ramp[0][2] > ramp[0][0], name  # negative is blue
        assert ramp[2][0] > ramp[2][2], name  # positive is red or orange
