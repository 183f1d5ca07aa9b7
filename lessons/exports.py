"""Slide exports of a step sequence: an animated GIF, an MP4 video or a ZIP of PNG frames, made in memory.

A convolution or pooling trace (kernels.trace) becomes a :class:`viz.step_frames.StepData`; its frames
(viz.step_frames) are encoded one at a time, so a long sequence never holds all its frames, and a
``progress(done, total)`` callback can report each one. Nothing is written to disk: the GIF is written by
Pillow frame by frame into memory, the MP4 by the ffmpeg binary that imageio-ffmpeg ships, through pipes
(fragmented MP4, which needs no seeking back), the ZIP into a BytesIO. That keeps an upload's export in
memory only.
"""

from __future__ import annotations

import io
import itertools
import struct
import subprocess
import threading
import zipfile
from collections.abc import Callable

import numpy as np
from PIL import Image

from viz.images import png_bytes
from viz.step_frames import SLIDE, StepData, StepFrames
from viz.steps import CELL_SIGNIFICANT, EQUATION_DECIMALS, WORK_SIGNIFICANT, finite_decimals

FORMATS = {"gif": "image/gif", "mp4": "video/mp4", "zip": "application/zip"}
SPEEDS = (1, 2, 4, 8)  # steps per second in a GIF or a video


def conv_steps(trace, *, title="Convolution", input_range=(0.0, 1.0)) -> StepData:
    """A convolution trace (kernels.conv2d_trace) as frame data, with the step player's decimals."""
    every = trace.all_steps()
    return StepData(
        kind="conv", padded=trace.padded, pad=tuple(trace.pad), output=trace.output, rows=every.rows,
        cols=every.cols, values=every.values, sums=every.totals, kernel=trace.kernel, bias=float(trace.bias),
        products=every.products, input_range=tuple(input_range), title=title,
        decimals={"input": finite_decimals(trace.padded, CELL_SIGNIFICANT),
                  "patch": finite_decimals(trace.padded, WORK_SIGNIFICANT),
                  "kernel": finite_decimals(trace.kernel, WORK_SIGNIFICANT),
                  "products": finite_decimals(every.products, WORK_SIGNIFICANT),
                  "output": finite_decimals(trace.output, CELL_SIGNIFICANT), "equation": EQUATION_DECIMALS})


def pool_steps(trace, *, title=None) -> StepData:
    """A pooling trace (kernels.pool2d_trace) as frame data."""
    every = trace.all_steps()
    return StepData(
        kind="pool", padded=trace.padded, pad=tuple(trace.pad), output=trace.output, rows=every.rows,
        cols=every.cols, values=every.values, sums=every.totals, mode=trace.mode, argmax=every.argmax,
        title=title or f"{'Max' if trace.mode == 'max' else 'Average'} pooling",
        decimals={"input": finite_decimals(trace.padded, CELL_SIGNIFICANT),
                  "patch": finite_decimals(trace.padded, WORK_SIGNIFICANT),
                  "output": finite_decimals(trace.output, CELL_SIGNIFICANT), "equation": EQUATION_DECIMALS})


def step_range(count, first, last):
    """Steps ``first``..``last`` (1-based, inclusive, as the player numbers them) as 0-based indices.

    Raises ValueError, naming the bounds, for a range outside 1..``count`` or backwards.
    """
    if not 1 <= first <= last <= count:
        raise ValueError(f"the steps must run from 1 to {count}, first before last; got {first} to {last}")
    return range(first - 1, last)


def export(data: StepData, kind: str, *, first=1, last=None, fps=2, scheme="standard", size=SLIDE,
           progress: Callable[[int, int], None] | None = None) -> bytes:
    """Steps ``first``..``last`` (1-based) of ``data`` as "gif", "mp4" or "zip" bytes; ``progress(done, total)``."""
    steps = step_range(data.count, first, data.count if last is None else last)
    if kind not in FORMATS:
        raise ValueError(f"kind must be one of {', '.join(FORMATS)}, got {kind!r}")
    if fps not in SPEEDS:
        raise ValueError(f"fps must be one of {SPEEDS}, got {fps}")
    drawer = StepFrames(data, scheme=scheme, size=size)
    sequence = _counted((drawer.frame(step) for step in steps), len(steps), progress)
    if kind == "gif":
        return gif_bytes(sequence, fps, palette_frame=drawer.frame(steps[-1]))
    if kind == "mp4":
        return mp4_bytes(sequence, fps)
    return zip_bytes(sequence, [f"step_{step + 1:04d}.png" for step in steps])


