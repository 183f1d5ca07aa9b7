"""The step player's data: a convolution or pooling trace turned into the arrays the browser replays.

Nothing here calls Streamlit, so tests read the data exactly as the component receives it. Every
number comes from a kernels/ trace (``all_steps()``); the browser only indexes and formats them.

The format (``FORMAT``), one JSON object per player
--------------------------------------------------
Arrays are ``{"dtype": "float32" | "int32", "shape": [...], "base64": "..."}``: the values, C order,
little-endian, base64-encoded. float32 keeps every value exactly as the engine computed it (and -inf,
max pooling's padding, which JSON cannot carry); the browser reads them into typed arrays and writes
them with ``Number.prototype.toFixed(decimals)``: correctly rounded from the exact value (an exact
tie, rare, goes away from zero), with "-0.00" written "0.00".

Common keys:

- ``format``: ``FORMAT``; ``kind``: "conv" or "pool"; ``memory``: a name under which the browser keeps
  the step and the speed while the page reruns or the component is rebuilt (one per player on a page).
- ``titles``: captions (``input``, ``output``, ``patch``, ``kernel``, ``products``), the page's words.
- ``palettes``: name -> 256 colours "#rrggbb" (viz.images' colour maps, so the player and the
  frames drawn on the server share one definition): "grey", "diverging" and, for the other colour
  schemes, "diverging_contrast" and "diverging_colourblind".
- ``input``: the padded input. ``values`` (Hp, Wp); ``pad`` [top, bottom, left, right], the padding
  rows and columns around the real input; ``decimals`` in the grid, ``patch_decimals`` in the window
  grid below it; ``colour`` ``{"palette", "low", "high"}``: ``low`` takes the palette's first colour,
  ``high`` its last.
- ``output``: ``values`` (H', W'), the layer's output map; ``decimals``; ``colour``.
- ``steps``: ``count`` N = H' * W' (step ``i`` is output pixel ``divmod(i, W')``); ``rows`` (N, kh)
  and ``cols`` (N, kw), int32, the padded input's rows and columns under step ``i``'s window (the
  window's values are ``input.values[rows[i]][:, cols[i]]``); ``values`` (N,), the output value of
  each step (equal to ``output.values`` flattened).
- ``equation_decimals``: decimals of the sums, the bias and the step's value in the equation line.

"conv" adds ``kernel`` (``values`` (kh, kw) as applied, flipped already for true convolution;
``decimals``; ``colour``), ``bias`` (a JSON number, the float32 bias exactly), ``products``
(``decimals``, ``colour`` for ``steps.products`` (N, kh, kw)) and ``steps.sums`` (N,): the sum of the
products formed as the engine forms it, so ``sums[i] + bias == values[i]`` in float32.

The page adds ``view`` when it shows the player (:func:`view_options`; not part of the trace's data):
``presenting`` (lay the player out to fill one screen), ``scheme`` (``name``; ``palettes``, which palette
to use instead of a named one; ``colours``, the marks' colours as CSS), ``initial_step`` (the step to
open at when the browser has none remembered, e.g. from a lesson link) and ``link_button`` (show
"Link this step", which reports the step to the server: the only time a step is sent back).

"conv3d" is "conv" for a volume (kernels.conv3d_trace): ``input.values`` (Dp, Hp, Wp) with ``pad``
[front, back, top, bottom, left, right], ``kernel.values`` (kd, kh, kw), ``output.values`` (D', H', W')
(step ``i`` is output voxel ``unravel_index(i, (D', H', W'))``), ``steps.products`` (N, kd, kh, kw), and
two more step arrays: ``steps.slices`` (N, kd), int32, the padded volume's slices under the kernel's
slices, and ``steps.slice_sums`` (N, kd), each kernel slice's sum of products, which added in order make
``steps.sums``. ``titles`` may add ``slices`` and ``output_slices``: one caption per slice.

"pool" adds ``mode`` ("max" or "avg") and either ``steps.argmax`` (N, 2), int32, the (row, col) in the
padded input of the value max pooling keeps, or ``steps.sums`` (N,), the window sums that average
pooling divides by kh * kw.
"""

from __future__ import annotations

import base64
from functools import lru_cache

import numpy as np

from viz.images import COLOUR_SCHEMES, diverging_rgb, grey_rgb
from viz.steps import CELL_SIGNIFICANT, EQUATION_DECIMALS, WORK_SIGNIFICANT, grid_decimals

FORMAT = "convscope.step_player/1"
PALETTE_SIZE = 256
_CELL_SIGNIFICANT = CELL_SIGNIFICANT
_WORK_SIGNIFICANT = WORK_SIGNIFICANT


def encode_array(values, dtype) -> dict:
    """An array as the player receives it: dtype, shape and little-endian bytes in base64."""
    array = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": np.dtype(dtype).name, "shape": list(array.shape),
            "base64": base64.b64encode(array.tobytes()).decode("ascii")}


def decode_array(encoded: dict) -> np.ndarray:
    """The inverse of :func:`encode_array` (for tests and for anyone reading a payload back)."""
    dtype = np.dtype(encoded["dtype"]).newbyteorder("<")
    return np.frombuffer(base64.b64decode(encoded["base64"]), dtype=dtype).reshape(encoded["shape"]).astype(
        np.dtype(encoded["dtype"]))


