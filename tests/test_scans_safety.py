"""Bad input gets a ScanError and nothing else: bombs, damaged files, and a seeded fuzz of real files."""

import io
import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image

import scans.dicom
import scans.safety
from scans import ScanError, read
from scans.safety import MAX_VOXELS, check_declared_size, codestream_size

MEGABYTE = 1 << 20


def shipped_file(name):
    path = pydicom.data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install pydicom-data)")
    return path


def file_bytes(name):
    with open(shipped_file(name), "rb") as handle:
        return handle.read()


def dicom_bytes(dataset):
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def peak_traced_bytes(action):
    """Run ``action`` (expected to raise ScanError) and return the peak of traced allocations."""
    tracemalloc.start()
    try:
        with pytest.raises(ScanError) as raised:
            action()
        return tracemalloc.get_traced_memory()[1], raised.value
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------------------------------
# Declared sizes


def test_declared_size_limits():
    check_declared_size(512, 512, 100, 1, 16)
    with pytest.raises(ScanError, match="30000 x 30000 pixels"):
        check_declared_size(30000, 30000)
    with pytest.raises(ScanError, match="rows = 0"):
        check_declared_size(0, 10)
    with pytest.raises(ScanError, match="samples per pixel"):
        check_declared_size(10, 10, samples=4)
    with pytest.raises(ScanError, match="bits allocated"):
        check_declared_size(10, 10, bits_allocated=12)
    with pytest.raises(ScanError, match="frames"):
        check_declared_size(10, 10, frames=10**6)


def test_small_rle_file_declaring_30000_squared_is_refused_before_decoding():
    # The case: a few kB of RLE that declares 30000 x 30000 pixels (1.8 GB once decoded).
    dataset = pydicom.dcmread(shipped_file("MR_small_RLE.dcm"))
    dataset.Rows = dataset.Columns = 30000
    data = dicom_bytes(dataset)
    assert len(data) < 10_000
    peak, error = peak_traced_bytes(lambda: read(data))
    assert "30000 x 30000" in str(error)
    assert peak < 20 * MEGABYTE, f"refusing the file allocated {peak / MEGABYTE:.0f} MB"


def test_jpeg2000_frame_declaring_more_pixels_than_the_dicom_is_refused():
    data = bytearray(file_bytes("MR_small_jp2klossless.dcm"))
    siz = data.find(b"\xff\x4f\xff\x51")
    assert siz > 0
    data[siz + 8:siz + 16] = struct.pack(">II", 60000, 60000)  # Xsiz, Ysiz
    peak, error = peak_traced_bytes(lambda: read(bytes(data)))
    assert "60000 x 60000" in str(error)
    assert peak < 20 * MEGABYTE


def test_codestream_size_parsers():
    dataset = pydicom.dcmread(shipped_file("SC_rgb_jpeg_dcmtk.dcm"))
    frame = next(pydicom.encaps.generate_frames(dataset.PixelData, number_of_frames=1))
    assert codestream_size(frame) == (100, 100)
    dataset = pydicom.dcmread(shipped_file("MR_small_jp2klossless.dcm"))
    frame = next(pydicom.encaps.generate_frames(dataset.PixelData, number_of_frames=1))
    assert codestream_size(frame) == (64, 64)
    assert codestream_size(b"not a codestream") is None


def test_deflate_bomb_is_refused_with_bounded_memory(monkeypatch):
    monkeypatch.setattr(scans.safety, "MAX_INFLATED_BYTES", 8 * MEGABYTE)
    header = file_bytes("image_dfl.dcm")
    meta_end = scans.dicom._file_meta_end(header)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = b"".join(compressor.compress(bytes(MEGABYTE)) for _ in range(64)) + compressor.flush()
    bomb = header[:meta_end] + body  # 64 MB of zeros in about 64 kB
    assert len(bomb) < 200_000
    peak, error = peak_traced_bytes(lambda: read(bomb))
    assert "inflates to more than" in str(error)
    assert peak < 8 * MEGABYTE


