"""Reading DICOM: header checks first, then pixels, modality LUT, MONOCHROME1 inversion, colour and volumes.

Order of operations, as the DICOM standard defines them (PS3.3 C.11, PS3.4 N.2): stored values ->
modality LUT (Rescale Slope/Intercept or Modality LUT Sequence: CT becomes Hounsfield units) ->
VOI LUT / window (done later, by ``scans.windowing.apply_window``, with the level and width a person
chooses) -> presentation (MONOCHROME1 means "low values are white": we invert so bright always means
dense, as radiologists expect and as pydicom leaves to the caller).
"""

import io
import logging
import struct
import warnings

import numpy as np
import pydicom
import pydicom.config
import pydicom.uid
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder

from scans.errors import ScanError
from scans.privacy import dicom_privacy_warnings, safe_dicom_info, safe_value
from scans.safety import check_declared_size, check_inflated_size, codestream_size
from scans.scan import Scan
from scans.windowing import WINDOW_PRESETS, auto_window

# pydicom reports odd values through warnings and its "pydicom" logger, and such a message can quote
# an element's value (a name, a date). Uploads must never reach a log: keep pydicom's logger to itself
# (it has a NullHandler, so nothing is printed), skip value validation while reading (it only produces
# those warnings), and silence pydicom's UserWarnings process-wide (added once: thread-safe).
logging.getLogger("pydicom").propagate = False
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")

GREY_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
COLOUR_PHOTOMETRICS = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as JPEG uses

# What decodes each compressed transfer syntax, for the message when this server cannot.
# Only permissively licensed packages are named (pylibjpeg-libjpeg is GPL-3 and not used).
_DECODER_ADVICE = {
    "JPEG Baseline": "Pillow (installed) decodes 8-bit JPEG baseline; python-gdcm decodes the rest",
    "JPEG Extended": "Pillow or python-gdcm decode 8-bit JPEG Extended",  # 12-bit: refused in _check_decoder
    "JPEG Lossless": "python-gdcm (BSD licence)",
    "JPEG-LS": "python-gdcm (BSD licence) or pyjpegls (MIT licence)",
    "JPEG 2000": "pylibjpeg with pylibjpeg-openjpeg (MIT licence) or python-gdcm",
    "High-Throughput JPEG 2000": "pylibjpeg with pylibjpeg-openjpeg >= 2.0 (MIT licence)",
    "RLE": "pydicom itself or pylibjpeg-rle (MIT licence)",
    "MPEG": "no decoder in ConvScope: video transfer syntaxes are not supported",
    "HEVC": "no decoder in ConvScope: video transfer syntaxes are not supported",
    "JPEG XL": "no decoder in ConvScope yet",
}


def read_dicom(data, name):
    """Read one DICOM file held in memory into a Scan.

    Parameters
    ----------
    data : bytes
        The whole file.
    name : str
        Label for the scan.

    Returns
    -------
    Scan
        pixels float32 (H, W), or (D, H, W) for a multi-frame image.

    Raises
    ------
    ScanError
        For anything that cannot be read; never another exception.
    """
    image = _read_dicom_image(data)
    return image.to_scan(name)


def read_dicom_series(blobs, name):
    """Read several single-slice DICOM files of one series into one volume.

    Parameters
    ----------
    blobs : list of bytes
        One file per slice, in any order.
    name : str

    Returns
    -------
    Scan
        pixels float32 (D, H, W), slices ordered along the slice normal (Image Position Patient),
        or by Instance Number when positions are missing.
    """
    if not blobs:
        raise ScanError("No DICOM files were given for the series.")
    images = [_read_dicom_image(blob) for blob in blobs]
    if any(image.pixels.ndim != 2 for image in images):
        raise ScanError("A folder of slices must hold single-frame images; one of the files is a multi-frame "
                        "volume. Upload that file on its own.")
    shapes = {image.pixels.shape for image in images}
    if len(shapes) > 1:
        raise ScanError(f"The slices have different sizes ({', '.join(f'{h} x {w}' for h, w in sorted(shapes))}); "
                        "they cannot be one volume. Upload one series at a time.")
    check_declared_size(images[0].pixels.shape[0], images[0].pixels.shape[1], len(images), what="series of slices")
    images.sort(key=lambda image: image.sort_key)
    first = images[0]
    pixels = np.stack([image.pixels for image in images]).astype(np.float32, copy=False)
    rgb = None
    if all(image.rgb is not None for image in images):
        rgb = np.stack([image.rgb for image in images])
    positions = [image.position_along_normal for image in images]
    slice_spacing = first.slice_spacing_mm
    if all(position is not None for position in positions) and len(positions) > 1:
        steps = np.diff(positions)
        if np.all(steps > 0):
            slice_spacing = float(np.median(steps))
    first.pixels, first.rgb, first.slice_spacing_mm = pixels, rgb, slice_spacing
    first.info["Image size"] = f"{len(images)} slices x {pixels.shape[1]} x {pixels.shape[2]} pixels"
    first.info["Files in series"] = str(len(images))
    first.warnings = list(dict.fromkeys(warning for image in images for warning in image.warnings))
    return first.to_scan(name)