def _counted(sequence, total, progress):
    for done, frame in enumerate(sequence, start=1):
        yield frame
        if progress is not None:
            progress(done, total)


# ---------------------------------------------------------------------------------------------------
# Encoders: frames in, bytes out, one frame at a time


def zip_bytes(sequence, names) -> bytes:
    """A ZIP of PNG files, one per frame (PNGs are compressed already, so they are stored as they are)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, frame in zip(names, sequence):
            archive.writestr(name, png_bytes(frame, compress_level=3))
    return buffer.getvalue()


def gif_bytes(sequence, fps, *, palette_frame=None) -> bytes:
    """An animated GIF that loops, in one 256-colour palette without dithering (crisp digits).

    The palette is the median-cut palette of ``palette_frame`` (default: the first frame); a frame with
    every output value filled in holds nearly every colour of the sequence. Pillow writes every frame as a
    GIF of its own; its image block (with the palette as a local colour table) is appended after a delay,
    so memory holds one frame at a time, however long the sequence.
    """
    delay = round(100 / fps)  # GIF delays are in hundredths of a second
    sequence = iter(sequence)
    first = next(sequence)
    palette = Image.fromarray(np.ascontiguousarray(first if palette_frame is None else palette_frame)).quantize(
        colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    for index, frame in enumerate(itertools.chain([first], sequence)):
        image = Image.fromarray(np.ascontiguousarray(frame)).quantize(palette=palette, dither=Image.Dither.NONE)
        single = io.BytesIO()
        image.save(single, format="GIF")
        header, colours, block = _split_gif(single.getvalue())
        if index == 0:
            # The file's header and screen size, no global palette, then loop forever (NETSCAPE2.0).
            out.write(header[:10] + bytes([header[10] & 0x70]) + header[11:13])
            out.write(b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00")
        out.write(b"\x21\xf9\x04\x04" + struct.pack("<H", delay) + b"\x00\x00")  # delay; keep the frame
        out.write(block[:9] + bytes([0x80 | (block[9] & 0x40) | _palette_bits(colours)]) + colours + block[10:])
    out.write(b"\x3b")
    return out.getvalue()


def _palette_bits(palette):
    return (len(palette) // 3).bit_length() - 2  # a table of 2**(n + 1) colours is stored as n


def _split_gif(data):
    """A one-frame GIF's header (13 bytes), its global palette and its image block (descriptor and LZW data)."""
    flags = data[10]
    palette_length = 3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0
    position = 13 + palette_length
    palette = data[13:position]
    while data[position] == 0x21:  # skip extensions (Pillow may write a comment or a graphic control)
        position += 2
        while data[position]:
            position += data[position] + 1
        position += 1
    if data[position] != 0x2C:
        raise ValueError("unexpected GIF layout from Pillow")
    return data[:13], palette, data[position:-1]  # without the trailer


def mp4_bytes(sequence, fps) -> bytes:
    """An H.264 MP4 (yuv420p, for every player and slide program), encoded by ffmpeg through pipes.

    The first frame sets the video's size (even sides). Raises RuntimeError with ffmpeg's message if
    encoding fails.
    """
    import imageio_ffmpeg  # the ffmpeg binary inside its wheel: no system ffmpeg needed

    sequence = iter(sequence)
    first = next(sequence)
    height, width = first.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"video frames need even sides, got {width} x {height}")
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0", "-an",
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
               "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", "pipe:1"]
    encoder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    output, errors = [], []
    readers = [threading.Thread(target=lambda: output.append(encoder.stdout.read()), daemon=True),
               threading.Thread(target=lambda: errors.append(encoder.stderr.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        for frame in itertools.chain([first], sequence):
            if frame.shape != first.shape:
                raise ValueError(f"every frame must be {width} x {height}, got {frame.shape[1]} x {frame.shape[0]}")
            encoder.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        encoder.stdin.close()
        encoder.wait()
    except BrokenPipeError:
        encoder.wait()  # ffmpeg stopped early: its message is reported below
    finally:
        if encoder.poll() is None:
            encoder.kill()
            encoder.wait()
        for reader in readers:
            reader.join()
    if encoder.returncode != 0:
        message = b"".join(errors).decode("utf-8", "replace").strip()
        raise RuntimeError(f"ffmpeg could not encode the video (exit code {encoder.returncode}): {message}")
    return b"".join(output)
