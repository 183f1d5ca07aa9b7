"""Step-by-step traces of a 2-D convolution and pooling: what each window read and how it was summed.

The step-by-step views draw only these objects.  Each step's ``value`` is recomputed here in NumPy
in the engine's own order and rounding (taps row by row, each added to the running float32 sum with
one fused multiply-add, from 0, bias last; see kernels/_jit.py), so it equals the engine's output
pixel exactly, not just to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import _simd, engine

__all__ = ["ConvStep", "ConvSteps", "ConvTrace", "PoolStep", "PoolSteps", "PoolTrace", "conv2d_trace", "pool2d_trace"]


def _fused_sum(patch: np.ndarray, kernel: np.ndarray) -> np.float32:
    """Sum of ``patch * kernel`` as the engine forms it: tap by tap, each product added unrounded."""
    total = np.float32(0.0)
    for value, weight in zip(patch.reshape(-1), kernel.reshape(-1)):
        total = _simd.fused_multiply_add(weight, value, total)
    return total


def _sequential_sum(values: np.ndarray) -> np.float32:
    """Sum float32 values one after another, left to right, in float32 (the engine's order)."""
    flat = values.reshape(-1)
    if flat.size == 0:
        return np.float32(0.0)
    # np.cumsum adds strictly sequentially (unlike np.sum, which sums pairwise).
    return np.cumsum(flat, dtype=np.float32)[-1]


def _window_indices(out_rows, out_cols, size, stride, dilation):
    """Rows (N, kh) and columns (N, kw) of the padded input under each step's window."""
    rows = out_rows[:, None] * stride[0] + np.arange(size[0]) * dilation[0]
    cols = out_cols[:, None] * stride[1] + np.arange(size[1]) * dilation[1]
    return rows, cols


def _every_output_pixel(output_shape):
    """Output row and column of every step, row-major: steps (N,) each."""
    out_rows, out_cols = np.divmod(np.arange(output_shape[0] * output_shape[1]), output_shape[1])
    return out_rows, out_cols


@dataclass(frozen=True)
class ConvStep:
    """One output pixel of a convolution.

    Attributes
    ----------
    index : int
        Step number, row-major over the output.
    out_row, out_col : int
        The output pixel.
    rows : int array (kh,)
        Rows of the padded input under the kernel (``out_row * stride + i * dilation``).
    cols : int array (kw,)
        Columns of the padded input under the kernel.
    patch : float32 (kh, kw)
        The padded input at those rows and columns.
    products : float32 (kh, kw)
        ``patch * kernel``, each rounded to float32 for display.
    total : float
        Sum of the products, formed as the engine forms it: each exact product added to the running
        float32 sum with a single rounding (fused multiply-add), so it can differ from adding the
        rounded ``products`` in the last bit.
    bias : float
    value : float
        ``total + bias``, equal to ``output[out_row, out_col]`` as float32.
    """

    index: int
    out_row: int
    out_col: int
    rows: np.ndarray
    cols: np.ndarray
    patch: np.ndarray
    products: np.ndarray
    total: float
    bias: float
    value: float


@dataclass(frozen=True)
class ConvSteps:
    """Every step of a convolution at once: row ``i`` of each array is ``ConvTrace.step(i)``.

    Attributes
    ----------
    out_rows, out_cols : int arrays (N,)
    rows : int array (N, kh)
    cols : int array (N, kw)
    patches, products : float32 (N, kh, kw)
    totals : float32 (N,)
        The sums, formed tap by tap with one rounding each, as ``ConvStep.total``.
    values : float32 (N,)
        ``totals + bias``, equal to ``output.ravel()``.
    """

    out_rows: np.ndarray
    out_cols: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    patches: np.ndarray
    products: np.ndarray
    totals: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class ConvTrace:
    """A whole 2-D convolution, ready to be replayed step by step.

    Attributes
    ----------
    padded : float32 (Hp, Wp)
        The padded input.
    pad : (top, bottom, left, right)
    kernel : float32 (kh, kw)
        The kernel as applied (already flipped when ``flip=True``).
    bias : float
    stride, dilation : (int, int)
    output : float32 (H', W')
        Equal to ``conv2d(..., method="direct")`` (and to ``conv2d`` with the default method for
        any kernel under 20 x 20).
    num_steps : int
        ``H' * W'``.
    """

    padded: np.ndarray
    pad: tuple
    kernel: np.ndarray
    bias: float
    stride: tuple
    dilation: tuple
    output: np.ndarray
    num_steps: int

    def step(self, i: int) -> ConvStep:
        """Return step ``i`` (0 <= i < num_steps; negative counts from the end, like a list)."""
        i = _check_step(i, self.num_steps)
        out_row, out_col = divmod(i, self.output.shape[1])
        kh, kw = self.kernel.shape
        rows = out_row * self.stride[0] + np.arange(kh) * self.dilation[0]
        cols = out_col * self.stride[1] + np.arange(kw) * self.dilation[1]
        patch = self.padded[np.ix_(rows, cols)]
        products = patch * self.kernel
        total = _fused_sum(patch, self.kernel)
        value = np.float32(total + np.float32(self.bias))
        return ConvStep(i, out_row, out_col, rows, cols, patch, products, float(total), self.bias, float(value))

    def all_steps(self) -> ConvSteps:
        """Every step at once, in arrays (N = num_steps): what a player in the browser replays.

        Vectorised over the steps, the taps still added one after another in the engine's order, so
        row ``i`` equals ``step(i)`` bit for bit.
        """
        out_rows, out_cols = _every_output_pixel(self.output.shape)
        rows, cols = _window_indices(out_rows, out_cols, self.kernel.shape, self.stride, self.dilation)
        patches = self.padded[rows[:, :, None], cols[:, None, :]]
        products = patches * self.kernel
        totals = np.zeros(self.num_steps, dtype=np.float32)
        for (tap_row, tap_col), weight in np.ndenumerate(self.kernel):
            totals = _simd.fused_multiply_add(weight, patches[:, tap_row, tap_col], totals)
        totals = np.asarray(totals, dtype=np.float32).reshape(self.num_steps)
        values = totals + np.float32(self.bias)
        return ConvSteps(out_rows, out_cols, rows, cols, patches, products, totals, values)


@dataclass(frozen=True)
class PoolStep:
    """One output pixel of a pooling.

    Attributes
    ----------
    index, out_row, out_col : int
    rows, cols : int arrays (kh,), (kw,)
        Rows and columns of the padded input in the window.
    patch : float32 (kh, kw)
    value : float
        Maximum or mean of the window, equal to the pooled output pixel.
    argmax : (int, int) or None
        (row, col) of the maximum in the padded input ("max" mode), None for "avg".
    total : float or None
        "avg" mode: the window's sum (float32, added left to right); ``value`` is ``total / patch.size``.
        None for "max".
    """

    index: int
    out_row: int
    out_col: int
    rows: np.ndarray
    cols: np.ndarray
    patch: np.ndarray
    value: float
    argmax: tuple | None
    total: float | None = None


@dataclass(frozen=True)
class PoolSteps:
    """Every step of a pooling at once: row ``i`` of each array is ``PoolTrace.step(i)``.

    Attributes
    ----------
    out_rows, out_cols : int arrays (N,)
    rows, cols : int arrays (N, kh), (N, kw)
    patches : float32 (N, kh, kw)
    values : float32 (N,), equal to ``output.ravel()``
    argmax : int array (N, 2) or None
        "max": (row, col) in the padded input of each kept value; None for "avg".
    totals : float32 (N,) or None
        "avg": each window's sum; None for "max".
    """

    out_rows: np.ndarray
    out_cols: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    patches: np.ndarray
    values: np.ndarray
    argmax: np.ndarray | None
    totals: np.ndarray | None


@dataclass(frozen=True)
class PoolTrace:
    """A whole 2-D pooling, ready to be replayed step by step.

    Attributes
    ----------
    padded : float32 (Hp, Wp)
        The padded input: padding is -inf for "max" (it never wins), 0 for "avg".
    pad : (top, bottom, left, right)
    size, stride : (int, int)
    mode : "max" or "avg"
    output : float32 (H', W'), equal to ``max_pool2d`` / ``avg_pool2d``
    num_steps : int
    """

    padded: np.ndarray
    pad: tuple
    size: tuple
    stride: tuple
    mode: str
    output: np.ndarray
    num_steps: int

    def step(self, i: int) -> PoolStep:
        """Return step ``i`` (0 <= i < num_steps; negative counts from the end)."""
        i = _check_step(i, self.num_steps)
        out_row, out_col = divmod(i, self.output.shape[1])
        rows = out_row * self.stride[0] + np.arange(self.size[0])
        cols = out_col * self.stride[1] + np.arange(self.size[1])
        patch = self.padded[np.ix_(rows, cols)]
        if self.mode == "max":
            flat = int(np.argmax(patch))  # the first maximum in row-major order, as the engine
            row_in_window, col_in_window = divmod(flat, patch.shape[1])
            argmax = (int(rows[row_in_window]), int(cols[col_in_window]))
            return PoolStep(i, out_row, out_col, rows, cols, patch, float(patch[row_in_window, col_in_window]), argmax)
        total = _sequential_sum(patch)
        return PoolStep(i, out_row, out_col, rows, cols, patch, float(total / np.float32(patch.size)), None,
                        float(total))

    def all_steps(self) -> PoolSteps:
        """Every step at once, in arrays (N = num_steps), equal to ``step(i)`` row by row."""
        out_rows, out_cols = _every_output_pixel(self.output.shape)
        rows, cols = _window_indices(out_rows, out_cols, self.size, self.stride, (1, 1))
        patches = self.padded[rows[:, :, None], cols[:, None, :]]
        flat = patches.reshape(self.num_steps, -1)
        if self.mode == "max":
            first_maximum = np.argmax(flat, axis=1)  # the first in row-major order, as step(i)
            row_in_window, col_in_window = np.divmod(first_maximum, self.size[1])
            steps = np.arange(self.num_steps)
            argmax = np.stack([rows[steps, row_in_window], cols[steps, col_in_window]], axis=1)
            return PoolSteps(out_rows, out_cols, rows, cols, patches, flat[steps, first_maximum], argmax, None)
        # cumsum along each row adds left to right, as _sequential_sum does for one window.
        totals = np.cumsum(flat, axis=1, dtype=np.float32)[:, -1]
        return PoolSteps(out_rows, out_cols, rows, cols, patches, totals / np.float32(flat.shape[1]), None, totals)


def _check_step(i, num_steps: int) -> int:
    i = engine._as_int(i, "step index")
    if not -num_steps <= i < num_steps:
        raise IndexError(f"step {i} is out of range: this trace has {num_steps} steps (0 to {num_steps - 1})")
    return i % num_steps


def conv2d_trace(x, w, b=0.0, *, stride=1, padding=0, dilation=1, padding_mode="zeros", flip=False) -> ConvTrace:
    """Compute a 2-D convolution and keep everything needed to show it one window at a time.

    Parameters
    ----------
    x : array (H, W)
    w : array (kh, kw)
    b : float, default 0.0
    stride, padding, dilation, padding_mode, flip :
        As in ``conv2d``.

    Returns
    -------
    ConvTrace
        ``trace.step(i).value == trace.output.flat[i]`` for every step.
    """
    x_array = np.asarray(x)
    if x_array.ndim != 2 or np.ndim(w) != 2:
        raise ValueError(
            f"conv2d_trace works on one image (H, W) and one kernel (kh, kw); got x {x_array.shape} "
            f"and w {np.shape(w)}"
        )
    if b is None:
        b = 0.0
    output = engine.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation,
                           padding_mode=padding_mode, flip=flip, method="direct")
    # The same validated, normalised arguments conv2d just accepted.
    x32 = engine._as_float32(x, "x")
    kernel = engine._as_float32(w, "w")
    if flip:
        kernel = kernel[::-1, ::-1]
    strides = engine._per_axis(stride, "stride", 2, 1)
    dilations = engine._per_axis(dilation, "dilation", 2, 1)
    top, bottom, left, right = engine.resolve_padding(x32.shape, kernel.shape, padding, dilations)
    padded = np.pad(x32, ((top, bottom), (left, right)), mode=engine._NUMPY_PAD_MODES[padding_mode])
    return ConvTrace(
        padded=padded.astype(np.float32),
        pad=(top, bottom, left, right),
        kernel=np.ascontiguousarray(kernel, dtype=np.float32),
        bias=float(np.float32(b)),
        stride=strides,
        dilation=dilations,
        output=output,
        num_steps=int(output.size),
    )