class _DicomImage:
    """What one DICOM file gives, before it becomes a Scan (a series merges several of these)."""

    def __init__(self, pixels, rgb, modality, units, spacing, windows, info, warnings, slice_spacing_mm,
                 sort_key, position_along_normal):
        self.pixels = pixels
        self.rgb = rgb
        self.modality = modality
        self.units = units
        self.spacing = spacing
        self.windows = windows
        self.info = info
        self.warnings = warnings
        self.slice_spacing_mm = slice_spacing_mm
        self.sort_key = sort_key
        self.position_along_normal = position_along_normal

    def to_scan(self, name):
        default_window = _choose_default_window(self.pixels, self.windows, self.modality, self.units,
                                                self.info.get("Body part examined", ""))
        return Scan(pixels=self.pixels, modality=self.modality, units=self.units, spacing=self.spacing,
                    default_window=default_window, info=self.info, warnings=self.warnings,
                    display_rgb=self.rgb, name=name, file_windows=tuple(self.windows),
                    slice_spacing_mm=self.slice_spacing_mm, source_format="DICOM")


def _read_dicom_image(data):
    dataset = _parse_header(data)
    transfer_syntax = _transfer_syntax(dataset)
    modality = safe_value(_get(dataset, "Modality")).upper() or "OT"
    sop_class = str(_get(dataset, "SOPClassUID") or "")
    if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):
        media_class = str(_get(getattr(dataset, "file_meta", None) or {}, "MediaStorageSOPClassUID") or "")
        if len(dataset) == 0 or not (sop_class or media_class or "Modality" in dataset):
            raise ScanError("This DICOM file is damaged or truncated: none of its image attributes could be "
                            "read. Export it again.")
        kind = (_sop_class_name(sop_class) or _sop_class_name(media_class)
                or (f"modality {modality}" if "Modality" in dataset else "no modality given"))
        raise ScanError(f"This DICOM file holds no image ({kind}): it has no Pixel Data element (7FE0,0010). "
                        "Structured reports, waveforms and plans cannot be shown; upload an image object "
                        "(CT, MR, CR/DX ...).")

    rows, columns = _int_attribute(dataset, "Rows", "(0028,0010) Rows"), _int_attribute(dataset, "Columns",
                                                                                             "(0028,0011) Columns")
    frames = _number_of_frames(dataset)
    samples = _int_attribute(dataset, "SamplesPerPixel", "(0028,0002) Samples per Pixel", default=1)
    bits_allocated = _int_attribute(dataset, "BitsAllocated", "(0028,0100) Bits Allocated", default=16)
    check_declared_size(rows, columns, frames, samples, bits_allocated, what="DICOM image")
    photometric = safe_value(_get(dataset, "PhotometricInterpretation")).upper()
    if photometric not in GREY_PHOTOMETRICS + COLOUR_PHOTOMETRICS:
        raise ScanError(f"This DICOM image uses the photometric interpretation '{photometric or 'missing'}', "
                        f"which ConvScope does not read (it reads {', '.join(GREY_PHOTOMETRICS + COLOUR_PHOTOMETRICS)}). "
                        "Convert it to MONOCHROME2 or RGB, for example by exporting it again.")
    if photometric in GREY_PHOTOMETRICS and samples != 1:
        raise ScanError(f"This DICOM image says it is {photometric} but has {samples} samples per pixel; the "
                        "header is inconsistent. Export it again.")
    bits_stored = _int_attribute(dataset, "BitsStored", "(0028,0101) Bits Stored", default=bits_allocated)
    if transfer_syntax.is_compressed:
        _check_decoder(transfer_syntax, bits_stored)
        _check_codestreams(dataset, rows, columns, frames)

    enhanced_groups = _functional_groups(dataset, frames)
    colour = photometric == "PALETTE COLOR" or samples == 3
    # Decode one frame at a time into preallocated outputs: a colour volume then costs its uint8 RGB
    # and its float32 grey, never a float copy of all frames (pydicom's whole-array YBR-to-RGB would).
    rgb = np.empty((frames, rows, columns, 3), dtype=np.uint8) if colour else None
    pixels = np.empty((frames, rows, columns), dtype=np.float32)
    for index, frame in _iter_frames(dataset, transfer_syntax, frames):
        if photometric == "PALETTE COLOR":
            rgb[index] = _guard(lambda: _palette_to_rgb(frame, dataset), transfer_syntax, "palette colour LUT")
        elif colour:
            rgb[index] = _to_uint8_rgb(_expect_shape(frame, (rows, columns, 3)), bits_stored)
        else:
            pixels[index] = _guard(lambda: _rescale_frame(_expect_shape(frame, (rows, columns)), dataset,
                                                          enhanced_groups, index),
                                   transfer_syntax, "modality LUT")
        if colour:
            pixels[index] = _luminance(rgb[index])
    if frames == 1:
        pixels = pixels[0]
        rgb = rgb[0] if colour else None

    windows = _file_windows(dataset, enhanced_groups)
    if photometric == "MONOCHROME1":
        pixels, windows = _invert_monochrome1(pixels, windows, dataset, enhanced_groups)
    if not np.all(np.isfinite(pixels)):
        pixels = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0)

    rescale_type = safe_value(_get(dataset, "RescaleType")).upper()
    units = "HU" if modality == "CT" and rgb is None and rescale_type in ("", "HU") else ""
    spacing = _pixel_spacing(dataset, enhanced_groups)
    slice_spacing = _slice_spacing(dataset, enhanced_groups)
    info = _info(dataset, pixels, spacing, windows, transfer_syntax, sop_class, photometric, units, len(data))
    warnings = dicom_privacy_warnings(dataset, modality, sop_class)
    sort_key, position = _sort_key(dataset)
    return _DicomImage(pixels, rgb, modality, units, spacing, windows, info, warnings, slice_spacing, sort_key,
                       position)


