"""Reading scans (DICOM, PNG, JPEG, TIFF) into physical units, windowing them, and keeping uploads private."""

from scans.errors import ScanError
from scans.reader import read, read_bytes, read_series
from scans.samples import SAMPLES, list_samples, read_sample, sample_description
from scans.scan import Scan
from scans.windowing import WINDOW_PRESETS, apply_window, auto_window, window_bounds

__all__ = [
    "SAMPLES",
    "Scan",
    "ScanError",
    "WINDOW_PRESETS",
    "apply_window",
    "auto_window",
    "list_samples",
    "read",
    "read_bytes",
    "read_sample",
    "read_series",
    "sample_description",
    "window_bounds",
]
