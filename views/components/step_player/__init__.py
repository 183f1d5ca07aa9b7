"""The step player: steps, plays and scrubs a convolution (2-D or 3-D) or pooling trace in the browser, with no server round trip.

The server sends a trace once per setting (payload.py describes the data); Previous, Next, Play,
the speed, the scrubber and the keyboard then work in the browser alone, drawing every number as text.
The presenter view's number font goes inline with the scripts (views.components.from_files), as a data
URL of digits.woff: the digits, point, minus, infinity and "NaN" of Roboto Condensed Bold (Apache
License 2.0, LICENSE-Roboto.txt), cut with fontTools' subsetter from Debian's fonts-roboto-unhinted:
``pyftsubset RobotoCondensed-Bold.ttf --unicodes=U+0030-0039,U+002E,U+002D,U+221E,U+004E,U+0061
--layout-features='' --no-hinting --desubroutinize --name-IDs='*' --flavor=woff``.
"""

import base64
import json
from pathlib import Path

from views.components import encode_data, from_files
from views.components.step_player.payload import FORMAT, conv_payload, decode_array, pool_payload, view_options

__all__ = ["FORMAT", "conv_payload", "decode_array", "pool_payload", "step_player", "view_options"]

_HERE = Path(__file__).resolve().parent
_NUMBER_FONT_URL = "data:font/woff;base64," + base64.b64encode((_HERE / "digits.woff").read_bytes()).decode("ascii")
_mount = from_files(
    "step_player",
    # The presenter layout and the colour schemes come after the base rules they override.
    css=("step_player.css", "step_player_present.css", "step_player_volume.css"),
    # One module: the volume player extends the 2-D player's class, so it comes after it.
    js=("step_player.js", "volume_player.js"),
    js_prefix=f"const NUMBER_FONT_URL = {json.dumps(_NUMBER_FONT_URL)};\n",
)


def step_player(payload: dict, *, key: str, view: dict | None = None, on_link_step=None):
    """Show the player for ``payload`` (from :func:`conv_payload` or :func:`pool_payload`).

    ``key`` keeps the same player in place while the page reruns, so a new setting replaces the
    data under the step the student was looking at instead of starting a new player. ``view`` comes from
    :func:`view_options`. ``on_link_step`` is called when the person asks for a link to the step shown
    (the "Link this step" button); the step (0-based) is then the result's ``link_step``. Returns the
    component's result.
    """
    data = payload if view is None else {**payload, "view": view}
    callbacks = {} if on_link_step is None else {"on_link_step_change": on_link_step}
    return _mount(data=encode_data(data), key=key, width="stretch", height="content", **callbacks)
