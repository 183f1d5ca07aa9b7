"""The kernel's weights as a grid of number fields, edited in the browser; one edit at a time goes to the server.

Streamlit's data editor did this before, at about a tenth of the server's work on every click of the
lesson (a table built with pandas and sent as Arrow on each rerun) and with its numbers drawn on a
canvas that no style can enlarge. Here the weights travel as a small JSON list; a typed weight is sent
as one event {row, col, values} when the field is left (Enter, Tab or a click elsewhere), or when
several numbers are pasted into it (they fill the grid from there), and the browser refuses text that
is not a number before anything is sent.
"""

import numpy as np

from views.components import encode_data, from_files

_mount = from_files("kernel_grid")


def kernel_grid(rows, *, key, limit, on_edit, large=False):
    """Show the weights ``rows`` (a list of lists of floats) as editable fields.

    ``limit``: the largest magnitude a weight may take (larger ones are cut to it, with a note).
    ``on_edit`` is called after a weight was typed; ``edit_of(key)`` then gives the edit. ``large``:
    the presenter view's size.
    """
    return _mount(data=encode_data({"rows": rows, "limit": limit, "large": large}), key=key, width="stretch",
                  height="content", on_edit_change=on_edit)


def edit_of(value):
    """The edit an on_edit callback was called for, from the component's session-state value: (row, col,
    weights), the weights a 2-D float array to write from (row, col) on (one typed weight, or a pasted
    block); None when it is not a well-formed edit."""
    edit = (value or {}).get("edit")
    if not isinstance(edit, dict):
        return None
    try:
        row, col = int(edit["row"]), int(edit["col"])
        weights = np.array(edit["values"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    if weights.ndim != 2 or weights.size == 0 or not np.all(np.isfinite(weights)):
        return None
    return row, col, weights