def _png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_declaring(width, height):
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def test_png_declaring_a_huge_size_is_refused_before_decoding():
    for width, height in [(100_000, 100_000), (8000, 7000)]:  # above 2 x and above 1 x Pillow's cap
        assert width * height > MAX_VOXELS
        peak, error = peak_traced_bytes(lambda: read(_png_declaring(width, height)))
        assert "too large" in str(error) or "more than" in str(error)
        assert peak < 20 * MEGABYTE


def test_pillow_decompression_bomb_warning_becomes_scan_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    small = io.BytesIO()
    Image.fromarray(np.zeros((15, 15), dtype=np.uint8)).save(small, format="PNG")  # 225 > 100: warning
    with pytest.raises(ScanError, match="too large"):
        read(small.getvalue())


def test_pillow_cap_is_our_limit():
    assert Image.MAX_IMAGE_PIXELS == MAX_VOXELS


# ----------------------------------------------------------------------------------------------------
# Not an image, empty, truncated, no pixels, unsupported photometric


@pytest.mark.parametrize("data, expected", [
    (b"", "empty"),
    (b"hello, this is a text file and not a scan at all" * 3, "not a DICOM file or a PNG, JPEG or TIFF"),
    (b"%PDF-1.7 " + bytes(300), "not a DICOM file"),
    (b"GIF89a" + bytes(100), "not a DICOM file"),
])
def test_not_an_image(data, expected):
    with pytest.raises(ScanError, match=expected):
        read(data)


def test_truncated_dicom_says_so():
    with pytest.raises(ScanError, match="truncated|less than expected"):
        read(file_bytes("CT_small.dcm")[:20_000])


def test_structured_report_and_waveform_hold_no_image():
    with pytest.raises(ScanError, match="holds no image .*Comprehensive SR"):
        read(shipped_file("test-SR.dcm"))
    with pytest.raises(ScanError, match="holds no image .*ECG"):
        read(shipped_file("waveform_ecg.dcm"))


def test_unsupported_photometric_interpretation():
    dataset = pydicom.dcmread(shipped_file("SC_rgb.dcm"))
    dataset.PhotometricInterpretation = "YBR_PARTIAL_420"
    with pytest.raises(ScanError, match="YBR_PARTIAL_420"):
        read(dicom_bytes(dataset))


def test_truncated_png_and_wrong_source_type():
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)).save(png, format="PNG")
    with pytest.raises(ScanError, match="damaged or truncated"):
        read(png.getvalue()[:200])
    with pytest.raises(ScanError, match="Cannot read a scan from a int"):
        read(42)
    with pytest.raises(ScanError, match="No file at"):
        read("/no/such/file.dcm")


# ----------------------------------------------------------------------------------------------------
# Fuzz: truncations and byte mutations of real files


FUZZ_SOURCES = (
    "CT_small.dcm",                  # explicit VR little endian, CT with rescale
    "MR_small_bigendian.dcm",        # big endian
    "MR_small_RLE.dcm",              # RLE
    "emri_small_jpeg_2k_lossless.dcm",  # JPEG 2000, multi-frame
    "SC_rgb_jpeg_dcmtk.dcm",         # JPEG baseline, YBR colour
    "image_dfl.dcm",                 # deflated
    "OBXXXX1A_rle.dcm",              # palette colour, RLE
    "rtdose_1frame.dcm",             # 32-bit
)
FUZZ_CASES = 360
SECONDS_PER_CASE = 1.0
MAX_PROCESS_RSS_BYTES = 1 << 30


def _fuzz_inputs():
    sources = [file_bytes(name) for name in FUZZ_SOURCES]
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 65535, (48, 40), dtype=np.uint16)).save(png, format="PNG")
    tiff = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (30, 20, 3), dtype=np.uint8)).save(tiff, format="TIFF")
    return sources + [png.getvalue(), tiff.getvalue()]


