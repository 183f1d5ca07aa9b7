"""The one exception type every refusal in scans/ raises."""


class ScanError(ValueError):
    """A scan or upload that ConvScope cannot or will not read.

    The message says what was wrong (with the offending value where that is safe to show) and what
    the person can do about it. It never contains patient data from the file.

    Parameters
    ----------
    message : str
        What ``str(error)`` gives: what a person needs to act, short where the cause is technical.
    detail : str, optional
        The technical reasons behind a short message (transfer syntax, decoders, licences), for those
        who ask why; None when the message says it all.
    """

    def __init__(self, message, detail=None):
        super().__init__(message)
        self.detail = detail
