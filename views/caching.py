"""The cache rule, in one place: a sample's results may go to the shared cache, an upload's stay in its session.

``st.cache_data`` is shared by every session of the server, so only what comes from the shipped sample
images may enter it (named by ``ChosenImage.cache_key``). What comes from an upload is patients' data:
it is kept in that session's ``st.session_state`` only, and goes when the session ends.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import streamlit as st

SHARED_CACHE_SIZE = "384MB"  # pickled; the least recently used results go first
UPLOAD_MEMORY = "cache__uploads"  # session-state key: task name -> {key: result}
UPLOAD_RESULTS_PER_TASK = 2  # an upload's last results of each computation (a stack at 512 pixels is ~15 MB)
_UPLOAD_DIGEST = "cache__upload_digest"
SESSION_MEMOS = "cache__session_memos"  # page -> {name: (key, result)}: this session's last result of each


@st.cache_data(max_size=SHARED_CACHE_SIZE, show_spinner=False)
def _shared(task_name, image_name, parameters, _task, _data):
    # _task and _data are not hashed: task_name names the computation, image_name and parameters its input.
    return _task(_data, parameters)


def clear_shared():
    """Empty the shared cache (tests)."""
    _shared.clear()


def _digest(arrays):
    hasher = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.ascontiguousarray(array)
        hasher.update(repr((array.dtype.str, array.shape)).encode())
        hasher.update(array.tobytes())
    return hasher.hexdigest()


def _image_digest(chosen):
    """A digest of an uploaded image's pixels, computed once per ChosenImage (one per run)."""
    last = st.session_state.get(_UPLOAD_DIGEST)
    # Keeping the ChosenImage itself alive means a new one can never reuse its id(), so "is" is exact.
    if last is None or last[0] is not chosen:
        last = (chosen, _digest([chosen.image]))
        st.session_state[_UPLOAD_DIGEST] = last
    return last[1]


def image_key(chosen):
    """A string naming exactly this image: the sample, slice and window; or a digest of the upload's pixels."""
    return chosen.cache_key if chosen.cache_key is not None else f"upload:{_image_digest(chosen)}"


def computed(task, chosen, parameters=(), *, data=None, spinner=None):
    """``task(data, parameters)``, remembered by the cache rule.

    Parameters
    ----------
    task : callable (data, parameters) -> result
        Calls no Streamlit.
    chosen : ChosenImage
        The image the page works on (views/scan_picker.py).
    parameters : hashable
        With ``chosen``, they decide the result.
    data : optional
        What the task reads, ``chosen.image`` by default: an array or a tuple of arrays that ``chosen``
        and ``parameters`` name exactly (e.g. the image with a lesion drawn in, named by the lesion's
        settings).
    spinner : str, optional
        Shown if the computation takes more than half a second.
    """
    data = chosen.image if data is None else data
    task_name = f"{task.__module__}.{task.__qualname__}"
    waiting = st.spinner(spinner) if spinner is not None else contextlib.nullcontext()
    if chosen.cache_key is not None:
        with waiting:
            return _shared(task_name, chosen.cache_key, parameters, task, data)
    image_name = _image_digest(chosen) if data is chosen.image else _digest(
        data if isinstance(data, (tuple, list)) else [data])
    results = st.session_state.setdefault(UPLOAD_MEMORY, {}).setdefault(task_name, {})
    key = (image_name, parameters)
    if key not in results:
        with waiting:
            result = task(data, parameters)
        while len(results) >= UPLOAD_RESULTS_PER_TASK:
            results.pop(next(iter(results)))
        results[key] = result
    return results[key]


def session_memo(page, name, key, compute):
    """``compute()`` remembered in this session for one ``key`` per ``page`` and ``name``: a new key replaces
    the result (a player's trace, a drawn picture). Kept in the session, so an upload's may go there."""
    memo = st.session_state.setdefault(SESSION_MEMOS, {}).setdefault(page, {})
    if name not in memo or memo[name][0] != key:
        memo[name] = (key, compute())
    return memo[name][1]


def drop_session_memos(page):
    """Forget what :func:`session_memo` remembered for ``page``."""
    st.session_state.get(SESSION_MEMOS, {}).pop(page, None)


def forget_upload_results():
    """Drop everything computed in this session, so nothing made from a forgotten upload stays in its memory."""
    for key in (UPLOAD_MEMORY, _UPLOAD_DIGEST, SESSION_MEMOS):
        st.session_state.pop(key, None)