def pool2d_trace(x, size=2, *, stride=None, padding=0, mode="max") -> PoolTrace:
    """Compute a 2-D pooling and keep everything needed to show it one window at a time.

    Parameters
    ----------
    x : array (H, W)
    size, stride, padding :
        As in ``max_pool2d`` / ``avg_pool2d``.
    mode : {"max", "avg"}

    Returns
    -------
    PoolTrace
    """
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg'; got {mode!r}")
    x_array = np.asarray(x)
    if x_array.ndim != 2:
        raise ValueError(f"pool2d_trace works on one image (H, W); got shape {x_array.shape}")
    if mode == "max":
        output = engine.max_pool2d(x, size, stride=stride, padding=padding)
    else:
        output = engine.avg_pool2d(x, size, stride=stride, padding=padding)
    sizes = engine._per_axis(size, "size", 2, 1)
    strides = sizes if stride is None else engine._per_axis(stride, "stride", 2, 1)
    pads = engine._per_axis(padding, "padding", 2, 0)
    fill = -np.inf if mode == "max" else 0.0
    padded = np.pad(engine._as_float32(x, "x"), ((pads[0], pads[0]), (pads[1], pads[1])), constant_values=fill)
    return PoolTrace(
        padded=padded.astype(np.float32),
        pad=(pads[0], pads[0], pads[1], pads[1]),
        size=sizes,
        stride=strides,
        mode=mode,
        output=output,
        num_steps=int(output.size),
    )
