"""The sidebar image picker every lesson page shares: sample or upload, slice, window preset, level and width.

The choice lives in st.session_state under keys that no widget owns, so it survives page changes
(a widget's own state is dropped on a page that does not draw it). An uploaded file is read from
memory in the uploader's callback, kept only in this session's st.session_state, and never cached,
written or logged.
"""

from dataclasses import dataclass

import numpy as np
import streamlit as st

from scans import WINDOW_PRESETS, Scan, ScanError, apply_window, auto_window, list_samples, read_sample
from scans.reader import read_bytes, read_series
from scans.privacy import UPLOAD_NOTICE

UPLOAD_TYPES = None  # DICOM files often have no extension: accept any name, the reader checks the content
CUSTOM_WINDOW = "Custom (sliders)"
AUTO_WINDOW = "Automatic (0.5-99.5 percentile)"


@dataclass(frozen=True)
class ChosenImage:
    """What the picker hands a page.

    Attributes
    ----------
    name : str
        The sample's name or the uploaded file's name.
    scan : Scan
    slice_index : int or None
        The chosen slice of a volume, None for a single image.
    image : numpy.ndarray, float32, shape (H, W)
        The chosen slice through the chosen window, in [0, 1].
    is_upload : bool
    cache_key : str or None
        For samples, a stable string naming this exact image (sample, slice, window), usable as a
        st.cache_data argument. None for uploads: their data must never enter a shared cache.
    level, width : float
        The window applied.
    rgb : numpy.ndarray, uint8, shape (H, W, 3), or None
        The slice in its original colours, when the source was colour.
    pixels : numpy.ndarray, float32, shape (H, W)
        The chosen slice in physical units (before the window).
    """

    name: str
    scan: Scan
    slice_index: int | None
    image: np.ndarray
    is_upload: bool
    cache_key: str | None
    level: float
    width: float
    rgb: np.ndarray | None
    pixels: np.ndarray


def choose_image(key: str = "scan") -> ChosenImage:
    """Draw the image chooser in the sidebar and return the chosen, windowed image.

    Parameters
    ----------
    key : str
        Prefix of every session-state key the picker uses; pages sharing a key share the choice.

    Returns
    -------
    ChosenImage
    """
    keys = _Keys(key)
    _init_state(keys)
    with st.sidebar:
        st.subheader("Image")
        source_options = _source_options(keys)
        if st.session_state[keys.choice] not in source_options:
            st.session_state[keys.choice] = source_options[0]
        st.session_state[keys.choice_widget] = st.session_state[keys.choice]
        st.selectbox("Scan", source_options, key=keys.choice_widget, on_change=_choose_source, args=(keys,),
                     help="A shipped sample, or the file you uploaded.")
        is_upload = st.session_state[keys.choice] == _upload_label(keys)
        scan = st.session_state[keys.upload_scan] if is_upload else read_sample(st.session_state[keys.choice])
        _upload_ui(keys)
        identity = f"upload:{st.session_state[keys.upload_id]}" if is_upload else f"sample:{scan.name}"
        if st.session_state[keys.scan_identity] != identity:
            _reset_view(keys, scan)
            st.session_state[keys.scan_identity] = identity
        slice_index = _slice_ui(keys, scan)
        level, width = _window_ui(keys, scan, slice_index)
        if is_upload:
            for warning in scan.warnings:
                st.warning(warning, icon=":material/visibility:")

    pixels = scan.slice(slice_index or 0)
    image = apply_window(pixels, level, width)
    cache_key = None if is_upload else f"{scan.name}|slice={slice_index}|level={level:.6g}|width={width:.6g}"
    return ChosenImage(name=scan.name, scan=scan, slice_index=slice_index, image=image, is_upload=is_upload,
                       cache_key=cache_key, level=level, width=width, rgb=scan.slice_rgb(slice_index or 0),
                       pixels=pixels)


class _Keys:
    """Session-state key names for one picker."""

    def __init__(self, prefix):
        self.choice = f"{prefix}__choice"            # persistent: sample name or upload label
        self.choice_widget = f"{prefix}_source"
        self.uploader = f"{prefix}_uploader"
        self.upload_scan = f"{prefix}__upload_scan"  # the uploaded Scan (this session only)
        self.upload_id = f"{prefix}__upload_id"
        self.upload_error = f"{prefix}__upload_error"
        self.scan_identity = f"{prefix}__identity"
        self.slice = f"{prefix}__slice"
        self.slice_widget = f"{prefix}_slice"
        self.preset = f"{prefix}__preset"
        self.preset_widget = f"{prefix}_preset"
        self.level = f"{prefix}__level"
        self.level_widget = f"{prefix}_level"
        self.width = f"{prefix}__width"
        self.width_widget = f"{prefix}_width"
        self.forget = f"{prefix}_forget_upload"


