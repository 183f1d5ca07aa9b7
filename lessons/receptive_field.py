"""Receptive fields of a stack of convolution and pooling stages, and the stack they describe.

A cell deep in a CNN depends on a window of the layer below, each cell of which depends on a window
of the layer below that, and so on down to the image. This module does that arithmetic exactly
(per axis, because every window is a rectangle) and runs the stacks the "Deeper layers see larger
things" lesson builds, with the engine in :mod:`kernels`. The padding and output-size rules are the
engine's own (``kernels.resolve_padding``, ``kernels.output_size``).

Two views of the same thing:

- :func:`receptive_fields` gives the textbook numbers after each layer: the field's ``size`` (how
  many input pixels one cell spans), its ``jump`` (how far apart, in input pixels, two neighbouring
  cells' fields are) and its ``start`` (where the field of cell 0 begins; negative when it reaches
  into the padding). The recurrence, with ``k_eff = dilation * (k - 1) + 1``::

      size_out  = size_in + (k_eff - 1) * jump_in
      start_out = start_in - pad_before * jump_in
      jump_out  = jump_in * stride

- :func:`input_dependencies` follows one cell back through the actual layer shapes, so it knows
  that padding and rows dropped by a stride are not pixels: it returns the exact rows and columns of
  the image the cell depends on (their bounding box is :func:`input_region`). Away from the borders
  the box is exactly ``size`` pixels tall and wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kernels import avg_pool2d, conv2d, conv2d_trace, max_pool2d, output_size, resolve_padding
from lessons import activations

ACTIVATIONS = ("none",) + tuple(activations.ACTIVATIONS)  # a stage may also leave its maps as they are
POOL_MODES = ("max", "avg", "none")


def _pair(value, what):
    """Turn an int or a pair of ints into a (rows, cols) tuple of ints, refusing anything else."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{what} must be an int or a pair of ints (rows, cols), got {value!r}")


class LayerGeometry(NamedTuple):
    """The shape-changing part of one convolution or pooling layer (activations change no shape).

    ``kernel``, ``stride`` and ``dilation`` are (rows, cols); ``padding`` is (top, bottom, left, right).
    """

    kind: str
    kernel: tuple
    stride: tuple
    dilation: tuple
    padding: tuple

    @property
    def effective_kernel(self):
        """The span (rows, cols) of the kernel's taps in the layer's input: dilation * (k - 1) + 1."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    def output_shape(self, input_shape):
        """(H, W) of the layer's output for an input of ``input_shape`` (H, W): ``kernels.output_size`` per axis."""
        top, bottom, left, right = self.padding
        try:
            return tuple(output_size(int(n), k, stride=step, padding=pads, dilation=spread)
                         for n, k, step, spread, pads in zip(input_shape, self.kernel, self.stride, self.dilation,
                                                             ((top, bottom), (left, right))))
        except ValueError as error:
            raise ValueError(
                f"a {self.kind} layer with kernel {self.kernel}, dilation {self.dilation} and padding "
                f"{self.padding} does not fit an input of {tuple(input_shape)} ({error}): use a larger image "
                "or fewer stages") from None


def _padding(padding, kernel, dilation):
    """(top, bottom, left, right) by kernels.resolve_padding (an int, a (rows, cols) pair, "valid" or "same").

    The padding depends on the kernel alone: resolve_padding is given the kernel's own size as the input's,
    which it only checks to be positive.
    """
    return resolve_padding(kernel, kernel, padding, dilation)