@lru_cache(maxsize=1)
def palettes() -> dict:
    """The colour maps the player may name: "grey" (black to white) and "diverging" (blue, white, red)."""
    ramp = np.linspace(0.0, 1.0, PALETTE_SIZE, dtype=np.float32)[None, :]
    colours = {"grey": grey_rgb(ramp, 0.0, 1.0)[0], "diverging": diverging_rgb(2.0 * ramp - 1.0, 1.0)[0]}
    for scheme in COLOUR_SCHEMES:
        if scheme != "standard":
            colours[f"diverging_{scheme}"] = diverging_rgb(2.0 * ramp - 1.0, 1.0, scheme=scheme)[0]
    return {name: [_hex(rgb) for rgb in rgbs] for name, rgbs in colours.items()}


def _hex(rgb):
    return "#%02x%02x%02x" % tuple(int(channel) for channel in rgb)


def view_options(*, presenting=False, scheme="standard", initial_step=0, link_button=False,
                 whole_screen=False) -> dict:
    """How the page wants the player shown (the payload's ``view``; see the module docstring).

    ``whole_screen``: presenting, the player is sized to a whole screen (the lecturer scrolls it to the
    top) instead of the rest of the first screen under the page's top.
    """
    colours = COLOUR_SCHEMES[scheme]
    return {
        "presenting": bool(presenting),
        "scheme": {"name": scheme,
                   "palettes": {} if scheme == "standard" else {"diverging": f"diverging_{scheme}"},
                   "colours": {name: _hex(getattr(colours, name))
                               for name in ("window", "kept", "padding", "line", "pending")}},
        "initial_step": max(0, int(initial_step)),
        "link_button": bool(link_button),
        "whole_screen": bool(whole_screen),
    }


def _finite(values):
    values = np.asarray(values, dtype=np.float32)
    return values[np.isfinite(values)]


def _diverging(values) -> dict:
    """Blue-white-red centred on 0, full colour at the largest finite magnitude."""
    finite = _finite(values)
    limit = float(np.max(np.abs(finite))) if finite.size else 0.0
    limit = limit or 1.0
    return {"palette": "diverging", "low": -limit, "high": limit}


def _decimals(values, significant):
    # -inf (max pooling's padding) has no digits to count.
    return grid_decimals(_finite(values), significant)


def conv_payload(trace, *, titles: dict, memory: str, input_range=(0.0, 1.0)) -> dict:
    """The player's data for a convolution trace (kernels.conv2d_trace or conv3d_trace); format in the module docstring.

    Parameters
    ----------
    trace : ConvTrace or Conv3dTrace
    titles : dict
        Captions: "input", "output" and optionally "patch", "kernel", "products".
    memory : str
        Where the browser keeps this player's step and speed across reruns.
    input_range : (low, high)
        The input values drawn black and white (the lesson's windowed scans lie in [0, 1]).
    """
    every = trace.all_steps()
    low, high = (float(bound) for bound in input_range)
    volume = trace.kernel.ndim == 3
    steps = {"count": int(trace.num_steps), "rows": encode_array(every.rows, np.int32),
             "cols": encode_array(every.cols, np.int32), "products": encode_array(every.products, np.float32),
             "sums": encode_array(every.totals, np.float32), "values": encode_array(every.values, np.float32)}
    if volume:
        steps.update(slices=encode_array(every.slices, np.int32), slice_sums=encode_array(every.slice_sums, np.float32))
    return {
        "format": FORMAT,
        "kind": "conv3d" if volume else "conv",
        "memory": memory,
        "titles": dict(titles),
        "palettes": palettes(),
        "input": {"values": encode_array(trace.padded, np.float32), "pad": [int(side) for side in trace.pad],
                  "decimals": _decimals(trace.padded, _CELL_SIGNIFICANT),
                  "patch_decimals": _decimals(trace.padded, _WORK_SIGNIFICANT),
                  "colour": {"palette": "grey", "low": low, "high": high}},
        "kernel": {"values": encode_array(trace.kernel, np.float32),
                   "decimals": _decimals(trace.kernel, _WORK_SIGNIFICANT), "colour": _diverging(trace.kernel)},
        "bias": float(np.float32(trace.bias)),
        "products": {"decimals": _decimals(every.products, _WORK_SIGNIFICANT), "colour": _diverging(every.products)},
        "output": {"values": encode_array(trace.output, np.float32),
                   "decimals": _decimals(trace.output, _CELL_SIGNIFICANT), "colour": _diverging(trace.output)},
        "steps": steps,
        "equation_decimals": EQUATION_DECIMALS,
    }


def pool_payload(trace, *, titles: dict, memory: str) -> dict:
    """The player's data for a pooling trace (kernels.pool2d_trace); format in the module docstring."""
    every = trace.all_steps()
    colour = _diverging(trace.padded)  # the pooled map on the input's scale: a kept value keeps its colour
    steps = {"count": int(trace.num_steps), "rows": encode_array(every.rows, np.int32),
             "cols": encode_array(every.cols, np.int32), "values": encode_array(every.values, np.float32)}
    if trace.mode == "max":
        steps["argmax"] = encode_array(every.argmax, np.int32)
    else:
        steps["sums"] = encode_array(every.totals, np.float32)
    return {
        "format": FORMAT,
        "kind": "pool",
        "mode": trace.mode,
        "memory": memory,
        "titles": dict(titles),
        "palettes": palettes(),
        "input": {"values": encode_array(trace.padded, np.float32), "pad": [int(side) for side in trace.pad],
                  "decimals": _decimals(trace.padded, _CELL_SIGNIFICANT),
                  "patch_decimals": _decimals(trace.padded, _WORK_SIGNIFICANT), "colour": colour},
        "output": {"values": encode_array(trace.output, np.float32),
                   "decimals": _decimals(trace.output, _CELL_SIGNIFICANT), "colour": colour},
        "steps": steps,
        "equation_decimals": EQUATION_DECIMALS,
    }
