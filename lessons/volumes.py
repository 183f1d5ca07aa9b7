"""Lesson "Volumes and video": the working volume, its planes, 3-D kernels, 2-D versus 3-D, pooling and clips.

No Streamlit here: views/volumes_lesson.py lays these out. Every number comes from kernels/ (conv3d,
its trace, the 3-D pooling and the 3-D bank); this module only chooses what to compute.
Axes are (slice, row, column) for a volume and (frame, row, column) for a clip.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from kernels import (KERNEL_3D_DEPTHS, KERNEL_3D_SIZES, KERNELS_3D, avg_pool3d, conv3d, make_kernel3d, max_pool3d,
                     output_size, relu)
from lessons.receptive_field import conv_geometry, input_region, pool_geometry, receptive_field

WORKING_SIDE = 256  # a larger slice is averaged down to about this (whole blocks of pixels)
# A deep series is averaged further in-plane (never across slices, so the picker's slices stay the
# volume's): 8 million float32 voxels are 32 MB, held per session for an upload.
WORKING_VOXELS = 8_000_000
MAX_KERNEL_SIDE = max(KERNEL_3D_SIZES)
TYPED_LIMIT = 100.0  # a typed weight's largest magnitude
CLIP_MODALITIES = ("US", "XA", "RF")  # frames of these are taken one after another in time


# ------------------------------------------------------------------------------------ the volume


def working_volume(volume, max_side=WORKING_SIDE, max_voxels=WORKING_VOXELS):
    """The volume with every slice averaged down by a whole factor so its longer side is at most ``max_side``
    and the whole volume holds at most about ``max_voxels`` voxels.

    Returns
    -------
    volume : float32 (D, H', W')
    factor : int
        Pixels of a slice averaged into one (per side); 1 keeps the volume as it is.
    """
    volume = np.asarray(volume, dtype=np.float32)
    depth, rows, cols = volume.shape
    factor = max(1, -(-max(rows, cols) // max_side), int(np.ceil(np.sqrt(depth * rows * cols / max_voxels))))
    if factor == 1:
        return volume, 1
    return avg_pool3d(volume, (1, factor, factor)), factor


def clamp_voxel(voxel, shape):
    """``voxel`` moved inside a volume of ``shape`` (a voxel from a larger volume lands on its edge)."""
    return tuple(int(np.clip(index, 0, size - 1)) for index, size in zip(voxel, shape))


def blob_in_slice(volume, slice_index, margin=0.15):
    """(row, column) in one slice where the 3-D Laplacian of Gaussian answers most, away from the edges.

    A bright spot there (a vessel crossing the slice, a nodule) gives the kernel large numbers to show,
    where the volume's centre may be flat tissue. ``margin``: the share of each side left out (labels,
    the table, air).
    """
    # Only the slice and its two neighbours are needed for a kernel three slices deep.
    first = max(0, slice_index - 1)
    response = conv3d(volume[first:slice_index + 2], make_kernel3d("laplacian of gaussian", 3, 3),
                      padding="same", padding_mode="replicate")[slice_index - first]
    rows, cols = response.shape
    top, left = int(rows * margin), int(cols * margin)
    inner = response[top:rows - top, left:cols - left]
    row, col = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(row + top), int(col + left)


def region_bounds(shape, centre, depth, side):
    """Half-open (slice, row, column) ranges of a ``depth`` x ``side`` x ``side`` block around ``centre``.

    The block is shifted, not cut, where it would leave the volume; it shrinks only when the volume is
    smaller than the block.
    """
    bounds = []
    for size, middle, length in zip(shape, centre, (depth, side, side)):
        length = min(length, size)
        start = int(np.clip(middle - length // 2, 0, size - length))
        bounds.append((start, start + length))
    return tuple(bounds)


def is_clip(scan):
    """Whether a scan's frames follow one another in time (a cine or ultrasound clip) rather than in space."""
    return scan.is_volume and ("Frame time (ms)" in scan.info or "Cine rate (frames/s)" in scan.info
                               or scan.modality in CLIP_MODALITIES)


def slice_aspect(scan, factor=1):
    """How many in-plane pixels of the working volume one slice step spans (for drawing side views to scale)."""
    if scan.slice_spacing_mm and scan.spacing:
        return float(scan.slice_spacing_mm) / (float(scan.spacing[0]) * factor)
    return 1.0