# ----------------------------------------------------------------------------------------------------
# Header


def _parse_header(data):
    if len(data) >= 132 and data[128:132] == b"DICM":
        meta_end = _file_meta_end(data)
        if meta_end is not None and pydicom.uid.DeflatedExplicitVRLittleEndian.encode() in data[132:meta_end]:
            check_inflated_size(data[meta_end:])
        force = False
    else:
        force = True  # no preamble: a raw dataset (allowed by pydicom, written by old software)
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=force)
    except InvalidDicomError as error:
        raise ScanError(f"This is not a DICOM file that ConvScope can read ({error}).") from None
    except Exception as error:  # pydicom raises many kinds of errors on damaged files
        raise ScanError(f"The DICOM file is damaged or truncated and its header cannot be read "
                        f"({type(error).__name__}: {_short(error)}). Export it again.") from None
    if force and not any(keyword in dataset for keyword in _PIXEL_KEYWORDS + ("SOPClassUID", "Modality")):
        # Without the "DICM" marker pydicom parses anything; a file with neither pixels nor the two
        # attributes every DICOM object has is not DICOM at all.
        raise ScanError("This file is not a DICOM file or a PNG, JPEG or TIFF image. Upload a DICOM (.dcm), "
                        "PNG, JPEG or TIFF file.")
    try:
        # Touch every top-level element now: pydicom parses values lazily, and a damaged one would
        # otherwise fail later in an unexpected place.
        for element in dataset:
            _ = element.value
    except Exception as error:
        raise ScanError(f"The DICOM file is damaged or truncated: an attribute cannot be read "
                        f"({type(error).__name__}: {_short(error)}). Export it again.") from None
    return dataset


