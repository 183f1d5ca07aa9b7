"""A panel of controls (sliders, choices, number fields, switches) drawn by the browser as one element.

Each Streamlit widget is an element of its own, and on the one server a class shares every element
costs work on every rerun (measured on the convolution lesson: its ten region and settings widgets,
with the columns that laid them out, were about a fifth of the server's time per click). Here a panel
is one element: the controls travel as a small JSON list, a change comes back as one event
{name, value}, and ``change_of`` checks it against the list before the page uses it.

Build the list with :func:`slider`, :func:`buttons`, :func:`menu`, :func:`number`, :func:`switch`,
:func:`button` and :func:`fixed`; every value is plain JSON (numbers, strings, booleans).
"""

import math

import streamlit as st

from views.components import encode_data, from_files

_mount = from_files("control_panel")


def _control(kind, name, label, value, help_text, disabled, wide, **fields):
    control = {"kind": kind, "name": name, "label": label, "value": value, **fields}
    if help_text:
        control["help"] = help_text
    if disabled:
        control["disabled"] = True
    if wide:
        control["wide"] = True
    return control


def slider(name, label, low, high, value, *, help_text="", disabled=False, wide=False):
    """A whole-number slider from ``low`` to ``high``."""
    return _control("slider", name, label, int(value), help_text, disabled, wide, low=int(low), high=int(high), step=1)


def buttons(name, label, options, value, *, labels=None, help_text="", disabled=False, wide=False):
    """One of a few ``options`` as a row of buttons (``labels``: their text, default the options)."""
    return _control("buttons", name, label, value, help_text, disabled, wide, options=list(options),
                    labels=[str(option) for option in (labels or options)])


def menu(name, label, options, value, *, labels=None, help_text="", disabled=False, wide=False):
    """One of many ``options`` as a drop-down list."""
    return _control("menu", name, label, value, help_text, disabled, wide, options=list(options),
                    labels=[str(option) for option in (labels or options)])


def number(name, label, low, high, value, *, step=1, decimals=0, help_text="", disabled=False, wide=False):
    """A typed number from ``low`` to ``high`` (arrow keys add or take ``step``), shown with ``decimals``."""
    return _control("number", name, label, value, help_text, disabled, wide, low=low, high=high, step=step,
                    decimals=decimals)


def switch(name, label, value, *, help_text="", disabled=False, wide=False):
    """On or off."""
    return _control("switch", name, label, bool(value), help_text, disabled, wide)


def button(name, label, *, help_text="", wide=False):
    """A button: its change is the value True, once per press."""
    return _control("button", name, label, None, help_text, False, wide)


def fixed(name, text, *, wide=False):
    """A sentence in place of a control that has only one possible value."""
    return _control("fixed", name, "", None, "", False, wide, text=text)


def control_panel(controls, *, key, on_change, columns=1):
    """Show ``controls`` (a list from the builders above) in ``columns`` columns.

    ``on_change(name, value)`` is called after the person changed a control, with the value checked by
    :func:`change_of` against the controls as they were shown (kept in the session for that).
    """
    shown_key = f"{key}__shown"
    st.session_state[shown_key] = controls

    def changed():
        change = change_of(st.session_state.get(key), st.session_state.get(shown_key, []))
        if change is not None:
            on_change(*change)

    return _mount(data=encode_data({"controls": controls, "columns": columns}), key=key, width="stretch", height="content",
                  on_change_change=changed)


def change_of(value, controls):
    """The change a panel's event asks for: (name, value), the value checked against its control (a
    slider's or number's kept in its range and to its decimals, an option among the options); None when
    the event is not a well-formed change of a usable control."""
    change = (value or {}).get("change")
    if not isinstance(change, dict):
        return None
    control = next((control for control in controls if control["name"] == change.get("name")), None)
    if control is None or control.get("disabled") or control["kind"] == "fixed":
        return None
    wanted = change.get("value")
    kind = control["kind"]
    if kind in ("buttons", "menu"):
        # By type too: JSON's true must not pass for an option 1.
        matches = [option for option in control["options"] if option == wanted and type(option) is type(wanted)]
        return (control["name"], matches[0]) if matches else None
    if kind == "switch":
        return (control["name"], wanted) if isinstance(wanted, bool) else None
    if kind == "button":
        return (control["name"], True) if wanted is True else None
    if isinstance(wanted, bool) or not isinstance(wanted, (int, float)) or not math.isfinite(wanted):
        return None
    kept = min(max(wanted, control["low"]), control["high"])
    decimals = 0 if kind == "slider" else control["decimals"]
    return control["name"], int(round(kept)) if decimals == 0 else round(float(kept), decimals)