def conv_geometry(kernel_size, *, stride=1, padding=0, dilation=1):
    """Geometry of a convolution layer.

    Parameters
    ----------
    kernel_size, stride, dilation : int or (int, int)
        Each >= 1.
    padding : int, (int, int), "valid" or "same"
        Zeros added around the input ("same" keeps the size at stride 1).

    Returns
    -------
    LayerGeometry
    """
    kernel = _pair(kernel_size, "kernel_size")
    step = _pair(stride, "stride")
    spread = _pair(dilation, "dilation")
    for name, value in (("kernel_size", kernel), ("stride", step), ("dilation", spread)):
        if min(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return LayerGeometry("conv", kernel, step, spread, _padding(padding, kernel, spread))


def pool_geometry(size, *, stride=None, padding=0):
    """Geometry of a pooling layer (max or average: both read the same window).

    Parameters
    ----------
    size : int or (int, int)
        Window size, >= 1.
    stride : int, (int, int) or None
        Step between windows; None means the window size (no overlap), the usual choice.
    padding : int or (int, int)

    Returns
    -------
    LayerGeometry
    """
    window = _pair(size, "pool size")
    step = window if stride is None else _pair(stride, "pool stride")
    if min(window) < 1 or min(step) < 1:
        raise ValueError(f"pool size and stride must be >= 1, got size {window} and stride {step}")
    return LayerGeometry("pool", window, step, (1, 1), _padding(padding, window, (1, 1)))


class ReceptiveField(NamedTuple):
    """Textbook receptive-field numbers after some layers, each a (rows, cols) pair of ints.

    ``size``: input pixels one cell's field spans; ``jump``: input pixels between neighbouring cells'
    fields; ``start``: input coordinate where cell (0, 0)'s field begins (negative = into the padding).
    """

    size: tuple
    jump: tuple
    start: tuple

    def region(self, row, col):
        """Unclipped field of output cell (row, col) as half-open (row_start, row_stop, col_start, col_stop)."""
        row_start = self.start[0] + row * self.jump[0]
        col_start = self.start[1] + col * self.jump[1]
        return row_start, row_start + self.size[0], col_start, col_start + self.size[1]


def receptive_fields(layers):
    """Receptive field after each layer of a stack.

    Parameters
    ----------
    layers : sequence of LayerGeometry
        In the order the data flows through them.

    Returns
    -------
    list of ReceptiveField
        One per layer; the last one is the whole stack's.
    """
    size, jump, start = (1, 1), (1, 1), (0, 0)
    fields = []
    for layer in layers:
        pad_before = (layer.padding[0], layer.padding[2])
        size = tuple(n + (k_eff - 1) * j for n, k_eff, j in zip(size, layer.effective_kernel, jump))
        start = tuple(s - p * j for s, p, j in zip(start, pad_before, jump))
        jump = tuple(j * s for j, s in zip(jump, layer.stride))
        fields.append(ReceptiveField(size, jump, start))
    return fields


def receptive_field(layers):
    """The receptive field of the whole stack (identity field, size 1, for an empty stack)."""
    fields = receptive_fields(layers)
    return fields[-1] if fields else ReceptiveField((1, 1), (1, 1), (0, 0))


def layer_shapes(layers, input_shape):
    """(H, W) of the input and after every layer: a list of len(layers) + 1 shapes."""
    shapes = [tuple(int(n) for n in input_shape)]
    for layer in layers:
        shapes.append(layer.output_shape(shapes[-1]))
    return shapes


def _back_one_axis(indices, layer_input_size, kernel, stride, dilation, pad_before):
    """Indices of a layer's input (one axis) read by the output cells ``indices``; padding is dropped."""
    taps = indices[:, None] * stride - pad_before + dilation * np.arange(kernel)[None, :]
    taps = np.unique(taps)
    return taps[(taps >= 0) & (taps < layer_input_size)]


def input_dependencies(layers, input_shape, row, col):
    """The exact input rows and columns that output cell (row, col) of the last layer depends on.

    Every window is a rectangle of taps, so the set of input pixels a cell depends on is the product
    of a set of rows and a set of columns (with gaps only where dilation leaves them).

    Parameters
    ----------
    layers : sequence of LayerGeometry
    input_shape : (int, int)
        (H, W) of the image fed to the first layer.
    row, col : int
        A cell of the last layer's output.

    Returns
    -------
    rows, cols : ndarray of int
        Sorted input rows and columns. Pixel (r, c) influences the cell exactly when r is in rows
        and c in cols (for kernels without zero weights).
    """
    shapes = layer_shapes(layers, input_shape)
    out_rows, out_cols = shapes[-1]
    if not (0 <= row < out_rows and 0 <= col < out_cols):
        raise ValueError(f"cell ({row}, {col}) is outside the {out_rows} x {out_cols} output map: "
                         f"choose a row in 0..{out_rows - 1} and a column in 0..{out_cols - 1}")
    rows, cols = np.array([row]), np.array([col])
    for layer, (in_rows, in_cols) in zip(reversed(layers), reversed(shapes[:-1])):
        rows = _back_one_axis(rows, in_rows, layer.kernel[0], layer.stride[0], layer.dilation[0],
                              layer.padding[0])
        cols = _back_one_axis(cols, in_cols, layer.kernel[1], layer.stride[1], layer.dilation[1],
                              layer.padding[2])
    return rows, cols


def input_region(layers, input_shape, row, col):
    """Bounding box of the pixels output cell (row, col) depends on, clipped to the image.

    Returns
    -------
    (row_start, row_stop, col_start, col_stop) : tuple of int
        Half-open, in input pixel coordinates; empty (start == stop) only if the cell sees nothing
        but padding.
    """
    rows, cols = input_dependencies(layers, input_shape, row, col)
    if rows.size == 0 or cols.size == 0:
        return 0, 0, 0, 0
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


# ---------------------------------------------------------------------------------------------------
# The stack these fields describe: conv (a small bank of kernels) -> activation -> pooling, repeated.


@dataclass(frozen=True)
class Stage:
    """One stage of a stack: convolution with a bank of kernels, an activation, then pooling.

    Attributes
    ----------
    bank : ndarray, shape (K, kh, kw)
        The stage's kernels; each makes one output feature map.
    names : tuple of str
        A label per kernel, for captions.
    stride, dilation : int
        Of the convolution. Its padding is "same" (the map keeps its size at stride 1).
    activation : str
        One of ACTIVATIONS.
    pool : str
        "max", "avg" or "none".
    pool_size : int
    pool_stride : int or None
        None means the pool size.
    """

    bank: np.ndarray
    names: tuple = ()
    stride: int = 1
    dilation: int = 1
    activation: str = "ReLU"
    pool: str = "max"
    pool_size: int = 2
    pool_stride: int | None = None

    def __post_init__(self):
        bank = np.asarray(self.bank, dtype=np.float32)
        if bank.ndim != 3 or bank.shape[0] < 1:
            raise ValueError(f"a stage's bank must have shape (K, kh, kw) with K >= 1, got {bank.shape}")
        object.__setattr__(self, "bank", bank)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.pool not in POOL_MODES:
            raise ValueError(f"pool must be one of {POOL_MODES}, got {self.pool!r}")

    @property
    def kernel_count(self):
        return self.bank.shape[0]

    def geometries(self):
        """The stage's shape-changing layers: [conv] or [conv, pool]."""
        layers = [conv_geometry(self.bank.shape[1:], stride=self.stride, padding="same", dilation=self.dilation)]
        if self.pool != "none":
            layers.append(pool_geometry(self.pool_size, stride=self.pool_stride))
        return layers


def stack_geometries(stages):
    """All shape-changing layers of a stack, and for each stage the index just past its last layer.

    Returns
    -------
    layers : list of LayerGeometry
    stage_ends : list of int
        ``layers[:stage_ends[s]]`` is everything up to the output of stage s.
    """
    layers, stage_ends = [], []
    for stage in stages:
        layers += stage.geometries()
        stage_ends.append(len(layers))
    return layers, stage_ends


def stage_weights(bank, in_channels):
    """Spread a bank of K 2-D kernels over C input channels: a (K, C, kh, kw) convolution weight.

    The arrangement (hand-made, not learned): output map k applies bank kernel ``(k + c) mod K`` to
    input map c, divided by C so values keep their scale, and adds the C results. Every output map
    thus sees every input map, each through its own kernel slice, and two output maps never use the
    same arrangement (when K > 1). With C = 1 (the image) output map k is simply bank kernel k.

    Parameters
    ----------
    bank : ndarray, shape (K, kh, kw)
    in_channels : int

    Returns
    -------
    ndarray, shape (K, in_channels, kh, kw), float32
    """
    bank = np.asarray(bank, dtype=np.float32)
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    kernel_count = bank.shape[0]
    order = (np.arange(kernel_count)[:, None] + np.arange(in_channels)[None, :]) % kernel_count
    return np.ascontiguousarray(bank[order] / np.float32(in_channels), dtype=np.float32)


@dataclass
class StageResult:
    """What one stage computed, for an input of C maps.

    Attributes
    ----------
    stage : Stage
    inputs : ndarray (C, H, W)
    weights : ndarray (K, C, kh, kw)
    padding : (int, int)
        Convolution padding (rows, cols) on each side.
    conv : ndarray (K, H1, W1)
        Convolution output (before the activation).
    activated : ndarray (K, H1, W1)
    outputs : ndarray (K, H2, W2)
        After pooling (equal to ``activated`` when pool is "none").
    pool_indices : ndarray (K, H2, W2) of int or None
        For max pooling: flat index into each (H1, W1) plane of the cell each output took.
    multiply_adds : int
        H1 * W1 * K * C * kh * kw for the convolution.
    """

    stage: Stage
    inputs: np.ndarray
    weights: np.ndarray
    padding: tuple
    conv: np.ndarray
    activated: np.ndarray
    outputs: np.ndarray
    pool_indices: np.ndarray | None
    multiply_adds: int


def run_stack(image, stages):
    """Run an image through a stack of stages with the engine.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    stages : sequence of Stage
        1 or more.

    Returns
    -------
    list of StageResult
        One per stage; ``results[s].outputs`` feeds stage s + 1.

    Raises
    ------
    ValueError
        If the image is not 2-D, or shrinks below a stage's window.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"run_stack needs a 2-D image (H, W), got shape {image.shape}")
    if not stages:
        raise ValueError("run_stack needs at least one stage")
    layers, _ = stack_geometries(stages)
    layer_shapes(layers, image.shape)  # refuses early, with a clear message, if a stage does not fit

    maps = image[None]
    results = []
    for stage in stages:
        in_channels = maps.shape[0]
        weights = stage_weights(stage.bank, in_channels)
        conv_layer = stage.geometries()[0]
        top, _, left, _ = conv_layer.padding
        conv = conv2d(maps[None], weights, stride=stage.stride, padding=(top, left),
                      dilation=stage.dilation)[0]
        activated = conv if stage.activation == "none" else activations.activate(conv, stage.activation)
        pool_indices = None
        if stage.pool == "max":
            pooled, pool_indices = max_pool2d(activated[None], stage.pool_size, stride=stage.pool_stride,
                                              return_indices=True)
            pooled, pool_indices = pooled[0], pool_indices[0]
        elif stage.pool == "avg":
            pooled = avg_pool2d(activated[None], stage.pool_size, stride=stage.pool_stride)[0]
        else:
            pooled = activated
        kh, kw = stage.bank.shape[1:]
        multiply_adds = int(conv.shape[1] * conv.shape[2] * stage.kernel_count * in_channels * kh * kw)
        results.append(StageResult(stage, maps, weights, (top, left), conv, activated, pooled,
                                   pool_indices, multiply_adds))
        maps = pooled
    return results


def conv_cell_for_output(result, kernel_index, row, col):
    """The convolution cell (row, col in the conv map) behind output cell (row, col) of map ``kernel_index``.

    For max pooling that is the cell the maximum came from; for average pooling, the top-left cell of
    the pooling window (the output is the mean of the window); without pooling, the cell itself.
    """
    stage = result.stage
    if stage.pool == "none":
        return row, col
    if stage.pool == "max":
        flat = int(result.pool_indices[kernel_index, row, col])
        return divmod(flat, result.conv.shape[2])
    step = stage.pool_size if stage.pool_stride is None else stage.pool_stride
    return row * step, col * step


class ChannelSum(NamedTuple):
    """How one convolution output value adds up over input channels.

    ``steps[c]`` is the trace step (kernels.conv2d_trace) for input channel c (its patch, kernel slice and
    products); ``totals[c]`` its sum; ``value`` the 4-D convolution's output at that cell, which
    equals ``totals.sum()`` up to float32 rounding.
    """

    kernel_index: int
    conv_row: int
    conv_col: int
    steps: list
    totals: np.ndarray
    value: float


def channel_sum(result, kernel_index, conv_row, conv_col):
    """Per-input-channel products and sums behind one convolution output of a stage.

    Parameters
    ----------
    result : StageResult
    kernel_index : int
        Which output map (0..K-1).
    conv_row, conv_col : int
        A cell of the convolution output (before pooling), e.g. from :func:`conv_cell_for_output`.

    Returns
    -------
    ChannelSum
    """
    kernel_count, conv_rows, conv_cols = result.conv.shape
    if not 0 <= kernel_index < kernel_count:
        raise ValueError(f"kernel_index must be in 0..{kernel_count - 1}, got {kernel_index}")
    if not (0 <= conv_row < conv_rows and 0 <= conv_col < conv_cols):
        raise ValueError(f"conv cell ({conv_row}, {conv_col}) is outside the {conv_rows} x {conv_cols} map")
    stage = result.stage
    step_index = conv_row * conv_cols + conv_col
    steps = []
    for channel in range(result.inputs.shape[0]):
        trace = conv2d_trace(result.inputs[channel], result.weights[kernel_index, channel],
                             stride=stage.stride, padding=result.padding, dilation=stage.dilation)
        steps.append(trace.step(step_index))
    totals = np.array([step.total for step in steps], dtype=np.float32)
    return ChannelSum(kernel_index, conv_row, conv_col, steps, totals,
                      float(result.conv[kernel_index, conv_row, conv_col]))
