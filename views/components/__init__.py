"""Our own browser components (Streamlit components v2): HTML, CSS and JavaScript kept in the repo, no build step."""

import json
from pathlib import Path

from streamlit.components.v2 import component


def from_files(name, *, css=None, js=None, js_prefix=""):
    """The component ``convscope_<name>`` made of the files in views/components/<name>/: ``<name>.html``, the
    style sheets ``css`` and the scripts ``js`` (default ``<name>.css`` and ``<name>.js``), joined in order.

    They are read once per process and passed inline: a component outside an installed package cannot
    be served from files. ``js_prefix`` goes before the scripts (a constant they share).
    """
    folder = Path(__file__).resolve().parent / name

    def read(file_name):
        return (folder / file_name).read_text(encoding="utf-8")

    return component(f"convscope_{name}", html=read(f"{name}.html"),
                     css="\n".join(map(read, css or (f"{name}.css",))),
                     js=js_prefix + "\n".join(map(read, js or (f"{name}.js",))))


def encode_data(data):
    """``data`` (a dict) as a component is sent it: JSON text in bytes, which its JavaScript parses.

    Given a dict, Streamlit looks at every value for a dataframe to send as Arrow, then writes the JSON
    twice per run (once sorted, for the element's identity); a list skipped the first, and bytes skip
    all three (the identity is a hash of the bytes): about 1.3 ms of a convolution lesson click by py-spy's
    samples, too little to show in a class's server CPU (README, "A class at once").
    """
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def decode_data(proto):
    """The dict :func:`encode_data` sent, from the element's message (tests and benchmarks read it)."""
    return json.loads(proto.bytes)