def _mutations(seed=20240601):
    """Seeded cases: (label, bytes). A third truncations, the rest 1-16 random byte changes, half of
    them in the first 2 kB where the headers (and so the declared sizes) live."""
    rng = np.random.default_rng(seed)
    inputs = _fuzz_inputs()
    for case in range(FUZZ_CASES):
        source_index = int(rng.integers(len(inputs)))
        data = bytearray(inputs[source_index])
        if case % 3 == 0:
            cut = int(rng.integers(1, len(data)))
            yield f"case {case}: source {source_index} truncated to {cut} bytes", bytes(data[:cut])
            continue
        changes = int(rng.integers(1, 17))
        header_only = case % 2 == 0
        span = min(len(data), 2048) if header_only else len(data)
        for _ in range(changes):
            position = int(rng.integers(span))
            data[position] = int(rng.integers(256)) if rng.random() < 0.7 else rng.choice([0x00, 0xFF, 0x7F, 0x80])
        yield f"case {case}: source {source_index}, {changes} byte(s) changed", bytes(data)


def run_fuzz():
    """Run every case; return a summary dict. Any exception other than ScanError escapes."""
    outcomes = {"read": 0, "refused": 0, "slowest_seconds": 0.0, "slowest_case": "", "short_messages": []}
    for label, data in _mutations():
        start = time.process_time()  # CPU time of this process: not inflated by other jobs on the machine
        try:
            read(data, name="fuzz")
            outcomes["read"] += 1
        except ScanError as error:
            outcomes["refused"] += 1
            if len(str(error)) <= 20:
                outcomes["short_messages"].append(label)
        except BaseException as error:  # the promise under test: nothing but ScanError
            raise AssertionError(f"{label}: {type(error).__name__}: {error}") from error
        elapsed = time.process_time() - start
        if elapsed > outcomes["slowest_seconds"]:
            outcomes["slowest_seconds"], outcomes["slowest_case"] = elapsed, label
    outcomes["peak_rss_bytes"] = _own_peak_resident_bytes()
    return outcomes


def _own_peak_resident_bytes():
    """This process's peak resident memory since exec (VmHWM). Not ru_maxrss: a forked child inherits
    its parent's high-water mark, so a large pytest parent would be counted as the fuzz's own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError("/proc/self/status has no VmHWM line: peak memory cannot be measured here")


def test_fuzzed_files_read_or_raise_scan_error_quickly_and_in_bounded_memory():
    # In a child process, so its peak memory (resident set, C decoders included) is its own and not
    # that of whatever this pytest process ran before.
    repo_root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen([sys.executable, __file__, "--fuzz"], cwd=repo_root, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(repo_root)})
    output = child.stdout.read()
    child.wait()
    assert child.returncode == 0, f"the fuzz process failed: {output.decode(errors='replace')[-2000:]}"
    outcomes = json.loads(output.decode().strip().splitlines()[-1])
    peak_rss = outcomes["peak_rss_bytes"]
    print(f"fuzz: {outcomes}, peak RSS {peak_rss / MEGABYTE:.0f} MB")
    assert not outcomes["short_messages"], outcomes["short_messages"]
    # Both outcomes occur, so the cases are neither all harmless nor all fatal.
    assert outcomes["read"] > 20 and outcomes["refused"] > 20, outcomes
    assert outcomes["read"] + outcomes["refused"] == FUZZ_CASES
    assert outcomes["slowest_seconds"] < SECONDS_PER_CASE, outcomes["slowest_case"]
    assert peak_rss < MAX_PROCESS_RSS_BYTES, f"the fuzz process peaked at {peak_rss / MEGABYTE:.0f} MB"


if __name__ == "__main__" and sys.argv[1:] == ["--fuzz"]:
    try:
        summary = run_fuzz()
    except AssertionError as failure:
        print(failure)
        sys.exit(1)
    print(json.dumps(summary))