def _file_meta_end(data):
    """The offset where the file meta group (0002,xxxx), always explicit VR little endian, ends."""
    position = 132
    long_length_vrs = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
    while position + 8 <= len(data):
        group = struct.unpack("<H", data[position:position + 2])[0]
        if group != 0x0002:
            return position
        vr = data[position + 4:position + 6]
        if vr in long_length_vrs:
            if position + 12 > len(data):
                return None
            length = struct.unpack("<I", data[position + 8:position + 12])[0]
            position += 12 + length
        else:
            length = struct.unpack("<H", data[position + 6:position + 8])[0]
            position += 8 + length
    return None


def _transfer_syntax(dataset):
    file_meta = getattr(dataset, "file_meta", None)
    uid = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if uid is None:
        # A dataset without file meta: pydicom knows how it was encoded, and such files are never
        # compressed (compression needs the transfer syntax to be declared).
        implicit, little = getattr(dataset, "original_encoding", (None, None))
        if little is False:
            uid = pydicom.uid.ExplicitVRBigEndian
        elif implicit is False:
            uid = pydicom.uid.ExplicitVRLittleEndian
        else:
            uid = pydicom.uid.ImplicitVRLittleEndian
        dataset.file_meta = pydicom.dataset.FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = uid
    uid = pydicom.uid.UID(str(uid))
    if not uid.is_transfer_syntax:
        raise ScanError(f"The file declares the transfer syntax '{safe_value(uid)}', which is not one DICOM "
                        "defines. The file is damaged or not standard; export it again.")
    return uid


def _int_attribute(dataset, keyword, label, default=None):
    value = _get(dataset, keyword)
    if value is None or value == "":
        if default is None:
            raise ScanError(f"This DICOM image has no {label}, so its size is unknown. The file is damaged "
                            "or not an image.")
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ScanError(f"{label} is {safe_value(value)!r}, not a whole number: the header is damaged.") from None
    return number


def _number_of_frames(dataset):
    value = _get(dataset, "NumberOfFrames")
    if value is None or str(value).strip() == "":
        return 1
    try:
        frames = int(str(value).strip())
    except ValueError:
        raise ScanError(f"(0028,0008) Number of Frames is {safe_value(value)!r}, not a whole number: the header is "
                        "damaged. Export the file again.") from None
    return 1 if frames == 0 else frames  # 0 is a common writer slip for a single frame


def _sop_class_name(uid):
    uid = pydicom.uid.UID(uid) if uid else None
    if uid is None or not uid.is_valid:
        return ""
    name = uid.name
    return name if name != str(uid) else ""


# ----------------------------------------------------------------------------------------------------
# Decoding


def _decoder_advice(transfer_syntax):
    for prefix, advice in _DECODER_ADVICE.items():
        if transfer_syntax.name.startswith(prefix):
            return advice
    return "a DICOM toolkit such as python-gdcm"


def _check_decoder(transfer_syntax, bits_stored):
    if transfer_syntax == pydicom.uid.JPEGExtended12Bit and bits_stored != 8:
        # pydicom's Pillow and GDCM decoders refuse it for any Bits Stored but 8, so refuse before decoding.
        raise ScanError(
            "This file is compressed as 12-bit JPEG Extended, which ConvScope cannot open: export it uncompressed "
            "(Explicit VR Little Endian) or as JPEG 2000 and upload it again.",
            detail=f"Its transfer syntax is {transfer_syntax.name}, UID {transfer_syntax}, and (0028,0101) Bits "
                   f"Stored is {bits_stored}. The decoders ConvScope installs, Pillow and GDCM, read JPEG Extended "
                   "only at 8 bits. The one Python decoder for 12-bit JPEG, pylibjpeg-libjpeg, is licensed under "
                   "the GPL-3, which does not fit ConvScope's MIT licence, so ConvScope does not use it. "
                   "Uncompressed DICOM, or JPEG 2000 (decoded by pylibjpeg-openjpeg, MIT licence), keeps all 12 bits.")
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        decoder = None
    if decoder is None or not decoder.is_available:
        raise ScanError(
            f"This DICOM file is compressed with {transfer_syntax.name} ({transfer_syntax}), which this "
            f"ConvScope server cannot decode. What would decode it: {_decoder_advice(transfer_syntax)}. "
            "Or export the image uncompressed (Explicit VR Little Endian) and upload it again."
        )


