"""The sidebar image picker every lesson page shares: sample or upload, slice, window preset, level and width.

The choice lives in st.session_state under keys that no widget owns, so it survives page changes
(a widget's own state is dropped on a page that does not draw it). An uploaded file is read from
memory in the uploader's callback, kept only in this session's st.session_state, and never cached,
written or logged. Once read, the uploader is replaced by an empty one (a new key): the browser adds
each new file to the ones an uploader already lists, so an uploader that kept its files would turn a
second upload into a series with the first.
"""

from dataclasses import dataclass

import numpy as np
import streamlit as st

from scans import WINDOW_PRESETS, Scan, ScanError, apply_window, auto_window, list_samples, read_sample
from scans.reader import read_bytes, read_series
from scans.privacy import UPLOAD_NOTICE
from views import caching

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


def choose_image(key: str = "scan", *, default: str | None = None) -> ChosenImage:
    """Draw the image chooser in the sidebar and return the chosen, windowed image.

    Parameters
    ----------
    key : str
        Prefix of every session-state key the picker uses; pages sharing a key share the choice.
    default : str, optional
        The sample the picker opens on, and comes back to when an upload is forgotten (the first sample
        when not given).

    Returns
    -------
    ChosenImage
    """
    keys = _Keys(key)
    st.session_state[keys.default] = default or list_samples()[0]
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
        shown = f"your earlier upload “{scan.name}”" if is_upload else f"the sample “{scan.name}”"
        _upload_ui(keys, shown)
        identity = f"upload:{st.session_state[keys.upload_id]}" if is_upload else f"sample:{scan.name}"
        if st.session_state[keys.scan_identity] != identity:
            _reset_view(keys, scan)
            st.session_state[keys.scan_identity] = identity
        slice_index = _slice_ui(keys, scan)
        level, width = _window_ui(keys, scan, slice_index)
        if is_upload:
            for warning in scan.warnings:
                st.warning(warning, icon=":material/visibility:")
    _report_refusal_on_page(keys, shown)

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
        self.uploader = f"{prefix}_uploader"         # + the uploader's round: a new round, an empty uploader
        self.uploader_round = f"{prefix}__uploader_round"
        self.upload_scan = f"{prefix}__upload_scan"  # the uploaded Scan (this session only)
        self.upload_id = f"{prefix}__upload_id"
        self.refusal = f"{prefix}__upload_refusal"   # the last upload's _Refusal, until another image is chosen
        self.refusal_toast = f"{prefix}__refusal_toast"  # True until the refusal's toast has been shown
        self.scan_identity = f"{prefix}__identity"
        self.scan_facts = f"{prefix}__facts"         # (identity, window options, value range) of the scan in use
        self.slice = f"{prefix}__slice"
        self.slice_widget = f"{prefix}_slice"
        self.preset = f"{prefix}__preset"
        self.preset_widget = f"{prefix}_preset"
        self.level = f"{prefix}__level"
        self.level_widget = f"{prefix}_level"
        self.width = f"{prefix}__width"
        self.width_widget = f"{prefix}_width"
        self.forget = f"{prefix}_forget_upload"
        self.default = f"{prefix}__default"          # the sample the picker opens on


def _init_state(keys):
    defaults = {keys.choice: st.session_state.get(keys.default) or list_samples()[0], keys.uploader_round: 0, keys.upload_scan: None, keys.upload_id: None,
                keys.refusal: None, keys.refusal_toast: False, keys.scan_identity: None, keys.slice: 0,
                keys.preset: None, keys.level: None, keys.width: None}
    for name, value in defaults.items():
        if name not in st.session_state:
            st.session_state[name] = value


def _choose_source(keys):
    st.session_state[keys.choice] = st.session_state[keys.choice_widget]
    _clear_refusal(keys)  # the message was about an earlier attempt


def _upload_label(keys):
    scan = st.session_state[keys.upload_scan]
    return f"Your upload: {scan.name}" if scan is not None else None


def _source_options(keys):
    options = list_samples()
    label = _upload_label(keys)
    return options + [label] if label else options


# ---------------------------------------------------------------------------------------------------
# Upload


@dataclass(frozen=True)
class _Refusal:
    """An upload that was not read: the file names as the person chose them, why, and the details behind it."""

    files: str
    reason: str
    detail: str | None = None

    def message(self, shown):
        """The refusal and what the page shows instead (``shown``, e.g. 'the sample “Head CT slice”')."""
        return f"**Could not read {self.files}.** {self.reason} The page still shows {shown}."