# ------------------------------------------------------------------------------------ kernels


def bank_kernel(name, depth, size):
    """A 3-D bank kernel at the chosen shape (fixed kernels keep their own)."""
    if KERNELS_3D[name].resizable:
        return make_kernel3d(name, depth, size)
    return make_kernel3d(name)


def random_kernel(depth, size, seed):
    """Weights drawn uniformly from -1 to 1, two decimals: a kernel before any training."""
    values = np.random.default_rng(seed).uniform(-1.0, 1.0, (depth, size, size))
    return np.round(values, 2).astype(np.float32)


def parse_kernel(text):
    """A kernel typed as text: numbers in rows, rows in slices, slices separated by a blank line.

    Raises
    ------
    ValueError
        With what was wrong and where, for a person to correct.
    """
    blocks = [block for block in re.split(r"\n\s*\n", text.strip()) if block.strip()]
    if not blocks:
        raise ValueError("Type at least one number.")
    slices = []
    for number, block in enumerate(blocks, start=1):
        rows = []
        for line in block.strip().splitlines():
            try:
                rows.append([float(word) for word in line.replace(",", " ").split()])
            except ValueError:
                raise ValueError(f"Slice {number} has a row that is not all numbers: {line.strip()!r}.") from None
        widths = {len(row) for row in rows}
        if len(widths) != 1:
            raise ValueError(f"Slice {number} has rows of different lengths ({sorted(widths)}): give every row "
                             "the same number of values.")
        slices.append(rows)
    shapes = {(len(rows), len(rows[0])) for rows in slices}
    if len(shapes) != 1:
        raise ValueError(f"The slices have different shapes ({', '.join(f'{r} x {c}' for r, c in sorted(shapes))}): "
                         "every slice needs the same rows and columns.")
    kernel = np.array(slices, dtype=np.float64)
    if max(kernel.shape) > MAX_KERNEL_SIDE:
        raise ValueError(f"The kernel is {' x '.join(map(str, kernel.shape))}; each side may be at most "
                         f"{MAX_KERNEL_SIDE}.")
    if not np.all(np.isfinite(kernel)) or np.max(np.abs(kernel)) > TYPED_LIMIT:
        raise ValueError(f"Every weight must be a number from -{TYPED_LIMIT:g} to {TYPED_LIMIT:g}.")
    return kernel.astype(np.float32)


def kernel_text(kernel):
    """A kernel written as :func:`parse_kernel` reads it."""
    return "\n\n".join("\n".join(" ".join(f"{value:g}" for value in row) for row in plane) for plane in kernel)


# ------------------------------------------------------------------------------------ 2-D versus 3-D


class SphereAndTube(NamedTuple):
    """A synthetic volume with a ball and a tube of the same radius, and the two kernels' answers.

    ``volume``, ``flat`` and ``deep`` are float32 (D, H, W): the volume, the answer of the 2-D kernel
    applied slice by slice (one slice deep) and that of the 3-D kernel (as deep as it is wide).
    ``sphere`` and ``tube`` are their centres (slice, row, column); the tube runs through every slice.
    """

    volume: np.ndarray
    flat: np.ndarray
    deep: np.ndarray
    sphere: tuple
    tube: tuple
    flat_kernel: np.ndarray
    deep_kernel: np.ndarray