def _check_codestreams(dataset, rows, columns, frames):
    """Refuse encapsulated frames whose own JPEG / JPEG 2000 header declares more pixels than the DICOM."""
    from pydicom.encaps import generate_frames

    try:
        for index, frame in enumerate(generate_frames(dataset.PixelData, number_of_frames=frames)):
            if index >= frames:
                break
            declared = codestream_size(frame)
            if declared is not None and (declared[0] > rows or declared[1] > columns):
                raise ScanError(f"Frame {index + 1} of this compressed DICOM declares {declared[0]} x {declared[1]} "
                                f"pixels, but the file says {rows} x {columns}. The file is damaged; export it again.")
    except ScanError:
        raise
    except Exception as error:
        raise ScanError(f"The compressed pixel data of this DICOM file is damaged ({type(error).__name__}: "
                        f"{_short(error)}). Export it again.") from None


def _iter_frames(dataset, transfer_syntax, frames):
    """Yield (index, frame) for every frame pydicom decodes, as ScanError on any decoder failure.

    Frames are (rows, columns) or (rows, columns, 3), YBR already converted to RGB by pydicom.
    """
    count = 0
    try:
        decoder = get_decoder(transfer_syntax)
        # One frame: the whole-array path (pydicom 3.0.2's per-frame path fails on some JPEG 2000 files
        # whose signedness must be corrected, "output array is read-only"). Several: frame by frame.
        decoded = [decoder.as_array(dataset)[0]] if frames == 1 else (frame for frame, _ in decoder.iter_array(dataset))
        for frame in decoded:
            if count >= frames:
                break
            yield count, frame
            count += 1
    except ScanError:
        raise
    except MemoryError:
        raise ScanError("Decoding this DICOM image needs more memory than the server has free. "
                        "Upload a smaller image.") from None
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as error:  # noqa: BLE001
        # Not just Exception: Rust decoders (pylibjpeg-rle) report damaged data with a pyo3
        # PanicException, which derives from BaseException.
        raise ScanError(
            f"The pixel data ({transfer_syntax.name}) cannot be decoded: {type(error).__name__}: {_short(error)}. "
            + (f"What decodes {transfer_syntax.name}: {_decoder_advice(transfer_syntax)}. " if transfer_syntax.is_compressed
               else "")
            + "The file may be damaged or truncated; exporting it uncompressed (Explicit VR Little Endian) usually helps."
        ) from None
    if count < frames:
        raise ScanError(f"The pixel data holds {count} frame(s) but the file declares {frames}: it is truncated "
                        "or damaged. Export it again.")


def _expect_shape(frame, shape):
    if frame.shape != shape:
        raise ScanError(f"A decoded frame has shape {frame.shape}, not the declared {shape}: the file is "
                        "damaged or inconsistent. Export it again.")
    return frame


def _guard(compute, transfer_syntax, step):
    try:
        return compute()
    except ScanError:
        raise
    except Exception as error:
        raise ScanError(f"The {step} of this DICOM file ({transfer_syntax.name}) cannot be applied: "
                        f"{type(error).__name__}: {_short(error)}. The file may be damaged.") from None


def _functional_groups(dataset, frames):
    """For enhanced (multi-frame) images: a list of per-frame lookups into functional groups, or None."""
    shared = _first_item(dataset, "SharedFunctionalGroupsSequence")
    per_frame = _get(dataset, "PerFrameFunctionalGroupsSequence")
    if shared is None and not per_frame:
        return None
    per_frame = list(per_frame) if per_frame else []
    groups = []
    for index in range(frames):
        groups.append((per_frame[index] if index < len(per_frame) else None, shared))
    return groups


def _group_value(groups, index, sequence_keyword, keyword):
    """An attribute from a functional group macro: per-frame first, then shared."""
    if not groups:
        return None
    for container in groups[min(index, len(groups) - 1)]:
        item = _first_item(container, sequence_keyword) if container is not None else None
        if item is not None:
            value = _get(item, keyword)
            if value is not None and value != "":
                return value
    return None


