"""Step-by-step traces of a 2-D or 3-D convolution and 2-D pooling: what each window read and how it was summed.

The step-by-step views draw only these objects. A trace replays the readable definitions in
kernels/reference.py: the padded input is ``reference.pad2d``'s, and step i's sum and value are what
``reference.conv2d_pixel`` (``max_pool2d_pixel``, ``avg_pool2d_pixel``) computes for that output
pixel, so ``trace.output`` equals ``reference.conv2d`` (``max_pool2d``, ``avg_pool2d``) exactly. The
engine's fast paths agree with it to float32 rounding (relative error under 1e-5, tested). A 3-D trace
does the same for volumes with ``reference.pad3d`` and ``reference.conv3d_voxel``: its output equals
``reference.conv3d``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import engine, reference

__all__ = ["Conv3dSteps", "Conv3dTrace", "ConvStep", "ConvSteps", "ConvTrace", "PoolStep", "PoolSteps", "PoolTrace",
           "conv2d_trace", "conv3d_trace", "pool2d_trace"]


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
        Sum of the products, added one after another in float32 (``reference.conv2d_pixel``).
    bias : float
    value : float
        ``total + bias`` in float32, equal to ``output[out_row, out_col]``.
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
        The sums, as ``ConvStep.total``.
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
        Equal to ``reference.conv2d``; to ``kernels.conv2d`` within float32 rounding.
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
        total = reference.conv2d_pixel(self.padded, self.kernel, 0.0, out_row, out_col, self.stride, self.dilation)
        value = reference.conv2d_pixel(self.padded, self.kernel, self.bias, out_row, out_col, self.stride,
                                       self.dilation)
        return ConvStep(i, out_row, out_col, rows, cols, patch, patch * self.kernel, float(total), self.bias,
                        float(value))

    def all_steps(self) -> ConvSteps:
        """Every step at once, in arrays (N = num_steps): what a player in the browser replays.

        ``reference.conv2d_pixel`` run on every output position at once: the same products added in
        the same order, so row ``i`` equals ``step(i)`` bit for bit.
        """
        out_rows, out_cols = _every_output_pixel(self.output.shape)
        rows, cols = _window_indices(out_rows, out_cols, self.kernel.shape, self.stride, self.dilation)
        patches = self.padded[rows[:, :, None], cols[:, None, :]]
        totals = _conv_values(self.padded, self.kernel, 0.0, out_rows, out_cols, self.stride, self.dilation)
        values = _conv_values(self.padded, self.kernel, self.bias, out_rows, out_cols, self.stride, self.dilation)
        return ConvSteps(out_rows, out_cols, rows, cols, patches, patches * self.kernel, totals, values)


def _conv_values(padded, kernel, bias, out_rows, out_cols, stride, dilation):
    """``reference.conv2d_pixel`` at each (out_rows[s], out_cols[s]): float32 (N,)."""
    return np.asarray(reference.conv2d_pixel(padded, kernel, bias, out_rows, out_cols, stride, dilation),
                      dtype=np.float32)


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
        "avg" mode: the window's sum (float32, added in reading order); ``value`` is ``total / patch.size``.
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
            value, row, col = reference.max_pool2d_pixel(self.padded, self.size, self.stride, out_row, out_col)
            return PoolStep(i, out_row, out_col, rows, cols, patch, float(value), (int(row), int(col)))
        value, total = reference.avg_pool2d_pixel(self.padded, self.size, self.stride, out_row, out_col)
        return PoolStep(i, out_row, out_col, rows, cols, patch, float(value), None, float(total))

    def all_steps(self) -> PoolSteps:
        """Every step at once, in arrays (N = num_steps), equal to ``step(i)`` row by row."""
        out_rows, out_cols = _every_output_pixel(self.output.shape)
        rows, cols = _window_indices(out_rows, out_cols, self.size, self.stride, (1, 1))
        patches = self.padded[rows[:, :, None], cols[:, None, :]]
        values, argmax, totals = _pool_values(self.padded, self.size, self.stride, self.mode, out_rows, out_cols)
        return PoolSteps(out_rows, out_cols, rows, cols, patches, values, argmax, totals)


def _pool_values(padded, size, stride, mode, out_rows, out_cols):
    """The reference's pooled value of each step (float32 (N,)), with "max"'s argmax (N, 2) or "avg"'s sums (N,)."""
    if mode == "max":
        values, argmax_rows, argmax_cols = reference.max_pool2d_pixel(padded, size, stride, out_rows, out_cols)
        return np.asarray(values, dtype=np.float32), np.stack([argmax_rows, argmax_cols], axis=1), None
    values, totals = reference.avg_pool2d_pixel(padded, size, stride, out_rows, out_cols)
    return np.asarray(values, dtype=np.float32), None, np.asarray(totals, dtype=np.float32)