def sphere_and_tube(shape=(24, 32, 64), radius=2.0, size=5):
    """A ball and a tube of one radius side by side, seen by a size x size Laplacian of Gaussian in 2-D and 3-D.

    At the centre slice both cross-sections are the same disc, so the 2-D kernel gives both the same
    answer; the 3-D kernel also sees that the ball ends a few slices up and down, and answers more.
    """
    depth, rows, cols = shape
    z, y, x = np.mgrid[:depth, :rows, :cols].astype(np.float32)
    sphere = (depth // 2, rows // 2, cols // 4)
    tube = (depth // 2, rows // 2, 3 * cols // 4)
    ball = (z - sphere[0]) ** 2 + (y - sphere[1]) ** 2 + (x - sphere[2]) ** 2 <= radius ** 2
    pipe = (y - tube[1]) ** 2 + (x - tube[2]) ** 2 <= radius ** 2
    volume = (ball | pipe).astype(np.float32)
    flat_kernel = make_kernel3d("laplacian of gaussian", 1, size)
    deep_kernel = make_kernel3d("laplacian of gaussian", size, size)
    options = dict(padding="same", padding_mode="replicate")
    return SphereAndTube(volume, conv3d(volume, flat_kernel, **options), conv3d(volume, deep_kernel, **options),
                         sphere, tube, flat_kernel, deep_kernel)


def flat_and_deep(volume, size):
    """The same Laplacian of Gaussian on a real volume: one slice deep (2-D) and ``size`` deep (3-D)."""
    depth = min(size, max(d for d in KERNEL_3D_DEPTHS if d <= volume.shape[0]))
    options = dict(padding="same", padding_mode="replicate")
    return (conv3d(volume, make_kernel3d("laplacian of gaussian", 1, size), **options),
            conv3d(volume, make_kernel3d("laplacian of gaussian", depth, size), **options))


# ------------------------------------------------------------------------------------ stages and pooling


class StageRow(NamedTuple):
    """One row of the stages table: what a layer does, the shape it gives, its voxels and multiply-adds."""

    layer: str
    shape: tuple
    voxels: int
    multiply_adds: int


def stage_table(volume_shape, kernel_shape, stages):
    """Shapes, voxels and multiply-adds of ``stages`` x (3-D convolution "same", ReLU, 2 x 2 x 2 max pooling).

    The counts come from ``kernels.output_size``; a convolution costs one multiply-add per kernel weight
    per output voxel, pooling none (it compares).
    """
    rows = [StageRow("input", tuple(volume_shape), int(np.prod(volume_shape)), 0)]
    shape = tuple(volume_shape)
    kd, kh, kw = kernel_shape
    for stage in range(1, stages + 1):
        voxels = int(np.prod(shape))
        rows.append(StageRow(f"stage {stage}: {kd} x {kh} x {kw} convolution and ReLU", shape, voxels,
                             voxels * kd * kh * kw))
        shape = tuple(output_size(n, 2, stride=2) for n in shape)
        rows.append(StageRow(f"stage {stage}: 2 x 2 x 2 max pooling", shape, int(np.prod(shape)), 0))
    return rows


def run_stages(volume, kernel, stages):
    """Each stage's pooled output: conv3d ("same", replicated edges), ReLU, max_pool3d 2; a list of volumes."""
    outputs = []
    current = volume
    for _ in range(stages):
        activated = relu(conv3d(current, kernel, padding="same", padding_mode="replicate"))
        current = max_pool3d(activated, 2)
        outputs.append(current)
    return outputs


def stage_field(kernel_shape, stages, volume_shape, voxel):
    """The receptive field of one voxel of the last stage, as a box in the input volume.

    Returns
    -------
    size : (slices, rows, columns)
        The textbook field of a voxel of that stage.
    box : ((slice_start, slice_stop), (row_start, row_stop), (col_start, col_stop))
        Half-open, the field of the voxel of the last stage nearest to ``voxel`` (given in the input's
        coordinates), clipped to the volume.
    """
    kd, kh, _ = kernel_shape
    # The geometry helpers take two axes at a time: (slices, rows) and (rows, columns).
    deep = [layer for _ in range(stages) for layer in (conv_geometry((kd, kh), padding="same"), pool_geometry(2))]
    flat = [layer for _ in range(stages) for layer in (conv_geometry(kh, padding="same"), pool_geometry(2))]
    jump = 2 ** stages
    depth, rows, cols = volume_shape
    # Each stage keeps the size ("same") and then halves it, rounding down: n // jump voxels per axis at the end.
    cell = [max(0, min(index // jump, size // jump - 1)) for index, size in zip(voxel, volume_shape)]
    slice_start, slice_stop, _, _ = input_region(deep, (depth, rows), cell[0], cell[1])
    row_start, row_stop, col_start, col_stop = input_region(flat, (rows, cols), cell[1], cell[2])
    size = receptive_field(deep).size + receptive_field(flat).size[1:]
    return size, ((slice_start, slice_stop), (row_start, row_stop), (col_start, col_stop))


# ------------------------------------------------------------------------------------ clips


def frame_differences(clip):
    """Each frame's change to the next one: the clip through the 3-D bank's "frame difference" (T - 1 frames)."""
    return conv3d(clip, KERNELS_3D["frame difference"].weights)