def _rescale_frame(frame, dataset, groups, index):
    slope = _group_value(groups, index, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _group_value(groups, index, "PixelValueTransformationSequence", "RescaleIntercept")
    if slope is not None and intercept is not None:
        # Enhanced multi-frame objects keep Rescale Slope/Intercept in a functional group, where
        # pydicom's apply_modality_lut does not look.
        return frame.astype(np.float32) * np.float32(float(slope)) + np.float32(float(intercept))
    # pydicom's own function: Modality LUT Sequence or Rescale Slope/Intercept, per the standard.
    return apply_modality_lut(frame, dataset)


def _stored_range(dataset):
    bits_stored = _int_attribute(dataset, "BitsStored", "(0028,0101) Bits Stored",
                                 default=_int_attribute(dataset, "BitsAllocated", "(0028,0100) Bits Allocated",
                                                        default=16))
    bits_stored = min(max(bits_stored, 1), 32)
    if _get(dataset, "PixelRepresentation") == 1:
        return -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    return 0, 2 ** bits_stored - 1


def _invert_monochrome1(pixels, windows, dataset, groups):
    """MONOCHROME1 (low = white) -> bright means dense: mirror values (and windows) within the stored range.

    The range is that of the stored bits after the modality LUT, so the result is fixed by the header
    and the file's own windows mirror with it (level' = low + high - level).
    """
    low_stored, high_stored = _stored_range(dataset)
    ends = np.array([low_stored, high_stored], dtype=np.int64)
    mapped = np.asarray(_rescale_frame(ends, dataset, groups, 0), dtype=np.float64)
    total = float(mapped.min() + mapped.max())
    inverted = (np.float32(total) - pixels).astype(np.float32, copy=False)
    return inverted, [(total - level, width) for level, width in windows]


def _palette_to_rgb(frame, dataset):
    """Palette indices (rows, columns) -> uint8 RGB (rows, columns, 3) through pydicom's apply_color_lut.

    pydicom returns the LUT's entries as they are: 16-bit entries (the third value of (0028,1101) Red
    Palette Color Lookup Table Descriptor is 16) must be brought down to 8 bits, or every colour above
    255 shows white. The descriptor's declared depth decides, not the array's dtype, since 8-bit entries
    may be stored in 16-bit words. An alpha LUT, when present, is not shown.
    """
    entry_bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])
    return _to_uint8_rgb(apply_color_lut(frame, dataset)[..., :3], entry_bits)


def _to_uint8_rgb(stored, bits_stored=8):
    """Colour samples of any depth (..., 3) -> uint8 RGB for display, one frame at a time (bounded memory)."""
    stored = np.asarray(stored)
    if stored.dtype == np.uint8:
        return stored
    out = np.empty(stored.shape, dtype=np.uint8)
    if np.issubdtype(stored.dtype, np.floating):
        top = float(np.nanmax(stored)) or 1.0
        for index in np.ndindex(stored.shape[:-3]):
            out[index] = np.clip(np.nan_to_num(stored[index]) / top * 255.0, 0, 255)
        return out
    bits = stored.dtype.itemsize * 8 if bits_stored is None else min(int(bits_stored), stored.dtype.itemsize * 8)
    shift = max(bits - 8, 0)
    for index in np.ndindex(stored.shape[:-3]):
        frame = np.clip(stored[index], 0, None) >> shift
        out[index] = np.minimum(frame, 255)
    return out


def _luminance(rgb):
    """uint8 RGB (..., 3) -> float32 luminance (...), frame by frame so a colour volume never exists as float."""
    out = np.empty(rgb.shape[:-1], dtype=np.float32)
    for index in np.ndindex(rgb.shape[:-3]):
        out[index] = rgb[index].astype(np.float32) @ _LUMINANCE_WEIGHTS
    return out


# ----------------------------------------------------------------------------------------------------
# Geometry, windows, info


def _positive_pair(value):
    try:
        first, second = (float(item) for item in value)
    except (TypeError, ValueError):
        return None
    if first > 0 and second > 0 and np.isfinite(first) and np.isfinite(second):
        return first, second
    return None


def _pixel_spacing(dataset, groups):
    for candidate in (_get(dataset, "PixelSpacing"), _group_value(groups, 0, "PixelMeasuresSequence", "PixelSpacing"),
                      _get(dataset, "ImagerPixelSpacing")):
        pair = _positive_pair(candidate) if candidate is not None else None
        if pair is not None:
            return pair
    return None


