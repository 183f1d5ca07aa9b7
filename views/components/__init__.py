"""Our own browser components (Streamlit components v2): HTML, CSS and JavaScript kept in the repo, no build step."""


def wrapped(data):
    """``data`` (a dict) as a component is sent it: inside a one-item list, which its JavaScript unwraps.

    Given a dict, Streamlit looks at every value for a dataframe to send as Arrow, which cost ~7 % of
    the server's time per click of the convolution lesson (three components, ~4 ms); a list it sends
    as JSON as it is.
    """
    return [data]


def unwrapped(sent):
    """The dict :func:`wrapped` sent, from the JSON the browser received (tests and benchmarks read it)."""
    return sent[0]