def _upload_ui(keys, shown):
    uploader_key = f"{keys.uploader}_{st.session_state[keys.uploader_round]}"
    st.file_uploader("Upload your own scan", type=UPLOAD_TYPES, accept_multiple_files=True, key=uploader_key,
                     on_change=_read_upload, args=(keys, uploader_key),
                     help="DICOM (.dcm or no extension), PNG, JPEG or TIFF. To make a volume, choose the files "
                          "of one series together; a later upload replaces the earlier one. Read in memory "
                          "for this session only.")
    uploaded = st.session_state[keys.upload_scan]
    if uploaded is not None:
        # The uploader empties once a file is read: say here which upload is kept.
        st.caption(f"Read and kept: `{uploaded.name}`. A new upload replaces it.")
    st.caption(UPLOAD_NOTICE)
    refusal = st.session_state[keys.refusal]
    if refusal is not None:
        _show_refusal(refusal, shown)
    if uploaded is not None:
        st.button("Forget my upload", key=keys.forget, on_click=_forget_upload, args=(keys,),
                  help="Remove the uploaded scan from this session's memory.")


def _read_upload(keys, uploader_key):
    """Uploader callback: read the file(s) chosen together in memory; on failure keep the previous choice."""
    files = st.session_state.get(uploader_key) or []
    if not isinstance(files, list):
        files = [files]
    if not files:
        _clear_refusal(keys)
        return
    # Read or refused, the files leave the uploader: it lists nothing that is not in use.
    st.session_state[keys.uploader_round] += 1
    try:
        if len(files) == 1:
            scan = read_bytes(files[0].getvalue(), name=files[0].name)
        else:
            scan = read_series([file.getvalue() for file in files], name=f"{files[0].name} (+{len(files) - 1} files)")
    except ScanError as error:
        _refuse(keys, _Refusal(_names(files), str(error), error.detail))
        return
    except Exception as error:  # a reader bug must not break the page: report it, keep the old image
        _refuse(keys, _Refusal(_names(files), f"ConvScope met an unexpected {type(error).__name__} reading it. "
                                              "Please report this file type to the ConvScope maintainers."))
        return
    st.session_state[keys.upload_scan] = scan
    st.session_state[keys.upload_id] = ",".join(file.file_id for file in files)
    st.session_state[keys.choice] = _upload_label(keys)
    _clear_refusal(keys)


def _refuse(keys, refusal):
    st.session_state[keys.refusal] = refusal
    st.session_state[keys.refusal_toast] = True


def _clear_refusal(keys):
    st.session_state[keys.refusal] = None
    st.session_state[keys.refusal_toast] = False


def _report_refusal_on_page(keys, shown):
    """The refusal at the page's top, where the person is looking, and once as a toast."""
    refusal = st.session_state[keys.refusal]
    if refusal is None:
        return
    _show_refusal(refusal, shown)
    if st.session_state[keys.refusal_toast]:
        st.toast(f"Could not read {refusal.files}. The page still shows {shown}.", icon=":material/error:",
                 duration="long")  # 10 s rather than 4: time to read it
        st.session_state[keys.refusal_toast] = False


def _names(files):
    names = ", ".join(file.name for file in files[:3])
    return names + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def _show_refusal(refusal, shown):
    st.error(refusal.message(shown), icon=":material/error:")
    if refusal.detail:
        with st.expander("Why?"):
            st.markdown(refusal.detail)


def _forget_upload(keys):
    if st.session_state[keys.choice] == _upload_label(keys):
        st.session_state[keys.choice] = st.session_state.get(keys.default) or list_samples()[0]
    st.session_state[keys.upload_scan] = None
    st.session_state[keys.upload_id] = None
    caching.forget_upload_results()
    _clear_refusal(keys)


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


def _scan_facts(keys, scan):
    """The scan's window options and value range, worked out once per scan, not on every rerun.

    The automatic window's percentiles cost 40 ms a rerun on a sample, more on a volume, on every
    page and every click. Kept in this session's state (an upload's facts never leave it).
    """
    identity = st.session_state[keys.scan_identity]
    facts = st.session_state.get(keys.scan_facts)
    if facts is None or facts[0] != identity:
        facts = (identity, dict(_window_options(scan)), _value_range(scan))
        st.session_state[keys.scan_facts] = facts
    return facts[1], facts[2]


def _window_ui(keys, scan, slice_index):
    options, (low, high, span, step) = _scan_facts(keys, scan)
    labels = list(options) + [CUSTOM_WINDOW]
    if st.session_state[keys.preset] not in labels:
        st.session_state[keys.preset] = labels[0]
    st.session_state[keys.preset_widget] = st.session_state[keys.preset]
    st.selectbox("Window", labels, key=keys.preset_widget, on_change=_apply_preset, args=(keys, options),
                 help="Which grey values are shown from black to white. CT presets are in Hounsfield units.")

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