def _check_step(i, num_steps: int) -> int:
    i = engine._as_int(i, "step index")
    if not -num_steps <= i < num_steps:
        raise IndexError(f"step {i} is out of range: this trace has {num_steps} steps (0 to {num_steps - 1})")
    return i % num_steps


def conv2d_trace(x, w, b=0.0, *, stride=1, padding=0, dilation=1, padding_mode="zeros", flip=False) -> ConvTrace:
    """Compute a 2-D convolution with the readable definition, keeping what shows it one window at a time.

    Parameters
    ----------
    x : array (H, W)
    w : array (kh, kw)
    b : float, default 0.0
    stride, padding, dilation, padding_mode, flip :
        As in ``kernels.conv2d`` (checked by its rules, with its messages).

    Returns
    -------
    ConvTrace
        ``trace.step(i).value == trace.output.flat[i]`` for every step; ``trace.output`` is
        ``reference.conv2d``'s (H', W') output.
    """
    x_array = np.asarray(x)
    if x_array.ndim != 2 or np.ndim(w) != 2:
        raise ValueError(
            f"conv2d_trace works on one image (H, W) and one kernel (kh, kw); got x {x_array.shape} "
            f"and w {np.shape(w)}"
        )
    plan = engine._plan_convolution(x, w, b, 2, stride, padding, dilation, padding_mode, flip)
    image, kernel = plan.x[0, 0, 0], plan.w[0, 0, 0]  # float32, finite, the kernel flipped if asked
    (top, bottom), (left, right) = plan.pads[1:]
    strides, dilations = plan.strides[1:], plan.dilations[1:]
    bias = float(plan.bias[0])
    padded = reference.pad2d(image, (top, bottom, left, right), padding_mode)
    out_rows, out_cols = _every_output_pixel(plan.out_spatial[1:])
    output = _conv_values(padded, kernel, bias, out_rows, out_cols, strides, dilations).reshape(plan.out_spatial[1:])
    return ConvTrace(
        padded=padded,
        pad=(top, bottom, left, right),
        kernel=np.ascontiguousarray(kernel, dtype=np.float32),
        bias=bias,
        stride=strides,
        dilation=dilations,
        output=output,
        num_steps=int(output.size),
    )


def pool2d_trace(x, size=2, *, stride=None, padding=0, mode="max") -> PoolTrace:
    """Compute a 2-D pooling with the readable definition, keeping what shows it one window at a time.

    Parameters
    ----------
    x : array (H, W)
    size, stride, padding :
        As in ``max_pool2d`` / ``avg_pool2d`` (checked by their rules, with their messages).
    mode : {"max", "avg"}

    Returns
    -------
    PoolTrace
        ``trace.output`` is ``reference.max_pool2d`` / ``reference.avg_pool2d``'s (H', W') output.
    """
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg'; got {mode!r}")
    x_array = np.asarray(x)
    if x_array.ndim != 2:
        raise ValueError(f"pool2d_trace works on one image (H, W); got shape {x_array.shape}")
    plan = engine._plan_pooling(x, size, stride, padding, 2)
    sizes, strides, pads, output_shape = plan.sizes[1:], plan.strides[1:], plan.pads[1:], plan.out_spatial[1:]
    fill = -np.inf if mode == "max" else 0.0
    padded = reference.pad2d(plan.planes[0, 0], (pads[0], pads[0], pads[1], pads[1]), fill=fill)
    values, _, _ = _pool_values(padded, sizes, strides, mode, *_every_output_pixel(output_shape))
    return PoolTrace(padded=padded, pad=(pads[0], pads[0], pads[1], pads[1]), size=sizes, stride=strides, mode=mode,
                     output=values.reshape(output_shape), num_steps=int(values.size))


# ---------------------------------------------------------------------------------------------------
# Volumes