def _init_state(keys):
    defaults = {keys.choice: list_samples()[0], keys.upload_scan: None, keys.upload_id: None,
                keys.upload_error: None, keys.scan_identity: None, keys.slice: 0, keys.preset: None,
                keys.level: None, keys.width: None}
    for name, value in defaults.items():
        if name not in st.session_state:
            st.session_state[name] = value


def _choose_source(keys):
    st.session_state[keys.choice] = st.session_state[keys.choice_widget]
    st.session_state[keys.upload_error] = None  # the message was about an earlier attempt


def _upload_label(keys):
    scan = st.session_state[keys.upload_scan]
    return f"Your upload: {scan.name}" if scan is not None else None


def _source_options(keys):
    options = list_samples()
    label = _upload_label(keys)
    return options + [label] if label else options


# ---------------------------------------------------------------------------------------------------
# Upload


def _upload_ui(keys):
    st.file_uploader("Upload your own scan", type=UPLOAD_TYPES, accept_multiple_files=True, key=keys.uploader,
                     on_change=_read_upload, args=(keys,),
                     help="DICOM (.dcm or no extension; several files of one series become a volume), "
                          "PNG, JPEG or TIFF. Read in memory for this session only.")
    st.caption(UPLOAD_NOTICE)
    if st.session_state[keys.upload_error]:
        st.error(st.session_state[keys.upload_error], icon=":material/error:")
    if st.session_state[keys.upload_scan] is not None:
        st.button("Forget my upload", key=keys.forget, on_click=_forget_upload, args=(keys,),
                  help="Remove the uploaded scan from this session's memory.")


def _read_upload(keys):
    """Uploader callback: read the new file(s) in memory; on failure keep the previous choice."""
    files = st.session_state.get(keys.uploader) or []
    if not isinstance(files, list):
        files = [files]
    if not files:
        st.session_state[keys.upload_error] = None
        return
    try:
        if len(files) == 1:
            scan = read_bytes(files[0].getvalue(), name=files[0].name)
        else:
            scan = read_series([file.getvalue() for file in files], name=f"{files[0].name} (+{len(files) - 1} files)")
    except ScanError as error:
        st.session_state[keys.upload_error] = f"Could not read {_names(files)}: {error}"
        return
    except Exception as error:  # a reader bug must not break the page: report it, keep the old image
        st.session_state[keys.upload_error] = (f"Could not read {_names(files)} (unexpected {type(error).__name__}). "
                                               "Please report this file type to the ConvScope maintainers.")
        return
    st.session_state[keys.upload_scan] = scan
    st.session_state[keys.upload_id] = ",".join(file.file_id for file in files)
    st.session_state[keys.upload_error] = None
    st.session_state[keys.choice] = _upload_label(keys)


def _names(files):
    names = ", ".join(file.name for file in files[:3])
    return names + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def _forget_upload(keys):
    if st.session_state[keys.choice] == _upload_label(keys):
        st.session_state[keys.choice] = list_samples()[0]
    st.session_state[keys.upload_scan] = None
    st.session_state[keys.upload_id] = None
    st.session_state[keys.upload_error] = None
    st.session_state.pop(keys.uploader, None)


# ---------------------------------------------------------------------------------------------------
# Slice and window


def _reset_view(keys, scan):
    st.session_state[keys.slice] = scan.num_slices // 2
    st.session_state[keys.preset] = _window_options(scan)[0][0]
    st.session_state[keys.level], st.session_state[keys.width] = (float(v) for v in scan.default_window)


def _slice_ui(keys, scan):
    if not scan.is_volume:
        return None
    index = int(np.clip(st.session_state[keys.slice], 0, scan.num_slices - 1))
    st.session_state[keys.slice_widget] = index + 1
    st.slider("Slice", 1, scan.num_slices, key=keys.slice_widget, on_change=_copy_slice, args=(keys,),
              help="Which slice of the volume the lessons use.")
    return index


