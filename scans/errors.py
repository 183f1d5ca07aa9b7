"""The one exception type every refusal in scans/ raises."""


class ScanError(ValueError):
    """A scan or upload that ConvScope cannot or will not read.

    The message says what was wrong (with the offending value where that is safe to show) and what
    the person can do about it. It never contains patient data from the file.
    """
