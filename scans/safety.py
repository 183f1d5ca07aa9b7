"""Limits and checks that refuse an oversized or malformed file before any pixel is decoded.

A small file can declare a huge image: a 7.8 kB RLE DICOM declaring 30000 x 30000 pixels made pydicom
allocate 1.8 GB before it failed. Every check here looks only at headers (DICOM attributes, JPEG and
JPEG 2000 frame headers, the deflate stream) so the refusal costs microseconds and no memory.
"""

import struct
import zlib

from scans.errors import ScanError

# At most this many grey values (rows x columns x frames) in one scan: 48 million, e.g. a 6000 x 8000
# radiograph or 180 CT slices of 512 x 512. As float32 that is 192 MB, which keeps one upload well
# inside a shared teaching server's memory.
MAX_VOXELS = 48_000_000
# At most this many bytes of decoded pixel data (all samples, all frames, as stored).
MAX_DECODED_BYTES = 200_000_000
# At most this many bytes of file: Streamlit's own upload limit is 200 MB by default.
MAX_FILE_BYTES = 200_000_000
# At most this many bytes once a deflate-compressed DICOM dataset is inflated (pixels plus header).
MAX_INFLATED_BYTES = MAX_DECODED_BYTES + 16_000_000  # the pixels plus a generous header
# At most this many slices in a multi-frame file, a multi-page TIFF or a folder of slices.
MAX_SLICES = 2000

_ALLOWED_BITS_ALLOCATED = (1, 8, 16, 32, 64)


def check_declared_size(rows, columns, frames=1, samples=1, bits_allocated=8, *, what="image"):
    """Refuse a declared image size that is malformed or above the limits.

    Parameters
    ----------
    rows, columns, frames, samples, bits_allocated : int
        As declared by the file's header.
    what : str
        How to name the thing in the message ("DICOM image", "PNG image" ...).

    Raises
    ------
    ScanError
        If a value is not a positive whole number, or rows x columns x frames > MAX_VOXELS, or the
        decoded bytes would exceed MAX_DECODED_BYTES.
    """
    for label, value in (("rows", rows), ("columns", columns), ("frames", frames), ("samples per pixel", samples),
                         ("bits allocated", bits_allocated)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ScanError(f"This {what} declares {label} = {value!r}, which is not a positive whole number: "
                            "the header is damaged. Export the image again from the viewer or PACS.")
    if samples not in (1, 3):
        raise ScanError(f"This {what} declares {samples} samples per pixel; only grey (1) or colour (3) "
                        "images can be read.")
    if bits_allocated not in _ALLOWED_BITS_ALLOCATED:
        raise ScanError(f"This {what} declares {bits_allocated} bits allocated per sample; expected one of "
                        f"{', '.join(map(str, _ALLOWED_BITS_ALLOCATED))}. The header is damaged.")
    if frames > MAX_SLICES:
        raise ScanError(f"This {what} declares {frames} frames; ConvScope reads at most {MAX_SLICES}. "
                        "Export fewer slices (for example one series, or every other slice).")
    voxels = rows * columns * frames
    if voxels > MAX_VOXELS:
        raise ScanError(
            f"This {what} declares {rows} x {columns} pixels x {frames} frame(s) = {voxels:,} values, more than "
            f"the {MAX_VOXELS:,} ConvScope reads. Downsample it or export fewer slices before uploading."
        )
    decoded_bytes = voxels * samples * bits_allocated // 8
    if decoded_bytes > MAX_DECODED_BYTES:
        raise ScanError(
            f"This {what} would need {decoded_bytes / 1e6:,.0f} MB once decoded, more than the "
            f"{MAX_DECODED_BYTES / 1e6:,.0f} MB limit. Downsample it or export fewer slices."
        )


def check_file_size(size):
    """Refuse an empty file or one larger than MAX_FILE_BYTES."""
    if size == 0:
        raise ScanError("The file is empty (0 bytes). Choose the image file itself, not a shortcut or a "
                        "folder, and upload it again.")
    if size > MAX_FILE_BYTES:
        raise ScanError(f"The file is {size / 1e6:,.0f} MB; ConvScope reads files up to {MAX_FILE_BYTES / 1e6:,.0f} MB.")


def check_inflated_size(deflated, *, limit=None):
    """Refuse a raw-deflate stream (DICOM Deflated Explicit VR Little Endian) that inflates beyond ``limit``.

    Inflates at most ``limit + 1`` bytes (default MAX_INFLATED_BYTES), so a deflate bomb costs bounded
    memory; the inflated bytes are dropped at once.
    """
    limit = MAX_INFLATED_BYTES if limit is None else int(limit)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    pending = bytes(deflated)
    try:
        # Inflate 1 MB at a time and only count: memory stays at one chunk whatever the ratio.
        while not inflater.eof:
            chunk = inflater.decompress(pending, _INFLATE_CHUNK)
            total += len(chunk)
            if total > limit:
                raise ScanError(f"This deflate-compressed DICOM file inflates to more than {limit / 1e6:,.0f} MB; "
                                "ConvScope refuses it. Export it uncompressed or with fewer frames.")
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                break
    except zlib.error as error:
        raise ScanError(f"The deflate-compressed DICOM data is damaged ({error}). Export the file again.") from None


_INFLATE_CHUNK = 1 << 20

# JPEG start-of-frame markers (SOF0..SOF15 without DHT C4, JPG C8, DAC CC) and JPEG-LS SOF55 (F7).
_JPEG_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_HEADER_SCAN_BYTES = 65536


def codestream_size(frame):
    """(rows, columns) declared by a JPEG, JPEG-LS or JPEG 2000 codestream's header, or None.

    Parameters
    ----------
    frame : bytes
        One encapsulated DICOM frame.

    Returns
    -------
    tuple of int or None
        None when no header is recognised (the decoder will then judge the data itself).
    """
    head = bytes(frame[:_HEADER_SCAN_BYTES])
    # JPEG 2000: SOC (FF4F) directly followed by SIZ (FF51); a JP2 wrapper puts boxes before it.
    siz = head.find(b"\xff\x4f\xff\x51")
    if siz >= 0 and siz + 24 <= len(head):
        x_size, y_size, x_offset, y_offset = struct.unpack(">IIII", head[siz + 8:siz + 24])
        return max(y_size - y_offset, 0), max(x_size - x_offset, 0)
    if head[:2] == b"\xff\xd8":
        position = 2
        while position + 4 <= len(head):
            if head[position] != 0xFF:
                return None
            marker = head[position + 1]
            if marker == 0xFF:  # fill byte
                position += 1
                continue
            length = struct.unpack(">H", head[position + 2:position + 4])[0]
            if marker in _JPEG_SOF_MARKERS and position + 9 <= len(head):
                rows, columns = struct.unpack(">HH", head[position + 5:position + 9])
                return rows, columns
            position += 2 + length
    return None