def _copy_slice(keys):
    st.session_state[keys.slice] = int(st.session_state[keys.slice_widget]) - 1


def _window_options(scan):
    """(label, (level, width)) pairs: the file's windows first, then automatic, then CT presets."""
    options = [(f"From the file{f' ({number + 1})' if len(scan.file_windows) > 1 else ''}: "
                f"L {level:.6g} / W {width:.6g}", (level, width))
               for number, (level, width) in enumerate(scan.file_windows)]
    if not scan.file_windows and tuple(scan.default_window) != tuple(auto_window(scan.pixels)):
        options.append((f"Default: L {scan.default_window[0]:.6g} / W {scan.default_window[1]:.6g}",
                        tuple(scan.default_window)))
    options.append((AUTO_WINDOW, auto_window(scan.pixels)))
    if scan.units == "HU":
        options += [(f"CT {name}: L {level:g} / W {width:g}", (level, width))
                    for name, (level, width) in WINDOW_PRESETS.items()]
    return options


def _value_range(scan):
    low, high = float(np.min(scan.pixels)), float(np.max(scan.pixels))
    if high <= low:
        high = low + 1.0
    span = high - low
    step = float(10 ** np.floor(np.log10(span / 1000))) if span > 0 else 1.0
    return low, high, span, step


def _window_ui(keys, scan, slice_index):
    options = dict(_window_options(scan))
    labels = list(options) + [CUSTOM_WINDOW]
    if st.session_state[keys.preset] not in labels:
        st.session_state[keys.preset] = labels[0]
    st.session_state[keys.preset_widget] = st.session_state[keys.preset]
    st.selectbox("Window", labels, key=keys.preset_widget, on_change=_apply_preset, args=(keys, options),
                 help="Which grey values are shown from black to white. CT presets are in Hounsfield units.")

    low, high, span, step = _value_range(scan)
    level_min, level_max = _snap(low - span / 2, step), _snap(high + span / 2, step)
    width_min, width_max = step, _snap(2 * span, step)
    level = float(np.clip(st.session_state[keys.level], level_min, level_max))
    width = float(np.clip(st.session_state[keys.width], width_min, width_max))
    st.session_state[keys.level_widget] = level
    st.session_state[keys.width_widget] = width
    unit = f" ({scan.units})" if scan.units else ""
    st.slider(f"Window level{unit}", level_min, level_max, step=step, key=keys.level_widget,
              on_change=_custom_window, args=(keys,), help="The value shown mid-grey.")
    st.slider(f"Window width{unit}", width_min, width_max, step=step, key=keys.width_widget,
              on_change=_custom_window, args=(keys,), help="The range of values spread from black to white.")
    return level, width


def _snap(value, step):
    return float(np.round(value / step) * step)


def _apply_preset(keys, options):
    label = st.session_state[keys.preset_widget]
    st.session_state[keys.preset] = label
    if label in options:
        st.session_state[keys.level], st.session_state[keys.width] = (float(v) for v in options[label])


def _custom_window(keys):
    st.session_state[keys.level] = float(st.session_state[keys.level_widget])
    st.session_state[keys.width] = float(st.session_state[keys.width_widget])
    st.session_state[keys.preset] = CUSTOM_WINDOW


# ---------------------------------------------------------------------------------------------------
# Lesson links (views/links.py)


def apply_link(sample_name, *, slice_number=None, level=None, width=None, key="scan"):
    """Open the picker on a sample, slice (1-based) and window from a lesson link, before the picker is drawn.

    Values outside the scan's ranges are brought inside by the picker itself, as for its own widgets.
    """
    keys = _Keys(key)
    _init_state(keys)
    scan = read_sample(sample_name)
    st.session_state[keys.choice] = sample_name
    st.session_state[keys.scan_identity] = f"sample:{scan.name}"  # so the picker keeps the link's view
    _reset_view(keys, scan)
    if slice_number is not None and scan.is_volume:
        st.session_state[keys.slice] = int(np.clip(slice_number - 1, 0, scan.num_slices - 1))
    if level is not None and width is not None:
        st.session_state[keys.level], st.session_state[keys.width] = float(level), float(width)
        matching = [label for label, window in _window_options(scan)
                    if np.isclose(window[0], level) and np.isclose(window[1], width)]
        st.session_state[keys.preset] = matching[0] if matching else CUSTOM_WINDOW