@dataclass(frozen=True)
class Conv3dSteps:
    """Every step of a 3-D convolution at once (N = D' * H' * W' steps, slice by slice, then row-major).

    Attributes
    ----------
    out_slices, out_rows, out_cols : int arrays (N,)
        The output voxel of each step.
    slices : int array (N, kd)
        Slices of the padded volume under the kernel's slices (``out_slice * stride + a * dilation``).
    rows, cols : int arrays (N, kh), (N, kw)
    patches, products : float32 (N, kd, kh, kw)
        The voxels under the kernel, and each times its weight (rounded to float32 for display).
    slice_sums : float32 (N, kd)
        Each kernel slice's sum of products, added row by row (``reference.conv3d_voxel``'s inner sum).
    totals : float32 (N,)
        The slice sums added in order: the sum of all the products, before the bias.
    values : float32 (N,)
        ``totals + bias``, equal to ``output.ravel()``.
    """

    out_slices: np.ndarray
    out_rows: np.ndarray
    out_cols: np.ndarray
    slices: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    patches: np.ndarray
    products: np.ndarray
    slice_sums: np.ndarray
    totals: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Conv3dTrace:
    """A whole 3-D convolution of one volume by one kernel, ready to be replayed voxel by voxel.

    Attributes
    ----------
    padded : float32 (Dp, Hp, Wp)
        The padded volume (``reference.pad3d``).
    pad : (front, back, top, bottom, left, right)
    kernel : float32 (kd, kh, kw)
        The kernel as applied (already flipped when ``flip=True``).
    bias : float
    stride, dilation : (int, int, int)
    output : float32 (D', H', W')
        Equal to ``reference.conv3d``; to ``kernels.conv3d`` within float32 rounding.
    num_steps : int
        ``D' * H' * W'``.
    """

    padded: np.ndarray
    pad: tuple
    kernel: np.ndarray
    bias: float
    stride: tuple
    dilation: tuple
    output: np.ndarray
    num_steps: int

    def all_steps(self) -> Conv3dSteps:
        """Every step at once, in arrays: ``reference.conv3d_voxel`` run on every output voxel at once."""
        out_slices, out_rows, out_cols = np.unravel_index(np.arange(self.num_steps), self.output.shape)
        kd, kh, kw = self.kernel.shape
        slices = out_slices[:, None] * self.stride[0] + np.arange(kd) * self.dilation[0]
        rows = out_rows[:, None] * self.stride[1] + np.arange(kh) * self.dilation[1]
        cols = out_cols[:, None] * self.stride[2] + np.arange(kw) * self.dilation[2]
        patches = self.padded[slices[:, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
        # Kernel slice a's sum is conv3d_voxel's inner sum: the voxel of the one-slice kernel a, laid on the
        # padded slice under it (depth stride 1, so out_slice names that slice itself).
        in_plane_stride, in_plane_dilation = (1,) + tuple(self.stride[1:]), (1,) + tuple(self.dilation[1:])
        slice_sums = np.stack([_voxel_values(self.padded, self.kernel[a:a + 1], 0.0, slices[:, a], out_rows, out_cols,
                                             in_plane_stride, in_plane_dilation) for a in range(kd)], axis=1)
        totals = _voxel_values(self.padded, self.kernel, 0.0, out_slices, out_rows, out_cols, self.stride,
                               self.dilation)
        values = _voxel_values(self.padded, self.kernel, self.bias, out_slices, out_rows, out_cols, self.stride,
                               self.dilation)
        return Conv3dSteps(out_slices, out_rows, out_cols, slices, rows, cols, patches, patches * self.kernel,
                           slice_sums, totals, values)


def _voxel_values(padded, kernel, bias, out_slices, out_rows, out_cols, stride, dilation):
    """``reference.conv3d_voxel`` at each (out_slices[s], out_rows[s], out_cols[s]): float32 (N,)."""
    return np.asarray(reference.conv3d_voxel(padded, kernel, bias, out_slices, out_rows, out_cols, stride, dilation),
                      dtype=np.float32)


def conv3d_trace(x, w, b=0.0, *, stride=1, padding=0, dilation=1, padding_mode="zeros", flip=False) -> Conv3dTrace:
    """Compute a 3-D convolution with the readable definition, keeping what shows it one voxel at a time.

    Parameters
    ----------
    x : array (D, H, W)
    w : array (kd, kh, kw)
    b : float, default 0.0
    stride, padding, dilation, padding_mode, flip :
        As in ``kernels.conv3d`` (checked by its rules, with its messages).

    Returns
    -------
    Conv3dTrace
        ``trace.output`` is ``reference.conv3d``'s (D', H', W') output, and row ``i`` of
        ``trace.all_steps()`` is output voxel ``np.unravel_index(i, trace.output.shape)``.
    """
    if np.ndim(x) != 3 or np.ndim(w) != 3:
        raise ValueError(f"conv3d_trace works on one volume (D, H, W) and one kernel (kd, kh, kw); got x "
                         f"{np.shape(x)} and w {np.shape(w)}")
    plan = engine._plan_convolution(x, w, b, 3, stride, padding, dilation, padding_mode, flip)
    volume, kernel = plan.x[0, 0], plan.w[0, 0]  # float32, finite, the kernel flipped if asked
    pads = tuple(int(side) for pair in plan.pads for side in pair)
    bias = float(plan.bias[0])
    padded = reference.pad3d(volume, pads, padding_mode)
    out_slices, out_rows, out_cols = np.unravel_index(np.arange(int(np.prod(plan.out_spatial))), plan.out_spatial)
    output = _voxel_values(padded, kernel, bias, out_slices, out_rows, out_cols, plan.strides,
                           plan.dilations).reshape(plan.out_spatial)
    return Conv3dTrace(padded=padded, pad=pads, kernel=np.ascontiguousarray(kernel, dtype=np.float32), bias=bias,
                       stride=tuple(plan.strides), dilation=tuple(plan.dilations), output=output,
                       num_steps=int(output.size))