def _slice_spacing(dataset, groups):
    for candidate in (_get(dataset, "SpacingBetweenSlices"),
                      _group_value(groups, 0, "PixelMeasuresSequence", "SpacingBetweenSlices"),
                      _get(dataset, "SliceThickness"),
                      _group_value(groups, 0, "PixelMeasuresSequence", "SliceThickness")):
        try:
            value = float(candidate)
        except (TypeError, ValueError):
            continue
        if value > 0 and np.isfinite(value):
            return value
    return None


def _as_list(value):
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _file_windows(dataset, groups):
    """Every (level, width) the file suggests, in file order; widths <= 0 are dropped."""
    centres = _as_list(_get(dataset, "WindowCenter"))
    widths = _as_list(_get(dataset, "WindowWidth"))
    if not centres:
        centres = _as_list(_group_value(groups, 0, "FrameVOILUTSequence", "WindowCenter"))
        widths = _as_list(_group_value(groups, 0, "FrameVOILUTSequence", "WindowWidth"))
    windows = []
    for centre, width in zip(centres, widths):
        try:
            level, span = float(centre), float(width)
        except (TypeError, ValueError):
            continue
        if np.isfinite(level) and np.isfinite(span) and span > 0:
            windows.append((level, span))
    return windows


def _choose_default_window(pixels, windows, modality, units, body_part):
    """The file's own first window if it shows the image, else a CT preset, else the auto window."""
    sample = pixels[pixels.shape[0] // 2] if pixels.ndim == 3 else pixels
    for level, width in windows:
        inside = np.mean((sample > level - width / 2) & (sample < level + width / 2))
        if inside >= 0.01:  # a window that leaves 99 % of the image black or white is a poor first view
            return level, width
    if units == "HU":
        head = any(word in body_part.upper() for word in ("HEAD", "BRAIN", "SKULL"))
        return WINDOW_PRESETS["Brain" if head else "Abdomen soft tissue"]
    return auto_window(pixels)


def _info(dataset, pixels, spacing, windows, transfer_syntax, sop_class, photometric, units, file_bytes):
    info = {"Format": "DICOM"}
    sop_name = _sop_class_name(sop_class)
    if sop_name:
        info["Image kind (SOP class)"] = sop_name
    if pixels.ndim == 3:
        info["Image size"] = f"{pixels.shape[0]} slices x {pixels.shape[1]} x {pixels.shape[2]} pixels"
    else:
        info["Image size"] = f"{pixels.shape[0]} x {pixels.shape[1]} pixels"
    info.update(safe_dicom_info(dataset))
    if photometric == "MONOCHROME1":
        info["Photometric interpretation"] = "MONOCHROME1 (inverted on reading, so bright means dense)"
    if spacing is not None:
        info["Pixel spacing (mm, row x column)"] = f"{spacing[0]:.4g} x {spacing[1]:.4g}"
    if windows:
        info["Window in the file (level / width)"] = "; ".join(f"{level:.6g} / {width:.6g}" for level, width in windows)
    info["Units"] = "Hounsfield units (HU)" if units == "HU" else "scanner units (no absolute scale)"
    info["Transfer syntax"] = transfer_syntax.name
    info["File size"] = f"{file_bytes / 1024:,.0f} kB"
    return info


def _sort_key(dataset):
    """Order of a slice in its series: position along the slice normal, else instance number."""
    position = _get(dataset, "ImagePositionPatient")
    orientation = _get(dataset, "ImageOrientationPatient")
    along_normal = None
    try:
        if position is not None and orientation is not None and len(orientation) == 6:
            row_direction = np.array([float(v) for v in orientation[:3]])
            column_direction = np.array([float(v) for v in orientation[3:]])
            normal = np.cross(row_direction, column_direction)
            along_normal = float(np.dot(normal, [float(v) for v in position]))
    except (TypeError, ValueError):
        along_normal = None
    try:
        instance = int(_get(dataset, "InstanceNumber") or 0)
    except (TypeError, ValueError):
        instance = 0
    return ((0, along_normal) if along_normal is not None else (1, instance)), along_normal


# ----------------------------------------------------------------------------------------------------
# Small helpers


def _get(dataset, keyword):
    try:
        return dataset.get(keyword)
    except Exception:  # a damaged element reads as absent
        return None


def _first_item(dataset, keyword):
    sequence = _get(dataset, keyword)
    try:
        return sequence[0] if sequence else None
    except Exception:
        return None


def _short(error, limit=200):
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
