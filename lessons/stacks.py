"""The stacks lesson's recipes: a stage from a page's choices, the working image, the stack's summary.

No Streamlit: views/stacks.py holds the widgets. The stages themselves run in lessons/receptive_field.py.
"""

from __future__ import annotations

import functools

import numpy as np

from kernels import KERNELS, make_kernel
from lessons.receptive_field import (Stage, input_dependencies, input_region, layer_shapes, receptive_field,
                                     run_stack, stack_geometries)
from model import load as load_classifier
from scans.preprocess import resize

LEARNED_PREFIX = "learned #"  # map labels of the classifier's kernels: "learned #3" is its first-layer kernel 3


def allowed_kernels(size):
    """Filter-bank names available at ``size``: fixed kernels exist only at their own (3 x 3) size."""
    return [name for name, kernel in KERNELS.items() if kernel.resizable or kernel.weights.shape == (size, size)]


def bank_kernels(names, size):
    """The named filter-bank kernels at ``size`` (fixed ones at their own size), float32 (len(names), k, k)."""
    return np.stack([make_kernel(name, size) if KERNELS[name].resizable else KERNELS[name].weights
                     for name in names]).astype(np.float32)


@functools.lru_cache(maxsize=1)
def learned_kernels():
    """The classifier's first-layer kernels, float32 (K, k, k), read-only.

    Loaded once for the whole process: the shipped weights are the same for every session.
    """
    kernels = load_classifier().first_layer_kernels()
    kernels.flags.writeable = False
    return kernels


def learned_bank(indices):
    """The chosen learned kernels (by index into the classifier's first layer), float32 (len, k, k)."""
    kernels = learned_kernels()
    bad = [index for index in indices if not 0 <= index < len(kernels)]
    if bad:
        raise ValueError(f"learned kernel indices {bad} do not exist; the classifier's first layer has "
                         f"{len(kernels)} kernels (0 to {len(kernels) - 1})")
    return np.ascontiguousarray(kernels[list(indices)], dtype=np.float32)


def learned_name(index):
    """A learned kernel's label: index 2 of the first layer is "learned #3"."""
    return f"{LEARNED_PREFIX}{index + 1}"


def is_learned(stage):
    """Whether a stage's kernels are the classifier's."""
    return all(name.startswith(LEARNED_PREFIX) for name in stage.names)


def stage_from_spec(spec):
    """The Stage a page's choices describe: (source, kernels, size, stride, dilation, activation, pool, pool_size,
    pool_stride), kernels being filter-bank names ("bank") or indices into the classifier's first layer ("learned")."""
    source, kernels, size, stride, dilation, activation, pool, pool_size, pool_stride = spec
    if source == "learned":
        bank, names = learned_bank(kernels), tuple(learned_name(index) for index in kernels)
    else:
        bank, names = bank_kernels(kernels, size), kernels
    return Stage(bank, names=names, stride=stride, dilation=dilation, activation=activation,
                 pool=pool, pool_size=pool_size, pool_stride=pool_stride)


def working_shape(image_shape, longer_side):
    """(rows, cols) of the image reduced to ``longer_side`` on its longer side (never enlarged)."""
    rows, cols = image_shape
    scale = min(1.0, longer_side / max(rows, cols))
    return (rows, cols) if scale == 1.0 else (max(1, round(rows * scale)), max(1, round(cols * scale)))


def working_image(image, longer_side):
    """The image reduced to ``longer_side`` on its longer side (never enlarged), float32 in [0, 1]."""
    shape = working_shape(image.shape, longer_side)
    if shape == image.shape:
        return np.asarray(image, dtype=np.float32)
    return np.clip(resize(image, shape), 0.0, 1.0).astype(np.float32)


def working_stack(image, parameters):
    """(working image, stages, results): the image reduced to ``longer_side``, then run through the stages.

    ``parameters`` is (longer_side, specs), each spec a stage as the page chose it (see :func:`stage_from_spec`).
    """
    longer_side, specs = parameters
    working = working_image(image, longer_side)
    stages = [stage_from_spec(spec) for spec in specs]
    return working, stages, run_stack(working, stages)


def describe(stage):
    """One line saying what a stage does, e.g. "conv 3x3 x3, ReLU, max pool 2"."""
    kernel_rows, kernel_cols = stage.bank.shape[1:]
    text = f"conv {kernel_rows}x{kernel_cols} x{stage.kernel_count}"
    if is_learned(stage):
        text += " learned"
    if stage.stride > 1:
        text += f" stride {stage.stride}"
    if stage.dilation > 1:
        text += f" dilation {stage.dilation}"
    text += f", {stage.activation}"
    if stage.pool != "none":
        step = stage.pool_stride or stage.pool_size
        text += f", {stage.pool} pool {stage.pool_size}" + (f" stride {step}" if step != stage.pool_size else "")
    return text


def shape_text(shape):
    """(3, 64, 64) -> "3 x 64 x 64"."""
    return " x ".join(str(n) for n in shape)


def millions(count):
    """A multiply-add count as people read it: "1.23 M" from 100,000 up, "12,345" below."""
    return f"{count / 1e6:.2f} M" if count >= 1e5 else f"{count:,}"


def summary_rows(working, stages, results, mm_per_pixel):
    """The summary table, one row per stage after the input: what it does, its output, its cost and field."""
    layers, stage_ends = stack_geometries(stages)
    rows = [{"stage": "input", "what it does": "the image", "output (channels x height x width)":
             shape_text((1,) + working.shape), "multiply-adds": "", "one cell sees (pixels)": "1 x 1",
             "neighbouring cells (pixels apart)": "1"}]
    for index, (stage, result, end) in enumerate(zip(stages, results, stage_ends)):
        field = receptive_field(layers[:end])
        sees = f"{field.size[0]} x {field.size[1]}"
        if mm_per_pixel is not None:
            sees += f" (about {field.size[0] * mm_per_pixel[0]:.0f} x {field.size[1] * mm_per_pixel[1]:.0f} mm)"
        rows.append({"stage": f"stage {index + 1}", "what it does": describe(stage),
                     "output (channels x height x width)": shape_text(result.outputs.shape),
                     "multiply-adds": millions(result.multiply_adds), "one cell sees (pixels)": sees,
                     "neighbouring cells (pixels apart)": f"{field.jump[0]}"})
    return rows


def overview_scale(working, results):
    """Pixels per cell for the overview: as large as fits 900 pixels across and 520 for the input's height."""
    widest = max([working.shape[1]] + [result.outputs.shape[0] * (result.outputs.shape[2] + 8)
                                       for result in results])
    return int(max(1, min(900 // widest, 520 // working.shape[0])))


def chain_regions(layers, stage_ends, input_shape, stage_index, row, col):
    """The chosen cell's field, and for each earlier stage the field of one cell on the way down to it."""
    shapes = layer_shapes(layers, input_shape)
    regions = []
    for earlier in range(stage_index):
        start, stop = stage_ends[earlier], stage_ends[stage_index]
        rows, cols = input_dependencies(layers[start:stop], shapes[start], row, col)
        middle_row, middle_col = int(rows[len(rows) // 2]), int(cols[len(cols) // 2])
        regions.append(input_region(layers[:start], input_shape, middle_row, middle_col))
    regions.append(input_region(layers[:stage_ends[stage_index]], input_shape, row, col))
    return regions
