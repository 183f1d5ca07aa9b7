"""Presenter view: one switch (or ``?present=1``) that lays every lesson out for a projector, and the colour scheme.

In presenter view the sidebar, Streamlit's header and the explanatory paragraphs are hidden (the lecturer
says them), the page uses the whole width, and the convolution lesson puts its step player first, sized to
fill one screen. The switch and the colour scheme are drawn by app.py above every page; pages ask
:func:`is_presenting` and draw their explanations with :func:`explain`, which shows nothing in presenter view.
"""

import streamlit as st

from viz.images import COLOUR_SCHEMES

PRESENT_KEY = "presenter_on"  # the switch's widget key (tests may set it)
SCHEME_KEY = "presenter_scheme"  # the colour scheme's widget key
PRESENT_PARAM = "present"  # ?present=1 opens the presenter view
SCHEME_PARAM = "colours"  # ?colours=colourblind chooses a scheme

# Streamlit's own chrome and spacing, overridden while presenting. The test ids are Streamlit 1.67's.
_PRESENTER_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"],
[data-testid="stHeader"], [data-testid="stToolbar"], [data-testid="stDecoration"] { display: none !important; }
/* The page's width and height go to the lesson: narrow margins, a small title with the notice under it. */
[data-testid="stMainBlockContainer"] { padding: 0.4rem 0.5rem 2rem 0.5rem !important; max-width: none !important;
                                      position: relative; }
/* The switch floats at the top right, beside the page's title, instead of taking a row (and a gap) of its own. */
[data-testid="stLayoutWrapper"]:has(> .st-key-presenter_bar) { display: contents; }
.st-key-presenter_bar { position: absolute !important; top: 0.3rem; right: 0.5rem; width: auto !important;
                        z-index: 5; }
[data-testid="stMain"] h1 { font-size: 1.4rem !important; padding: 0.1rem 0 0 0 !important; }
/* The notice's line right under the title, kept clear of the switch; anything else there starts below it. */
[data-testid="stElementContainer"]:has(h1) + [data-testid="stElementContainer"]:has([data-testid="stCaptionContainer"])
  { margin-top: -0.5rem; padding-right: 27rem; }
[data-testid="stElementContainer"]:has(h1) + :not(:has([data-testid="stCaptionContainer"])) { margin-top: 0.7rem; }
[data-testid="stMain"] h2 { font-size: 1.3rem !important; padding-top: 0.6rem !important; }
</style>
"""


def _from_url():
    """Set the switch and the scheme from the address on a session's first run (a reload or a shared link)."""
    if PRESENT_KEY not in st.session_state:
        st.session_state[PRESENT_KEY] = st.query_params.get(PRESENT_PARAM) == "1"
    if SCHEME_KEY not in st.session_state:
        requested = st.query_params.get(SCHEME_PARAM)
        st.session_state[SCHEME_KEY] = requested if requested in COLOUR_SCHEMES else "standard"


def _to_url():
    """Keep the address in step with the switch and the scheme, so a reload keeps them."""
    wanted = {PRESENT_PARAM: "1" if st.session_state[PRESENT_KEY] else None,
              SCHEME_PARAM: None if st.session_state[SCHEME_KEY] == "standard" else st.session_state[SCHEME_KEY]}
    for name, value in wanted.items():
        if value is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != value:
            st.query_params[name] = value


def presenter_bar():
    """The presenter switch and the colour scheme, in one row at the top of every page (drawn by app.py)."""
    _from_url()
    with st.container(key="presenter_bar", horizontal=True, horizontal_alignment="right",
                      vertical_alignment="center", gap="medium"):
        st.selectbox("Colours", tuple(COLOUR_SCHEMES), key=SCHEME_KEY, label_visibility="collapsed", width=220,
                     format_func=lambda name: COLOUR_SCHEMES[name].label,
                     help="High contrast for a washed-out projector; colour-blind safe tells every mark apart "
                          "without red against green.")
        st.toggle("Presenter view", key=PRESENT_KEY, width="content",
                  help="For a projector: no sidebar and no explanations, the lesson laid out to fill the "
                       "screen. The address gets ?present=1, so a reload keeps it.")
    _to_url()
    if st.session_state[PRESENT_KEY]:
        st.html(_PRESENTER_CSS)


def is_presenting():
    """True in presenter view (the switch, or ``?present=1`` when the switch has not been drawn yet)."""
    if PRESENT_KEY in st.session_state:
        return bool(st.session_state[PRESENT_KEY])
    return st.query_params.get(PRESENT_PARAM) == "1"


def colour_scheme():
    """The chosen colour scheme's name (a key of viz.images.COLOUR_SCHEMES)."""
    name = st.session_state.get(SCHEME_KEY) or st.query_params.get(SCHEME_PARAM)
    return name if name in COLOUR_SCHEMES else "standard"


def explain(text, **markdown_options):
    """An explanatory paragraph: shown as markdown, left out in presenter view (the lecturer says it)."""
    if not is_presenting():
        st.markdown(text, **markdown_options)


def explain_caption(text, **caption_options):
    """An explanatory caption, left out in presenter view."""
    if not is_presenting():
        st.caption(text, **caption_options)
