"""``read``: one entry point for a path, bytes or a file-like object, DICOM or picture, file or folder."""

import os
from pathlib import Path

from scans.dicom import read_dicom, read_dicom_series
from scans.errors import ScanError
from scans.raster import read_raster
from scans.safety import MAX_FILE_BYTES, MAX_SLICES, check_file_size

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def read(source, *, name=None):
    """Read a scan: DICOM (any transfer syntax ConvScope can decode), PNG, JPEG or TIFF.

    Parameters
    ----------
    source : str, os.PathLike, bytes, bytearray, memoryview or binary file-like object
        A file path, a folder of DICOM slices of one series (read as one volume), the file's bytes,
        or an object with ``read()`` / ``getvalue()`` such as Streamlit's UploadedFile. Bytes and
        file-likes are read in memory only; nothing is written to disk.
    name : str, optional
        A label for the scan; default: the file or folder name, or "upload".

    Returns
    -------
    Scan

    Raises
    ------
    ScanError
        For every file that cannot be read, with a message that says why and what to do.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _read_folder(path, name or path.name)
        if not path.is_file():
            raise ScanError(f"No file at '{path}'. Check the path.")
        size = path.stat().st_size
        check_file_size(size)
        return read_bytes(path.read_bytes(), name=name or path.name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return read_bytes(bytes(source), name=name or "upload")
    if hasattr(source, "getvalue") or hasattr(source, "read"):
        return read_bytes(_file_like_bytes(source), name=name or getattr(source, "name", None) or "upload")
    raise ScanError(f"Cannot read a scan from a {type(source).__name__}; give a path, bytes or a file object.")


def read_bytes(data, *, name="upload"):
    """Read a scan from a file's bytes (the in-memory path every upload takes); see ``read``."""
    check_file_size(len(data))
    if data[128:132] == b"DICM":
        # Checked first: a DICOM preamble may itself look like a TIFF header (dual-format files).
        return read_dicom(data, name)
    if data.startswith(_PNG_SIGNATURE) or data.startswith(_JPEG_SIGNATURE) or data[:4] in _TIFF_SIGNATURES:
        return read_raster(data, name)
    return read_dicom(data, name)


def read_series(sources, *, name="series"):
    """Read several single-slice DICOM files of one series as one volume (D, H, W).

    Parameters
    ----------
    sources : sequence of path, bytes or file-like
        One DICOM file per slice, in any order: they are sorted along the slice normal.
    name : str

    Returns
    -------
    Scan
    """
    sources = list(sources)
    if len(sources) > MAX_SLICES:
        raise ScanError(f"{len(sources)} files were given; a series may have at most {MAX_SLICES} slices.")
    blobs = []
    total = 0
    for source in sources:
        if isinstance(source, (str, os.PathLike)):
            check_file_size(Path(source).stat().st_size)
            blob = Path(source).read_bytes()
        elif isinstance(source, (bytes, bytearray, memoryview)):
            blob = bytes(source)
        else:
            blob = _file_like_bytes(source)
        check_file_size(len(blob))
        total += len(blob)
        if total > MAX_FILE_BYTES:
            raise ScanError(f"The files add up to more than {MAX_FILE_BYTES / 1e6:,.0f} MB; upload fewer slices.")
        blobs.append(blob)
    return read_dicom_series(blobs, name)


def _read_folder(path, name):
    files = sorted(entry for entry in path.iterdir() if entry.is_file() and not entry.name.startswith("."))
    if not files:
        raise ScanError(f"The folder '{path.name}' holds no files.")
    if len(files) == 1:
        return read(files[0], name=name)
    return read_series(files, name=name)


def _file_like_bytes(source):
    if hasattr(source, "getvalue"):
        data = source.getvalue()
    else:
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read(MAX_FILE_BYTES + 1)
    if isinstance(data, str):
        raise ScanError("The file was opened as text; open it in binary mode ('rb').")
    return bytes(data)
