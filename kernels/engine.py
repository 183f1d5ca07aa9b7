"""Public convolution, pooling and activation functions: validate and normalise, then run kernels/_jit.py.

Every function here is a thin wrapper: it checks its arguments (raising an error that names the bad
value and says what to do), converts them to C-contiguous float32, resolves padding, stride and
dilation into plain ints, and hands the arithmetic to a private jitted loop.  Which loop computes a
forward convolution is chosen in one place, ``kernels.dispatch.forward_path``; while a fresh install's
loops compile in the background (``kernels.warm_up(wait=False)``), forward passes, pooling and
activations are computed by kernels/_uncompiled.py's NumPy steps and gradients wait for the loops.

Conventions (the same as PyTorch, so that numbers can be checked against it):

* Convolution is cross-correlation: ``out[r, q] = b + sum_{i,j} w[i, j] * x_padded[r*s + i*d, q*s + j*d]``.
  ``flip=True`` flips the kernel first, which turns it into a true (mathematical) convolution.
* Output size along an axis: ``floor((n + pad_before + pad_after - d*(k - 1) - 1) / s) + 1``.
* ``padding="same"`` pads ``d*(k - 1)`` in total, half before and the rest after, so for an even
  kernel the extra row/column goes to the bottom/right (PyTorch's choice); it needs stride 1.
* ``padding_mode``: "zeros"; "reflect" mirrors without repeating the edge pixel (``d c b | a b c d``,
  NumPy's and SciPy-ndimage's "mirror"/``np.pad(mode="reflect")``); "replicate" repeats the edge pixel
  (``a a a | a b c d``, SciPy-ndimage's "nearest").  Reflect needs each pad smaller than the image.
* Max pooling pads with -inf (every window keeps at least one real pixel: pad <= size // 2);
  average pooling pads with zeros and divides by the full window area (PyTorch's
  ``count_include_pad=True``).
* Integer and boolean images are converted to float32 when every value is exactly representable
  (|value| <= 2**24, always true for 8- and 16-bit images) and refused otherwise; float64 and
  float16 are converted to float32.  NaN or infinite values are refused.

Threads: a call with fewer than ``kernels._config.PARALLEL_MIN_WORK`` (2**24) multiply-adds runs on
the calling thread only; larger ones use all of Numba's threads.  Every function may be called
from several threads at once (Streamlit sessions): the kernels release the GIL and the OpenMP
threading layer accepts concurrent launches.

Large kernels: for a single-channel convolution (C = K = 1) whose kernel area is at least
``FFT_MIN_KERNEL_AREA`` (20 x 20), ``conv2d`` switches to an FFT path (NumPy's pocketfft, in float64)
that gives the same numbers to float32 rounding; ``method="direct"`` or ``method="fft"`` forces one.
"""

from __future__ import annotations

import functools
import math
import operator
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np

from kernels import _config, _jit, _uncompiled, dispatch
from kernels.dispatch import FFT_MIN_KERNEL_AREA
from kernels._config import PARALLEL, kernel_call_guard

__all__ = [
    "FFT_MIN_KERNEL_AREA",
    "PADDING_MODES",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "conv2d",
    "conv2d_backward",
    "conv3d",
    "conv3d_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool3d",
    "max_pool3d_backward",
    "output_size",
    "relu",
    "relu_backward",
    "resolve_padding",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
]

PADDING_MODES = ("zeros", "reflect", "replicate")


# Largest integer magnitude that float32 represents exactly (24-bit significand).
_FLOAT32_EXACT_INTEGER_LIMIT = 2**24

_AXIS_NAMES = ("depth", "rows", "columns")
_NUMPY_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}


# --------------------------------------------------------------------------------------------
# Argument checking and normalisation
# --------------------------------------------------------------------------------------------

def _as_float32(value, name: str) -> np.ndarray:
    """Return ``value`` as a float32 array, converting integers only when that is exact."""
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind == "f":
        return array.astype(np.float32, copy=False)
    if kind in "iub":
        if kind != "b" and array.dtype.itemsize > 2 and array.size:
            largest = max(abs(int(array.min())), abs(int(array.max())))
            if largest > _FLOAT32_EXACT_INTEGER_LIMIT:
                raise ValueError(
                    f"{name} holds integers up to {largest}, more than 2**24 = "
                    f"{_FLOAT32_EXACT_INTEGER_LIMIT}, which float32 cannot represent exactly; "
                    f"scale it (for example to [0, 1] or to HU) and pass a float array"
                )
        return array.astype(np.float32)
    raise TypeError(
        f"{name} has dtype {array.dtype}; pass a real-valued float or integer array "
        f"(float32 is used internally)"
    )


# Arrays up to this size are checked for NaN/inf with isfinite().all() directly.
_SMALL_ARRAY_SIZE = 4096
# Up to this size (the lessons' kernels) as Python floats: 1.2 us for a 3x3 kernel, isfinite().all() 4 us.
_TINY_ARRAY_SIZE = 64


def _check_finite(array: np.ndarray, name: str) -> None:
    """Refuse NaN and infinite values, naming how many there are and where the first one is."""
    if array.size == 0:
        return
    if array.size <= _TINY_ARRAY_SIZE:
        if all(map(math.isfinite, array.ravel().tolist())):
            return
    elif array.size <= _SMALL_ARRAY_SIZE:  # kernels, biases: np.errstate alone costs more
        if np.isfinite(array).all():
            return
    elif array.dtype == np.float32 and array.flags.c_contiguous and dispatch.compiled_loops_ready():
        # An integer min-reduction over the bits (parallel for big arrays): 3-4x faster than
        # isfinite().all(), which also allocates a boolean array.
        with kernel_call_guard(array.size):
            if not _jit.any_nonfinite(array.reshape(-1)):
                return
    else:
        # One float32 sum is much cheaper than isfinite().all() and is finite only if every
        # element is; a finite array whose sum overflows takes the slow path and passes.
        with np.errstate(over="ignore", invalid="ignore"):  # a finite array may overflow the sum
            total = array.sum()
        if np.isfinite(total):
            return
    finite = np.isfinite(array)
    if finite.all():
        return
    first = np.unravel_index(int(np.argmin(finite)), array.shape)
    n_nan = int(np.isnan(array).sum())
    n_inf = int(array.size - finite.sum()) - n_nan
    raise ValueError(
        f"{name} contains {n_nan} NaN and {n_inf} infinite values (first at index "
        f"{tuple(int(i) for i in first)}, value {array[first]}); replace them, for example with "
        f"np.nan_to_num, before calling"
    )


def _ready(array: np.ndarray) -> np.ndarray:
    """Return a C-contiguous, writeable float32 array: the one layout the kernels are compiled for."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not array.flags.writeable:
        array = array.copy()
    return array


def _checked_float32(value, name: str) -> np.ndarray:
    array = _as_float32(value, name)
    _check_finite(array, name)
    return array


def _as_int(value, name: str) -> int:
    if type(value) is int:  # the common case first: this runs a few times per call
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}") from None


def _per_axis(value, name: str, ndim: int, minimum: int) -> tuple[int, ...]:
    """Normalise an int or a sequence of ``ndim`` ints, each at least ``minimum``."""
    if isinstance(value, (tuple, list, np.ndarray)):
        values = tuple(_as_int(v, name) for v in value)
        if len(values) != ndim:
            raise ValueError(
                f"{name} must be an int or {ndim} ints (one per spatial axis), got {tuple(value)!r}"
            )
    else:
        values = (_as_int(value, name),) * ndim
    for v in values:
        if v < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return values


def _check_padding_mode(padding_mode) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"padding_mode must be one of {', '.join(repr(m) for m in PADDING_MODES)}; "
            f"got {padding_mode!r}"
        )
    return padding_mode


def _resolve_padding_nd(kernel_shape, padding, dilations, strides=None) -> tuple[tuple[int, int], ...]:
    """Return (before, after) padding per spatial axis."""
    ndim = len(kernel_shape)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * ndim
        if padding == "same":
            if strides is not None and any(s != 1 for s in strides):
                raise ValueError(
                    f"padding='same' needs stride 1 (got stride {strides}); with a larger stride "
                    f"give the padding as numbers instead"
                )
            pads = []
            for k, d in zip(kernel_shape, dilations):
                total = d * (k - 1)
                before = total // 2  # an odd total puts the extra row/column after (PyTorch)
                pads.append((before, total - before))
            return tuple(pads)
        raise ValueError(f"padding must be an int, {ndim} ints, 'valid' or 'same'; got {padding!r}")
    return tuple((p, p) for p in _per_axis(padding, "padding", ndim, 0))


def resolve_padding(input_shape_hw, kernel_shape_hw, padding, dilation=1) -> tuple[int, int, int, int]:
    """Turn a ``padding`` argument into explicit (top, bottom, left, right) pixel counts.

    Parameters
    ----------
    input_shape_hw : (int, int)
        Image height and width (checked to be positive).
    kernel_shape_hw : (int, int)
        Kernel height and width.
    padding : int, (int, int), "valid" or "same"
        "same" pads ``dilation * (k - 1)`` in total per axis, the extra one (odd total, i.e. an even
        kernel) at the bottom / right, as PyTorch does.
    dilation : int or (int, int), default 1

    Returns
    -------
    (top, bottom, left, right) : tuple of int

    Examples
    --------
    >>> resolve_padding((64, 64), (4, 4), "same", 1)
    (1, 2, 1, 2)
    """
    height, width = _per_axis(input_shape_hw, "input_shape_hw", 2, 1)
    kernel = _per_axis(kernel_shape_hw, "kernel_shape_hw", 2, 1)
    dilations = _per_axis(dilation, "dilation", 2, 1)
    (top, bottom), (left, right) = _resolve_padding_nd(kernel, padding, dilations)
    return top, bottom, left, right


def output_size(n, k, *, stride=1, padding=0, dilation=1) -> int:
    """Number of output positions along one axis: ``floor((n + 2p - d(k - 1) - 1) / s) + 1``.

    Parameters
    ----------
    n : int
        Input length along the axis.
    k : int
        Kernel (or pooling window) length.
    stride, dilation : int, default 1
    padding : int or (int, int), default 0
        Padding on each side, or (before, after) when they differ (see ``resolve_padding``).

    Returns
    -------
    int
        At least 1; a ValueError says so if the dilated kernel does not fit in the padded input.

    Examples
    --------
    >>> output_size(64, 3, padding=1)
    64
    >>> output_size(64, 3, stride=2)
    31
    """
    n = _per_axis(n, "n", 1, 1)[0]
    k = _per_axis(k, "k", 1, 1)[0]
    stride = _per_axis(stride, "stride", 1, 1)[0]
    dilation = _per_axis(dilation, "dilation", 1, 1)[0]
    if isinstance(padding, (tuple, list)):
        before, after = _per_axis(padding, "padding", 2, 0)
    else:
        before = after = _per_axis(padding, "padding", 1, 0)[0]
    _check_extent((n,), (k,), ((before, after),), (dilation,), ("length",))
    return (n + before + after - dilation * (k - 1) - 1) // stride + 1


def _check_extent(spatial_shape, kernel_shape, pads, dilations, axis_names) -> None:
    for n, k, (before, after), d, axis in zip(spatial_shape, kernel_shape, pads, dilations, axis_names):
        extent = d * (k - 1) + 1
        padded = n + before + after
        if extent > padded:
            raise ValueError(
                f"the kernel spans {extent} {axis} (size {k}, dilation {d}) but the padded input has "
                f"only {padded} ({n} + padding {before} + {after}); use a smaller kernel or dilation, "
                f"or more padding"
            )


def _check_reflect_fits(spatial_shape, pads, padding_mode, axis_names) -> None:
    if padding_mode != "reflect":
        return
    for n, (before, after), axis in zip(spatial_shape, pads, axis_names):
        if max(before, after) >= n:
            raise ValueError(
                f"reflect padding of {max(before, after)} needs more than {max(before, after)} "
                f"{axis} but the input has {n}; use padding_mode='replicate' or 'zeros', or less padding"
            )


@functools.lru_cache(maxsize=256)
def _index_map(length: int, before: int, after: int, padding_mode: str) -> np.ndarray:
    """Source index (or -1 for a zero) of each position of an axis padded by (before, after).

    Cached (a lesson asks for the same few maps on every click; building two took 7 us of a
    0.1 ms convolution): the array is shared, so callers and kernels only ever read it.
    """
    positions = np.arange(-before, length + after, dtype=np.int64)
    if padding_mode == "replicate":
        return np.clip(positions, 0, length - 1)
    if padding_mode == "reflect":
        mirrored = np.abs(positions)
        return np.where(mirrored > length - 1, 2 * (length - 1) - mirrored, mirrored)
    return np.where((positions >= 0) & (positions < length), positions, -1)


# --------------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------------

class _ConvPlan(NamedTuple):
    """A convolution normalised to 3 spatial axes: what every jitted call needs."""

    x: np.ndarray  # (N, C, D, H, W)
    w: np.ndarray  # (K, C, kd, kh, kw)
    bias: np.ndarray  # (K,)
    pads: tuple  # ((front, back), (top, bottom), (left, right))
    strides: tuple  # (sd, sh, sw)
    dilations: tuple  # (dd, dh, dw)
    padding_mode: str
    out_spatial: tuple  # (OD, OH, OW)
    unbatched: bool  # the caller passed one image/volume without batch and channel axes
    spatial_ndim: int


# Shapes named in error messages, per number of spatial axes: single input, batch, kernel of a
# single input, kernel bank.
_SHAPE_NAMES = {
    2: ("(H, W)", "(N, C, H, W)", "(kh, kw)", "(K, C, kh, kw)"),
    3: ("(D, H, W)", "(N, C, D, H, W)", "(kd, kh, kw)", "(K, C, kd, kh, kw)"),
}
# The bias of a single input given none (shared: callers and kernels only read it).
_ZERO_BIAS = np.zeros(1, dtype=np.float32)


def _plan_convolution(x, w, b, spatial_ndim, stride, padding, dilation, padding_mode, flip,
                      check_x_finite=True) -> _ConvPlan:
    """Validate a convolution's arguments and normalise them to 5-D float32 arrays.

    ``check_x_finite=False`` leaves x's NaN/inf check to the direct forward loop, which flags
    non-finite outputs as it writes them (saving a pass over a large image).
    """
    single_names, batch_names, kernel_single, kernel_batch = _SHAPE_NAMES[spatial_ndim]
    x = _checked_float32(x, "x") if check_x_finite else _as_float32(x, "x")
    w = _checked_float32(w, "w")
    # Axes are added by indexing with None (a view, as reshape gives, in a third of the time).
    if x.ndim == spatial_ndim:
        unbatched = True
        if w.ndim != spatial_ndim:
            raise ValueError(
                f"x is a single {spatial_ndim}-D input {x.shape}, so w must be {kernel_single}; got w "
                f"with shape {w.shape} (for a {kernel_batch} kernel bank pass x as {batch_names})"
            )
        if b is not None and np.ndim(b) != 0:
            raise ValueError(f"b must be a number (or None) for a single {spatial_ndim}-D input; got shape {np.shape(b)}")
        bias = _ZERO_BIAS if b is None else _checked_float32(np.array([b], dtype=np.float64), "b")
        x = x[None, None]
        w = w[None, None]
    elif x.ndim == spatial_ndim + 2:
        unbatched = False
        if w.ndim != spatial_ndim + 2:
            raise ValueError(f"x is a batch {batch_names} = {x.shape}, so w must be {kernel_batch}; got w with shape {w.shape}")
        if w.shape[1] != x.shape[1]:
            raise ValueError(
                f"channel mismatch: x has {x.shape[1]} channels (x.shape[1]) but w expects "
                f"{w.shape[1]} (w.shape[1]); w must be {kernel_batch} with C = {x.shape[1]}"
            )
        if b is None:
            bias = np.zeros(w.shape[0], dtype=np.float32)
        else:
            bias = _checked_float32(b, "b")
            if bias.shape != (w.shape[0],):
                raise ValueError(f"b must have shape (K,) = ({w.shape[0]},), one value per kernel; got {bias.shape}")
    else:
        hint = " (for one multi-channel image add a batch axis: x[None])" if x.ndim == spatial_ndim + 1 else ""
        raise ValueError(
            f"x must be a single input {single_names} or a batch {batch_names}; got {x.ndim}-D "
            f"shape {x.shape}{hint}"
        )
    if x.size == 0 or w.size == 0:
        raise ValueError(f"x {x.shape} and w {w.shape} must not be empty")
    if flip:
        w = w[(Ellipsis,) + (slice(None, None, -1),) * spatial_ndim]

    pads, strides, dilations, out_spatial = _convolution_geometry(x.shape[2:], w.shape[2:], stride, padding, dilation,
                                                                  padding_mode)
    if spatial_ndim == 2:  # a depth axis of 1 so one set of 3-D kernels serves both
        x = x[:, :, None]
        w = w[:, :, None]
    return _ConvPlan(_ready(x), _ready(w), _ready(bias), pads, strides, dilations, padding_mode,
                     out_spatial, unbatched, spatial_ndim)


def _resolve_geometry(spatial_shape, kernel_shape, stride, padding, dilation, padding_mode):
    """Paddings, strides, dilations and output size of a convolution, on three axes (depth 1 for 2-D).

    Raises a ValueError / TypeError naming the argument that does not fit.
    """
    spatial_ndim = len(spatial_shape)
    padding_mode = _check_padding_mode(padding_mode)
    strides = _per_axis(stride, "stride", spatial_ndim, 1)
    dilations = _per_axis(dilation, "dilation", spatial_ndim, 1)
    pads = _resolve_padding_nd(kernel_shape, padding, dilations, strides)
    axis_names = _AXIS_NAMES[-spatial_ndim:]
    _check_reflect_fits(spatial_shape, pads, padding_mode, axis_names)
    _check_extent(spatial_shape, kernel_shape, pads, dilations, axis_names)
    out_spatial = tuple(
        (n + before + after - d * (k - 1) - 1) // s + 1
        for n, k, (before, after), s, d in zip(spatial_shape, kernel_shape, pads, strides, dilations)
    )
    if spatial_ndim == 2:
        return ((0, 0),) + pads, (1,) + strides, (1,) + dilations, (1,) + out_spatial
    return pads, strides, dilations, out_spatial


_cached_geometry = functools.lru_cache(maxsize=256)(_resolve_geometry)


def _convolution_geometry(spatial_shape, kernel_shape, stride, padding, dilation, padding_mode):
    """``_resolve_geometry``, remembered for arguments of plain ints, strings and tuples of ints.

    A lesson asks for the same geometry on every click: checking and resolving it took about a
    quarter of a 512 x 512 3x3 convolution's 0.17 ms.  Only plain values are remembered, since
    equal keys must mean equal arguments: ``True == 1`` (a bool stride is refused) and numbers of
    other types pass through the checks every time.
    """
    if type(stride) is int and type(dilation) is int and type(padding) in (int, str) and type(padding_mode) is str:
        return _cached_geometry(spatial_shape, kernel_shape, stride, padding, dilation, padding_mode)  # the usual call
    arguments = (stride, padding, dilation)
    if all(type(value) is int or type(value) is str or (type(value) is tuple and all(type(v) is int for v in value))
           for value in arguments) and type(padding_mode) is str:
        return _cached_geometry(spatial_shape, kernel_shape, stride, padding, dilation, padding_mode)
    return _resolve_geometry(spatial_shape, kernel_shape, stride, padding, dilation, padding_mode)


def _plan_index_maps(plan: _ConvPlan):
    spatial_shape = plan.x.shape[2:]
    return tuple(
        _index_map(n, before, after, plan.padding_mode) for n, (before, after) in zip(spatial_shape, plan.pads)
    )


# Layout switch of the direct loop.  Rows narrower than this (with stride 1) are processed in
# the "wide row" layout: the padded image plane (a NumPy copy) is treated as one long row of
# Hp * Wp pixels and each tap as a column offset i*dh*Wp + j*dw, so a 64 x 64 feature map is one
# 4,224-element sweep per tap group instead of 64 short ones (the per-sweep overhead dominated).
# The Wp - W' columns that wrap around between rows are computed and thrown away.
WIDE_ROW_MAX_WIDTH = 256
# Wide-row planes up to this many padded pixels (2-D batches only) are packed for the loops that
# read ``_layout`` (the weight gradient; forward passes with fewer than four kernels): all the
# batch's planes of a channel in one row.  An 8 x 8 map's plane is a 100-pixel row, too short for
# a vector loop to pay its start-up cost; 32 of them make one 3,200-pixel row.  Measured on batches
# of 32, 3x3 kernels, one thread: 8 x 8 maps 32 -> 32 channels weight gradient 6.66 -> 1.79 ms;
# 16 x 16 16 -> 32 4.88 -> 3.17 ms; 32 x 32 maps gain nothing and 64 x 64 ones lose (the
# transposing copies cost more than the short rows did).  (``correlate_image_blocks`` copies
# rows per task and needs no packing.)
PACKED_MAX_PLANE = 400
# Kernels up to this width read the padding through index maps (no copy of the image); wider
# ones get a padded copy (see ``_layout``).
BORDER_MAP_MAX_KERNEL_WIDTH = 3


@functools.lru_cache(maxsize=256)
def _tap_table(n_in, kernel_shape, dilations, column_step_per_row=None):
    """Tap offsets of a (K, n_in, kd, kh, kw) kernel bank for ``_jit.correlate_forward``.

    Taps run over (c, a, i, j) in C order -- the order of ``w.reshape(K, -1)`` -- with padded
    offsets (a*dd, i*dh, j*dw); with ``column_step_per_row`` (the padded width Wp of the wide-row
    layout) the row offset moves into the column offset: (a*dd, 0, i*dh*Wp + j*dw).  Cached (a
    training step asks for the same few tables again and again: 0.09 ms each to build); the
    arrays are read-only, since every caller shares them.

    Returns
    -------
    tap_channel, tap_depth, tap_row, tap_col : int64 (n_in * kd * kh * kw,), read-only
    """
    kd, kh, kw = kernel_shape
    channel, a, i, j = np.meshgrid(np.arange(n_in), np.arange(kd), np.arange(kh), np.arange(kw), indexing="ij")
    depth_offset = (a * dilations[0]).ravel()
    row_offset = (i * dilations[1]).ravel()
    col_offset = (j * dilations[2]).ravel()
    if column_step_per_row is not None:
        col_offset = col_offset + row_offset * column_step_per_row
        row_offset = np.zeros_like(row_offset)
    table = tuple(np.ascontiguousarray(a, dtype=np.int64) for a in (channel.ravel(), depth_offset, row_offset, col_offset))
    for array in table:
        array.flags.writeable = False
    return table


class _Layout(NamedTuple):
    """Where the jitted loops read and write: the input, maps, taps, and how to unpack the output."""

    x: np.ndarray  # (N, C, D, H, W); (N, C, D, 1, Hp*Wp) wide; (1, C, 1, 1, N*Hp*Wp) wide and packed
    taps: tuple  # (tap_channel, tap_depth, tap_row, tap_col)
    maps: tuple  # (depth_map, row_map, col_map)
    pad_left: int
    out_spatial: tuple  # the loops' output (OD, OH, OW); (OD, 1, OH*Wp) wide; (1, 1, N*Hp*Wp) packed
    wide_width: int  # Wp in the wide layout, 0 otherwise
    final_spatial: tuple  # (OD, OH, OW) the caller gets
    packed_batch: int  # N when the batch is packed into one row per channel, 0 otherwise


def _takes_wide_rows(strides, out_spatial) -> bool:
    """Whether a convolution's loops run over wide rows (see ``WIDE_ROW_MAX_WIDTH``)."""
    return strides[1] == 1 and strides[2] == 1 and out_spatial[2] < WIDE_ROW_MAX_WIDTH


def _layout(x5, kernel_shape, pads, strides, dilations, padding_mode, out_spatial, work) -> _Layout:
    """Where the loops of a convolution read and write; ``work`` (its multiply-adds) decides threads."""
    depth_map = _index_map(x5.shape[2], *pads[0], padding_mode)
    if _takes_wide_rows(strides, out_spatial):
        (top, bottom), (left, right) = pads[1], pads[2]
        n_batch, n_channels, depth = x5.shape[:3]
        padded_h, padded_w = x5.shape[3] + top + bottom, x5.shape[4] + left + right
        plane = padded_h * padded_w
        channel, depth_offset, row, col = _tap_table(n_channels, kernel_shape, dilations, column_step_per_row=padded_w)
        packed_batch = n_batch if n_batch > 1 and depth == 1 and plane <= PACKED_MAX_PLANE else 0
        # Small maps: each channel's padded planes of all images one after another in one row, so
        # every sweep runs over the whole batch; positions past a plane's last output row read the
        # next image and are thrown away like the wrap-around columns.
        if packed_batch:
            out_width = readable = packed_batch * plane
        else:
            out_width, readable = out_spatial[1] * padded_w, plane
        # Rows run on in zeros past the data far enough for every tap of every position up to a
        # whole vector past the last (``correlate_weight_grad_wide`` reads whole vectors).
        vectors_width = -(-out_width // _jit.VECTOR_LANES) * _jit.VECTOR_LANES
        row_length = max(readable, vectors_width + int(col.max()))
        shape = (1, n_channels, 1, 1, row_length) if packed_batch else (n_batch, n_channels, depth, 1, row_length)
        wide = _aligned_empty(shape)
        if padding_mode == "zeros":
            starts, lengths = _plane_starts(n_batch, n_channels * depth, plane, row_length, packed_batch)
            with kernel_call_guard(work):
                _jit.copy_planes_into_rows(x5.reshape(-1, x5.shape[3], x5.shape[4]), wide.reshape(-1), starts, lengths,
                                           top, left, padded_w)
        else:
            wide.fill(0.0)
            if packed_batch:
                planes = wide[0, :, 0, 0, :readable].reshape(n_channels, n_batch, padded_h, padded_w)
                source = x5[:, :, 0].transpose(1, 0, 2, 3)
            else:
                planes = wide[..., 0, :readable].reshape(n_batch, n_channels, depth, padded_h, padded_w)
                source = x5
            planes[...] = np.pad(source, ((0, 0),) * (source.ndim - 2) + ((top, bottom), (left, right)),
                                 mode=_NUMPY_PAD_MODES[padding_mode])
        # Reads past the end of the data (only by thrown-away positions) map to zero.
        col_map = np.full(out_width + int(col.max()) + 1, -1, dtype=np.int64)
        col_map[:readable] = np.arange(readable)
        return _Layout(wide, (channel, depth_offset, row, col), (depth_map, np.zeros(1, dtype=np.int64), col_map),
                       0, (1 if packed_batch else out_spatial[0], 1, out_width), padded_w, tuple(out_spatial),
                       packed_batch)
    channel, depth, row, col = _tap_table(x5.shape[1], kernel_shape, dilations)
    if kernel_shape[2] > BORDER_MAP_MAX_KERNEL_WIDTH and any(pads[1] + pads[2]):
        # Wide kernels: the scalar border columns (about kw per row and tap group) would cost
        # more than copying the image once with its padding, after which every column is interior.
        (top, bottom), (left, right) = pads[1], pads[2]
        x5 = _ready(np.pad(x5, ((0, 0), (0, 0), (0, 0), (top, bottom), (left, right)),
                           mode=_NUMPY_PAD_MODES[padding_mode]))
        pads = (pads[0], (0, 0), (0, 0))
    row_map = _index_map(x5.shape[3], *pads[1], padding_mode)
    col_map = _index_map(x5.shape[4], *pads[2], padding_mode)
    return _Layout(x5, (channel, depth, row, col), (depth_map, row_map, col_map), pads[2][0],
                   tuple(out_spatial), 0, tuple(out_spatial), 0)


def _aligned_empty(shape) -> np.ndarray:
    """An uninitialised float32 array whose first element starts a 64-byte cache line.

    The explicit-vector loops load and store 16 floats (64 bytes) at multiples of 16 from a row's
    start; on an aligned array no such access straddles two cache lines (NumPy only promises 16
    bytes).  The weight gradient's loop on a 64 x 64 batch ran 23 % faster with aligned rows.
    """
    count = int(np.prod(shape))
    raw = np.empty(count + _jit.VECTOR_LANES, dtype=np.float32)
    start = (-raw.ctypes.data // raw.itemsize) % _jit.VECTOR_LANES
    return raw[start:start + count].reshape(shape)


@functools.lru_cache(maxsize=256)
def _plane_starts(n_batch: int, planes_per_image: int, plane: int, row_length: int, packed_batch: int,
                  rows_per_image: int | None = None):
    """Where each (image, channel) plane starts in the flat wide rows, and how much from there to zero.

    Planes in (image, channel) order.  Unpacked, each plane has a row of ``row_length`` of its own,
    an image having ``rows_per_image`` rows (default: one per plane; more when the kernels are padded
    to a multiple of four); packed, a channel's row holds the planes of all images one after
    another (``plane`` values each), the last one followed by the row's slack.

    Returns
    -------
    starts, zero_lengths : int64 (n_batch * planes_per_image,)
    """
    image, channel = np.meshgrid(np.arange(n_batch), np.arange(planes_per_image), indexing="ij")
    if not packed_batch:
        starts = (image * (rows_per_image or planes_per_image) + channel) * row_length
        lengths = np.full(starts.shape, row_length)
    else:
        starts = channel * row_length + image * plane
        lengths = np.where(image == n_batch - 1, row_length - (n_batch - 1) * plane, plane)
    table = tuple(np.ascontiguousarray(a.ravel(), dtype=np.int64) for a in (starts, lengths))
    for array in table:
        array.flags.writeable = False  # cached (a training step asks for the same few): shared, read only
    return table


def _unpack(out: np.ndarray, layout: _Layout) -> np.ndarray:
    """Turn the loops' output into (N, K, OD, OH, OW), dropping the wide layout's wrap-around columns."""
    if not layout.wide_width:
        return out
    out_depth, out_rows, out_cols = layout.final_spatial
    if layout.packed_batch:
        planes = out.reshape(out.shape[1], layout.packed_batch, -1, layout.wide_width)[:, :, :out_rows, :out_cols]
        return np.ascontiguousarray(planes.transpose(1, 0, 2, 3)[:, :, None])
    planes = out.reshape(out.shape[:3] + (out_rows, layout.wide_width))
    return np.ascontiguousarray(planes[..., :out_cols])


# Output rows per task of ``_jit.correlate_image_blocks``: enough tasks to share out a batch over
# the cores, few enough that the rows copied twice (a window's extra rows) cost little.
IMAGE_BLOCK_ROWS = 16
# Padded values per channel a task of ``_jit.correlate_image_blocks`` copies at most (fewer rows per task
# for wide images, so a task's rows stay in the core's cache).
IMAGE_BLOCK_BUFFER = 1 << 14


@functools.lru_cache(maxsize=256)
def _image_block_plan(n_channels, kernel_hw, dilations, padded_w, out_rows):
    """Rows per task, window extent in rows, buffer row length and tap offsets of ``_jit.correlate_image_blocks``.

    Cached like ``_tap_table`` (a training step asks for the same few); the offsets are read-only.
    """
    rows_per_task = max(1, min(IMAGE_BLOCK_ROWS, out_rows, IMAGE_BLOCK_BUFFER // padded_w))
    extent_rows = (kernel_hw[0] - 1) * dilations[1]
    _, _, _, col = _tap_table(n_channels, (1,) + tuple(kernel_hw), dilations, column_step_per_row=padded_w)
    blocks_width = -(-rows_per_task * padded_w // _jit.WIDE_BLOCK_COLUMNS) * _jit.WIDE_BLOCK_COLUMNS
    # Every row a task's windows read, and whole blocks' worth of zeros after them.
    buffer_row_length = max((rows_per_task + extent_rows) * padded_w, blocks_width + int(col.max()))
    buffer_row_length += -buffer_row_length % _jit.VECTOR_LANES
    tap_offset = np.repeat(np.arange(n_channels) * buffer_row_length, col.size // n_channels) + col
    tap_offset.flags.writeable = False
    return rows_per_task, extent_rows, buffer_row_length, tap_offset


def _correlate_image_blocks(plan: _ConvPlan):
    """A 2-D batch through ``_jit.correlate_image_blocks`` (the kernels padded with zero ones to a multiple of 4).

    Returns (N, K, 1, OH, OW) and whether an output is inf or NaN.
    """
    n_batch, n_channels, _, rows, cols = plan.x.shape
    n_kernels = plan.w.shape[0]
    (top, bottom), (left, right) = plan.pads[1], plan.pads[2]
    padded_w = cols + left + right
    out_rows, out_cols = plan.out_spatial[1:]
    weights = plan.w.reshape(n_kernels, -1)
    bias = plan.bias
    if n_kernels % 4:
        extra = 4 - n_kernels % 4
        weights = np.concatenate([weights, np.zeros((extra, weights.shape[1]), dtype=np.float32)])
        bias = np.concatenate([bias, np.zeros(extra, dtype=np.float32)])
    rows_per_task, extent_rows, buffer_row_length, tap_offset = _image_block_plan(
        n_channels, tuple(plan.w.shape[3:]), tuple(plan.dilations), padded_w, out_rows)
    result = np.empty((n_batch, n_kernels, 1, out_rows, out_cols), dtype=np.float32)
    with kernel_call_guard(n_batch * weights.shape[0] * out_rows * padded_w * weights.shape[1]):
        nonfinite_tasks = _jit.correlate_image_blocks(
            plan.x.reshape(n_batch, n_channels, rows, cols), tap_offset, np.ascontiguousarray(weights.T), bias,
            _index_map(rows, top, bottom, plan.padding_mode), _index_map(cols, left, right, plan.padding_mode), left,
            rows_per_task, extent_rows, buffer_row_length, result.reshape(n_batch, n_kernels, out_rows, out_cols))
    return result, nonfinite_tasks > 0


def _correlate_tap_table(plan: _ConvPlan):
    """Any convolution through the general loop ``_jit.correlate_forward``: (N, K, OD, OH, OW) and a non-finite flag."""
    work = plan.x.shape[0] * plan.w.size * int(np.prod(plan.out_spatial))  # multiply-adds
    weights = plan.w.reshape(plan.w.shape[0], -1)
    layout = _layout(plan.x, plan.w.shape[2:], plan.pads, plan.strides, plan.dilations, plan.padding_mode,
                     plan.out_spatial, work)
    out = np.empty((layout.x.shape[0], weights.shape[0]) + layout.out_spatial, dtype=np.float32)
    nonfinite_rows = np.empty(out.size // out.shape[-1], dtype=np.uint8)
    with kernel_call_guard(out.size * weights.shape[1]):
        _jit.correlate_forward(layout.x, *layout.taps, weights, plan.bias, *layout.maps, layout.pad_left,
                               plan.strides[0], 1 if layout.wide_width else plan.strides[1], plan.strides[2],
                               out, nonfinite_rows)
    return _ready(_unpack(out, layout)), bool(nonfinite_rows.any())


def _correlate_uncompiled(plan: _ConvPlan):
    """Any convolution in whole-array NumPy steps (kernels/_uncompiled.py), while the loops compile."""
    out = _uncompiled.correlate(plan.x, plan.w, plan.bias, plan.pads, plan.strides, plan.dilations, plan.padding_mode,
                                plan.out_spatial)
    return out, _uncompiled.any_nonfinite(out)


def _correlate_fft_checked(plan: _ConvPlan):
    """``_correlate_fft`` after checking x for inf / NaN (the FFT would spread one over the whole output)."""
    _check_finite(_strip(plan.x, plan), "x")
    return _correlate_fft(plan), False


_FORWARD_LOOPS = {
    "fft": _correlate_fft_checked,
    "uncompiled": _correlate_uncompiled,
    "image_rows": lambda plan: _correlate_image(plan),
    "image_blocks": _correlate_image_blocks,
    "tap_table": _correlate_tap_table,
}


def _correlate(plan: _ConvPlan, method: str = "direct"):
    """(N, K, OD, OH, OW) float32 by the loop ``dispatch.forward_path`` chooses, and whether an output is inf / NaN."""
    path = dispatch.forward_path(
        planar=plan.x.shape[2] == 1 and plan.w.shape[2] == 1, unbatched=plan.unbatched and plan.spatial_ndim == 2,
        n_channels=plan.w.shape[1], n_kernels=plan.w.shape[0], kernel_taps=plan.w.shape[3] * plan.w.shape[4],
        strides=plan.strides, method=method)
    return _FORWARD_LOOPS[path](plan)


def _run_forward(x5, w5, bias, pads, strides, dilations, padding_mode, out_spatial):
    """An internal correlation of 5-D arrays (average pooling, input gradients): (N, K, OD, OH, OW) and a non-finite flag."""
    return _correlate(_ConvPlan(x5, _ready(w5), bias, pads, strides, dilations, padding_mode, tuple(out_spatial),
                                False, 3))


@functools.lru_cache(maxsize=1)
def _row_block_pool() -> ThreadPoolExecutor:
    """Worker threads for the row blocks of big single-image convolutions (created on first use)."""
    return ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="convscope-rows")


def _correlate_image(plan: _ConvPlan):
    """One (H, W) image with one (kh, kw) kernel through ``_jit.correlate_image_rows``.

    A call with at least ``PARALLEL_MIN_WORK`` multiply-adds is split into one block of output
    rows per Numba thread (``numba.get_num_threads()``); the jitted loop releases the GIL, so the
    blocks run at the same time on Python threads.  Using threads here instead of a ``prange``
    launcher saves compiling a second, parallel version of the loop (about 1 s of cold start);
    every row is computed by the same code either way.

    Returns (1, 1, 1, OH, OW) float32 (the shape of the general loop's output) and whether an
    output value is inf or NaN.
    """
    x = plan.x[0, 0, 0]
    w = plan.w[0, 0, 0]
    (top, bottom), (left, right) = plan.pads[1], plan.pads[2]
    row_map = _index_map(x.shape[0], top, bottom, plan.padding_mode)
    col_map = _index_map(x.shape[1], left, right, plan.padding_mode)
    out = np.empty(plan.out_spatial[1:], dtype=np.float32)
    arguments = (x, w, float(plan.bias[0]), row_map, col_map, left, plan.strides[1], plan.strides[2],
                 plan.dilations[1], plan.dilations[2])
    out_rows = out.shape[0]
    n_blocks = min(numba.get_num_threads(), out_rows) if PARALLEL and out.size * w.size >= _config.PARALLEL_MIN_WORK else 1
    if n_blocks == 1:  # (most calls: the lessons' images)
        return out[None, None, None], bool(_jit.correlate_image_rows(*arguments, 0, out_rows, out))
    bounds = [out_rows * block // n_blocks for block in range(n_blocks + 1)]
    others = [_row_block_pool().submit(_jit.correlate_image_rows, *arguments, bounds[block], bounds[block + 1], out)
              for block in range(1, n_blocks)]
    nonfinite = bool(_jit.correlate_image_rows(*arguments, bounds[0], bounds[1], out))
    for future in others:
        nonfinite |= bool(future.result())
    return out[None, None, None], nonfinite


def _forward(plan: _ConvPlan, method: str = "direct") -> np.ndarray:
    """A public call's forward convolution, (N, K, OD, OH, OW) float32; refuses non-finite input and overflow."""
    if max(plan.strides) > 1:
        # Strided windows can skip pixels: the loops would never see an inf / NaN there.
        _check_finite(_strip(plan.x, plan), "x")
    out, nonfinite = _correlate(plan, method)
    if nonfinite:
        _check_finite(_strip(plan.x, plan), "x")  # names the first bad pixel, in the caller's shape
        raise ValueError(
            "the result overflowed float32 (|value| > 3.4e38) although x and w are finite; "
            "scale x or w down"
        )
    return out


def _fold_padding(grad: np.ndarray, spatial_shape, pads, padding_mode) -> np.ndarray:
    """Gradient w.r.t. the unpadded input from the gradient w.r.t. the padded one.

    Each padded position passes its gradient to the pixel it copied (reflect / replicate) or
    drops it (zeros); reflect and replicate fold the axes one after another, interior first.
    """
    if padding_mode == "zeros":  # the padding's gradient is dropped: one slice of the interior
        interior = tuple(slice(before, before + length) for length, (before, _) in zip(spatial_shape, pads))
        return np.ascontiguousarray(grad[(Ellipsis,) + interior])
    for axis, (length, (before, after)) in enumerate(zip(spatial_shape, pads), start=2):
        if before == 0 and after == 0:
            continue
        index_map = _index_map(length, before, after, padding_mode)
        interior = [slice(None)] * grad.ndim
        interior[axis] = slice(before, before + length)
        folded = np.ascontiguousarray(grad[tuple(interior)])
        for position in list(range(before)) + list(range(before + length, before + length + after)):
            target = [slice(None)] * grad.ndim
            source = [slice(None)] * grad.ndim
            target[axis] = index_map[position]
            source[axis] = position
            folded[tuple(target)] += grad[tuple(source)]
        grad = folded
    return grad


def _next_fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c 7^d >= n: sizes pocketfft transforms fastest."""
    best = 1 << (n - 1).bit_length()
    power7 = 1
    while power7 < best:
        power5 = power7
        while power5 < best:
            power3 = power5
            while power3 < best:
                candidate = power3
                while candidate < n:
                    candidate *= 2
                best = min(best, candidate)
                power3 *= 3
            power5 *= 5
        power7 *= 7
    return best


def _correlate_fft(plan: _ConvPlan) -> np.ndarray:
    """Same result as the direct loops for a 2-D plan, through the FFT (float64 inside).

    The padded input is transformed once at a fast size >= its own; circular cross-correlation
    equals the linear one on the "valid" region (no window wraps around), which is cropped and
    subsampled by the stride.  Dilation inserts zeros between the kernel taps.
    """
    x = plan.x[:, :, 0]  # (N, C, H, W)
    w = plan.w[:, :, 0]  # (K, C, kh, kw)
    _, (top, bottom), (left, right) = plan.pads
    _, dilation_h, dilation_w = plan.dilations
    _, stride_h, stride_w = plan.strides
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=_NUMPY_PAD_MODES[plan.padding_mode])
    if dilation_h > 1 or dilation_w > 1:
        kh, kw = w.shape[2:]
        dilated = np.zeros(w.shape[:2] + ((kh - 1) * dilation_h + 1, (kw - 1) * dilation_w + 1), dtype=np.float32)
        dilated[:, :, ::dilation_h, ::dilation_w] = w
        w = dilated
    padded_h, padded_w = padded.shape[2:]
    fft_shape = (_next_fast_length(padded_h), _next_fast_length(padded_w))
    x_spectrum = np.fft.rfft2(padded.astype(np.float64), s=fft_shape)
    w_spectrum = np.fft.rfft2(w.astype(np.float64), s=fft_shape)
    if x_spectrum.shape[1] == 1 and w_spectrum.shape[:2] == (1, 1):
        product = x_spectrum * np.conj(w_spectrum[0])
    else:
        product = np.einsum("ncij,kcij->nkij", x_spectrum, np.conj(w_spectrum))
    full = np.fft.irfft2(product, s=fft_shape)
    valid_h = padded_h - w.shape[2] + 1
    valid_w = padded_w - w.shape[3] + 1
    out = full[:, :, :valid_h:stride_h, :valid_w:stride_w] + plan.bias[None, :, None, None]
    return out.astype(np.float32)[:, :, None]


def _strip(out: np.ndarray, plan: _ConvPlan) -> np.ndarray:
    """Undo the normalisation: drop the depth axis of 2-D plans and the batch axes of single inputs."""
    if plan.unbatched:
        return out[0, 0, 0] if plan.spatial_ndim == 2 else out[0, 0]
    return out[:, :, 0] if plan.spatial_ndim == 2 else out


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, padding_mode="zeros", flip=False,
           method="auto") -> np.ndarray:
    """2-D cross-correlation, as computed by a convolutional layer.

    ``out[n, k, r, q] = b[k] + sum_{c,i,j} w[k, c, i, j] * x_padded[n, c, r*sh + i*dh, q*sw + j*dw]``

    Parameters
    ----------
    x : array (H, W) or (N, C, H, W)
        Image, or batch of multi-channel images.  Float64 and integer images are converted to
        float32 (integers only if exactly representable); NaN / inf are refused.
    w : array (kh, kw) with a 2-D x, or (K, C, kh, kw) with a 4-D x
        Kernel(s); any size, even ones included.
    b : float or None with a 2-D x; array (K,) or None with a 4-D x
        Bias added to every output pixel of the corresponding kernel.
    stride, dilation : int or (int, int), default 1
    padding : int, (int, int), "valid" or "same", default 0
        Pixels added on each side; "same" keeps the size (stride 1 only; for an even kernel the
        extra row/column goes to the bottom/right, as PyTorch does).  See ``resolve_padding``.
    padding_mode : {"zeros", "reflect", "replicate"}, default "zeros"
    flip : bool, default False
        Flip the kernel in both axes first: a true convolution instead of a cross-correlation.
    method : {"auto", "direct", "fft"}, default "auto"
        "auto" uses the FFT for single-channel kernels with at least ``FFT_MIN_KERNEL_AREA``
        (400) taps and the direct loop otherwise.  "direct" is the only one that matches
        ``conv2d_trace`` bit for bit; the FFT agrees to float32 rounding.

    Returns
    -------
    float32 array (H', W') or (N, K, H', W')
        ``H' = output_size(H, kh, stride=sh, padding=(top, bottom), dilation=dh)``, and so for W'.

    Examples
    --------
    >>> import numpy as np
    >>> conv2d(np.arange(16.0).reshape(4, 4), np.ones((2, 2)))
    array([[10., 14., 18.],
           [26., 30., 34.],
           [42., 46., 50.]], dtype=float32)
    """
    if method not in ("auto", "direct", "fft"):
        raise ValueError(f"method must be 'auto', 'direct' or 'fft'; got {method!r}")
    plan = _plan_convolution(x, w, b, 2, stride, padding, dilation, padding_mode, flip, check_x_finite=False)
    out = _forward(plan, method)
    return _strip(out, plan)


def conv3d(x, w, b=None, *, stride=1, padding=0, dilation=1, padding_mode="zeros", flip=False) -> np.ndarray:
    """3-D cross-correlation of volumes: ``conv2d`` with a depth axis.

    Parameters
    ----------
    x : array (D, H, W) or (N, C, D, H, W)
    w : array (kd, kh, kw) with a 3-D x, or (K, C, kd, kh, kw) with a 5-D x
    b : float or None with a 3-D x; array (K,) or None with a 5-D x
    stride, dilation : int or (int, int, int), default 1
    padding : int, (int, int, int), "valid" or "same", default 0
    padding_mode : {"zeros", "reflect", "replicate"}, default "zeros"
    flip : bool, default False
        Flip the kernel along all three axes (true convolution).

    Returns
    -------
    float32 array (D', H', W') or (N, K, D', H', W')
    """
    plan = _plan_convolution(x, w, b, 3, stride, padding, dilation, padding_mode, flip, check_x_finite=False)
    return _strip(_forward(plan), plan)


def _weight_gradient(plan: _ConvPlan, d_out5: np.ndarray) -> np.ndarray:
    """d_loss/d_w, (K, C, kd, kh, kw), through ``_jit.correlate_weight_grad``."""
    dispatch.wait_for_compiled_loops()  # no NumPy path: a training started in the first minute waits
    work = d_out5.size * plan.w[0].size  # multiply-adds
    layout = _layout(plan.x, plan.w.shape[2:], plan.pads, plan.strides, plan.dilations, plan.padding_mode,
                     plan.out_spatial, work)
    n_kernels = plan.w.shape[0]
    if layout.wide_width and plan.x.shape[2] == 1:  # 2-D wide rows: dot products along each row
        # The gradient in the same (wide or packed) rows: zero at the thrown-away positions, at
        # the kernels that fill the last four, and up to a whole number of vectors.
        n_rows = layout.x.shape[0]
        n_batch, _, _, out_rows, out_cols = d_out5.shape
        width = -(-layout.out_spatial[2] // _jit.VECTOR_LANES) * _jit.VECTOR_LANES
        rows = _aligned_empty((n_rows, n_kernels + -n_kernels % 4, width))
        rows[:, n_kernels:] = 0.0
        starts, lengths = _plane_starts(n_batch, n_kernels, layout.out_spatial[2] // n_batch, width,
                                        layout.packed_batch, rows_per_image=rows.shape[1])
        with kernel_call_guard(work):
            _jit.copy_planes_into_rows(d_out5.reshape(-1, out_rows, out_cols), rows.reshape(-1), starts, lengths, 0, 0,
                                       layout.wide_width)
        d_weights = np.empty((rows.shape[1], plan.w[0].size), dtype=np.float32)
        with kernel_call_guard(rows.size * plan.w[0].size):
            _jit.correlate_weight_grad_wide(layout.x.reshape(n_rows, layout.x.shape[1], -1), rows, layout.taps[3],
                                            d_weights)
        return d_weights[:n_kernels].reshape(plan.w.shape)
    if layout.wide_width:  # volumes in wide rows: the gradient too, zero on the wrap-around columns
        wide = np.zeros(d_out5.shape[:4] + (layout.wide_width,), dtype=np.float32)
        wide[..., :d_out5.shape[4]] = d_out5
        d_out5 = wide.reshape(d_out5.shape[:3] + (1, -1))
    d_weights = np.empty((n_kernels, plan.w[0].size), dtype=np.float32)
    with kernel_call_guard(d_out5.size * plan.w[0].size):
        _jit.correlate_weight_grad(layout.x, d_out5, *layout.taps, *layout.maps, layout.pad_left,
                                   plan.strides[0], 1 if layout.wide_width else plan.strides[1],
                                   plan.strides[2], d_weights)
    return d_weights.reshape(plan.w.shape)


def _input_gradient(plan: _ConvPlan, d_out5: np.ndarray) -> np.ndarray:
    """d_loss/d_x, (N, C, D, H, W), and whether a value of it is inf or NaN.

    With stride 1 the gradient w.r.t. the padded input is itself a correlation: of d_out,
    zero-padded by the dilated kernel extent - 1, with the kernels flipped and their in/out
    channels swapped, so it reuses the fast forward loop; the padding is then folded back.
    Strided convolutions scatter through ``_jit.correlate_input_grad`` instead.
    """
    if all(s == 1 for s in plan.strides):
        flipped = np.ascontiguousarray(plan.w.transpose(1, 0, 2, 3, 4)[:, :, ::-1, ::-1, ::-1])
        extents = [d * (k - 1) for k, d in zip(plan.w.shape[2:], plan.dilations)]
        if plan.padding_mode == "zeros" and all(e >= max(pad) for e, pad in zip(extents, plan.pads)):
            # Zero padding passes no gradient on: correlate straight onto the unpadded input, with
            # d_out padded by the extent minus the forward padding (the same sums as the interior
            # of the padded gradient below, without computing or copying the rest).
            pads = tuple((e - b, e - a) for e, (b, a) in zip(extents, plan.pads))
            return _run_forward(d_out5, flipped, np.zeros(flipped.shape[0], dtype=np.float32), pads, (1, 1, 1),
                                plan.dilations, "zeros", plan.x.shape[2:])
        padded_spatial = tuple(n + b + a for n, (b, a) in zip(plan.x.shape[2:], plan.pads))
        grad_padded, nonfinite = _run_forward(d_out5, flipped, np.zeros(flipped.shape[0], dtype=np.float32),
                                              tuple((e, e) for e in extents), (1, 1, 1), plan.dilations, "zeros",
                                              padded_spatial)
        return _fold_padding(grad_padded, plan.x.shape[2:], plan.pads, plan.padding_mode), nonfinite
    depth_map, row_map, col_map = _plan_index_maps(plan)
    d_x = np.empty_like(plan.x)
    dispatch.wait_for_compiled_loops()
    with kernel_call_guard(d_out5.size * plan.w[0].size):
        _jit.correlate_input_grad(d_out5, plan.w, depth_map, row_map, col_map, plan.pads[2][0],
                                  *plan.strides, *plan.dilations, d_x)
    return d_x, not np.isfinite(d_x).all()


def _convolution_backward(x, w, d_out, spatial_ndim, stride, padding, dilation, padding_mode, input_gradient=True):
    # x and d_out are checked for inf / NaN through the results (which any such value reaches, as in the
    # forward pass): a training step saved a pass over every activation and gradient map.
    plan = _plan_convolution(x, w, None, spatial_ndim, stride, padding, dilation, padding_mode, False,
                             check_x_finite=False)
    d_out = _as_float32(d_out, "d_out")
    expected = (plan.x.shape[0], plan.w.shape[0]) + plan.out_spatial[3 - spatial_ndim:]
    if plan.unbatched:
        expected = expected[2:]
    if d_out.shape != expected:
        raise ValueError(
            f"d_out must have the forward output's shape {expected}; got {d_out.shape} "
            f"(check that stride, padding and dilation match the forward call)"
        )
    if any(s > 1 for s in plan.strides):  # strided windows may skip a pixel
        _check_finite(_strip(plan.x, plan), "x")
    d_out5 = _ready(d_out.reshape((plan.x.shape[0], plan.w.shape[0]) + plan.out_spatial))
    d_x, nonfinite = _input_gradient(plan, d_out5) if input_gradient else (None, False)
    d_w = _weight_gradient(plan, d_out5)
    # Per image in float32 (NumPy's pairwise sum: twice as fast as converting every value to
    # float64, relative error ~1e-7), then over the batch in float64.
    per_image = d_out5.reshape(d_out5.shape[0], d_out5.shape[1], -1).sum(axis=2)
    d_b = per_image.sum(axis=0, dtype=np.float64).astype(np.float32)
    if nonfinite or not (np.isfinite(d_w).all() and np.isfinite(d_b).all()):
        _check_finite(_strip(plan.x, plan), "x")  # names the first bad value, in the caller's shape
        _check_finite(d_out, "d_out")
        raise ValueError("the gradient overflowed float32 (|value| > 3.4e38) although x, w and d_out are finite; "
                         "scale them down")
    d_x = None if d_x is None else _strip(d_x, plan)
    d_w = _strip(d_w, plan)
    if plan.unbatched:
        return d_x, d_w, float(d_b[0])
    return d_x, d_w, d_b


def conv2d_backward(x, w, d_out, *, stride=1, padding=0, dilation=1, padding_mode="zeros", input_gradient=True):
    """Gradients of a loss through ``conv2d``, given the gradient of its output.

    Parameters
    ----------
    x, w : arrays as passed to ``conv2d`` ((H, W) with (kh, kw), or (N, C, H, W) with (K, C, kh, kw))
    d_out : array (H', W') or (N, K, H', W')
        d_loss/d_out, the shape of ``conv2d``'s output.
    stride, padding, dilation, padding_mode :
        The same as in the forward call.
    input_gradient : bool, default True
        False skips d_x (returned as None): a network's first layer needs no gradient for its
        input, and d_x costs as much as the forward pass.

    Returns
    -------
    d_x : float32, shape of x, or None
        d_loss/d_x.  With reflect / replicate padding the gradient of each copied border pixel is
        added back onto the pixel it was copied from.
    d_w : float32, shape of w
        d_loss/d_w.
    d_b : float (2-D x) or float32 (K,)
        d_loss/d_b: the sum of d_out over everything but the kernel axis.
    """
    return _convolution_backward(x, w, d_out, 2, stride, padding, dilation, padding_mode, input_gradient)


def conv3d_backward(x, w, d_out, *, stride=1, padding=0, dilation=1, padding_mode="zeros", input_gradient=True):
    """Gradients of a loss through ``conv3d``: (d_x, d_w, d_b), shaped like x, w and b.

    Parameters
    ----------
    x, w : arrays as passed to ``conv3d``
    d_out : array (D', H', W') or (N, K, D', H', W')
    stride, padding, dilation, padding_mode :
        The same as in the forward call.
    input_gradient : bool, default True
        False skips d_x (returned as None).

    Returns
    -------
    d_x, d_w : float32 arrays shaped like x and w (d_x None if not asked for)
    d_b : float (3-D x) or float32 (K,)
    """
    return _convolution_backward(x, w, d_out, 3, stride, padding, dilation, padding_mode, input_gradient)


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------

class _PoolPlan(NamedTuple):
    """A pooling normalised to (P, D, H, W) volumes."""

    planes: np.ndarray  # (P, D, H, W)
    sizes: tuple  # (kd, kh, kw)
    strides: tuple
    pads: tuple  # (front, top, left), the same after
    out_spatial: tuple  # (OD, OH, OW)
    leading_shape: tuple  # () or (N, C)
    spatial_ndim: int


def _pool_geometry(spatial_shape, size, stride, padding, spatial_ndim):
    sizes = _per_axis(size, "size", spatial_ndim, 1)
    strides = sizes if stride is None else _per_axis(stride, "stride", spatial_ndim, 1)
    pads = _per_axis(padding, "padding", spatial_ndim, 0)
    for p, k in zip(pads, sizes):
        if p > k // 2:
            raise ValueError(
                f"padding {padding!r} is more than half the pool size {size!r}; use padding <= "
                f"size // 2 so every window covers at least one real pixel"
            )
    axis_names = _AXIS_NAMES[-spatial_ndim:]
    _check_extent(spatial_shape, sizes, tuple((p, p) for p in pads), (1,) * spatial_ndim, axis_names)
    out_spatial = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(spatial_shape, sizes, strides, pads))
    return sizes, strides, pads, out_spatial


def _split_input_shape(input_shape, spatial_ndim, name="input_shape"):
    shape = tuple(_as_int(v, name) for v in input_shape)
    if len(shape) not in (spatial_ndim, spatial_ndim + 2) or min(shape) < 1:
        single = {2: "(H, W)", 3: "(D, H, W)"}[spatial_ndim]
        batch = {2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[spatial_ndim]
        raise ValueError(f"{name} must be {single} or {batch} with positive sizes; got {shape}")
    return shape[:-spatial_ndim], shape[-spatial_ndim:]


def _plan_pooling(x, size, stride, padding, spatial_ndim) -> _PoolPlan:
    x = _checked_float32(x, "x")
    if x.ndim not in (spatial_ndim, spatial_ndim + 2):
        single = {2: "(H, W)", 3: "(D, H, W)"}[spatial_ndim]
        batch = {2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[spatial_ndim]
        raise ValueError(f"x must be {single} or {batch}; got {x.ndim}-D shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"x must not be empty; got shape {x.shape}")
    leading_shape, spatial_shape = x.shape[:-spatial_ndim], x.shape[-spatial_ndim:]
    sizes, strides, pads, out_spatial = _pool_geometry(spatial_shape, size, stride, padding, spatial_ndim)
    planes = x.reshape((-1,) + spatial_shape)
    if spatial_ndim == 2:
        planes = planes[:, None]
        sizes, strides, pads, out_spatial = (1,) + sizes, (1,) + strides, (0,) + pads, (1,) + out_spatial
    return _PoolPlan(_ready(planes), sizes, strides, pads, out_spatial, leading_shape, spatial_ndim)


def _unplane(array: np.ndarray, plan: _PoolPlan) -> np.ndarray:
    spatial = array.shape[-3:] if plan.spatial_ndim == 3 else array.shape[-2:]
    return array.reshape(plan.leading_shape + spatial)


def _max_pool(x, size, stride, padding, return_indices, spatial_ndim):
    plan = _plan_pooling(x, size, stride, padding, spatial_ndim)
    out = np.empty((plan.planes.shape[0],) + plan.out_spatial, dtype=np.float32)
    indices = np.empty(out.shape, dtype=np.int64)
    if not dispatch.compiled_loops_ready():
        out[...], indices[...] = _uncompiled.max_pool(plan.planes, plan.sizes, plan.strides, plan.pads, plan.out_spatial)
    else:
        with kernel_call_guard(out.size * int(np.prod(plan.sizes))):
            _jit.max_pool_forward(plan.planes, *plan.sizes, *plan.strides, *plan.pads, out, indices)
    out = _unplane(out, plan)
    if return_indices:
        return out, _unplane(indices, plan)
    return out


def _max_pool_backward(d_out, indices, input_shape, spatial_ndim):
    leading_shape, spatial_shape = _split_input_shape(input_shape, spatial_ndim)
    d_out = _checked_float32(d_out, "d_out")
    indices = np.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices must be the integer array returned with return_indices=True; got dtype {indices.dtype}")
    if d_out.shape != indices.shape:
        raise ValueError(f"d_out {d_out.shape} and indices {indices.shape} must have the same shape (the pooled output's)")
    if d_out.ndim != len(leading_shape) + spatial_ndim or d_out.shape[:len(leading_shape)] != leading_shape:
        raise ValueError(
            f"d_out {d_out.shape} does not match input_shape {tuple(input_shape)}: they must share "
            f"the leading (N, C) axes and have {spatial_ndim} spatial axes"
        )
    volume = int(np.prod(spatial_shape))
    if indices.size and (indices.min() < 0 or indices.max() >= volume):
        raise ValueError(
            f"indices must lie in [0, {volume}) for input_shape {tuple(input_shape)}; got values "
            f"from {indices.min()} to {indices.max()}"
        )
    n_planes = int(np.prod(leading_shape)) if leading_shape else 1
    if not dispatch.compiled_loops_ready():
        d_x = _uncompiled.scatter_add(d_out.reshape(n_planes, -1), indices.reshape(n_planes, -1), volume)
        return d_x.reshape(tuple(leading_shape) + tuple(spatial_shape))
    d_x = np.empty((n_planes, volume), dtype=np.float32)
    with kernel_call_guard(d_x.size + d_out.size):
        _jit.scatter_add(_ready(d_out.reshape(n_planes, -1)),
                         np.ascontiguousarray(indices.reshape(n_planes, -1), dtype=np.int64), d_x)
    return d_x.reshape(tuple(leading_shape) + tuple(spatial_shape))


def _avg_pool(x, size, stride, padding, spatial_ndim):
    plan = _plan_pooling(x, size, stride, padding, spatial_ndim)
    ones = np.ones((1, 1) + plan.sizes, dtype=np.float32)
    planes = plan.planes[:, None]  # (P, 1, D, H, W): one channel each
    out, _ = _run_forward(planes, ones, np.zeros(1, dtype=np.float32), tuple((p, p) for p in plan.pads),
                          plan.strides, (1, 1, 1), "zeros", plan.out_spatial)
    out /= np.float32(np.prod(plan.sizes))
    return _unplane(out[:, 0], plan)


def _avg_pool_backward(d_out, input_shape, size, stride, padding, spatial_ndim):
    leading_shape, spatial_shape = _split_input_shape(input_shape, spatial_ndim)
    sizes, strides, pads, out_spatial = _pool_geometry(spatial_shape, size, stride, padding, spatial_ndim)
    d_out = _checked_float32(d_out, "d_out")
    expected = tuple(leading_shape) + out_spatial
    if d_out.shape != expected:
        raise ValueError(
            f"d_out must have the pooled output's shape {expected} for input_shape "
            f"{tuple(input_shape)}; got {d_out.shape} (check size, stride and padding)"
        )
    if spatial_ndim == 2:
        sizes, strides, pads, out_spatial = (1,) + sizes, (1,) + strides, (0,) + pads, (1,) + out_spatial
        spatial_shape = (1,) + tuple(spatial_shape)
    n_planes = int(np.prod(leading_shape)) if leading_shape else 1
    area = float(np.prod(sizes))
    scaled = _ready((d_out / np.float32(area)).reshape((n_planes, 1) + out_spatial))
    ones = np.ones((1, 1) + sizes, dtype=np.float32)
    maps = tuple(_index_map(n, p, p, "zeros") for n, p in zip(spatial_shape, pads))
    d_x = np.empty((n_planes, 1) + tuple(spatial_shape), dtype=np.float32)
    dispatch.wait_for_compiled_loops()
    with kernel_call_guard(scaled.size * int(np.prod(sizes))):
        _jit.correlate_input_grad(scaled, ones, *maps, pads[2], *strides, 1, 1, 1, d_x)
    return d_x.reshape(tuple(leading_shape) + tuple(spatial_shape[-spatial_ndim:]))


def max_pool2d(x, size=2, *, stride=None, padding=0, return_indices=False):
    """Max pooling: the largest value of each ``size`` window.

    Parameters
    ----------
    x : array (H, W) or (N, C, H, W)
    size : int or (int, int), default 2
    stride : int or (int, int), default ``size`` (non-overlapping windows)
    padding : int or (int, int), default 0
        Counts as -inf; at most ``size // 2``.
    return_indices : bool, default False
        Also return where each maximum came from.

    Returns
    -------
    y : float32 (H', W') or (N, C, H', W'), ``H' = floor((H + 2p - size) / stride) + 1``
    indices : int64, shape of y (only with return_indices)
        Flat index ``row * W + col`` of each maximum in its (unpadded) (H, W) plane; ties go to
        the first pixel of the window in row-major order.
    """
    return _max_pool(x, size, stride, padding, return_indices, 2)


def max_pool2d_backward(d_out, indices, input_shape):
    """Gradient through ``max_pool2d``: each output gradient goes to its argmax pixel.

    Parameters
    ----------
    d_out : array (H', W') or (N, C, H', W')
    indices : int array, shape of d_out, from ``max_pool2d(..., return_indices=True)``
    input_shape : (H, W) or (N, C, H, W)

    Returns
    -------
    d_x : float32 of ``input_shape`` (pixels that were the maximum of several windows add up)
    """
    return _max_pool_backward(d_out, indices, input_shape, 2)


def avg_pool2d(x, size=2, *, stride=None, padding=0):
    """Average pooling: the mean of each ``size`` window (zero padding counted in the mean).

    Parameters
    ----------
    x : array (H, W) or (N, C, H, W)
    size : int or (int, int), default 2
    stride : int or (int, int), default ``size``
    padding : int or (int, int), default 0 (at most ``size // 2``)

    Returns
    -------
    float32 (H', W') or (N, C, H', W')
    """
    return _avg_pool(x, size, stride, padding, 2)


def avg_pool2d_backward(d_out, input_shape, size=2, *, stride=None, padding=0):
    """Gradient through ``avg_pool2d``: each output gradient is shared equally by its window.

    Parameters
    ----------
    d_out : array (H', W') or (N, C, H', W')
    input_shape : (H, W) or (N, C, H, W)
    size, stride, padding : as in the forward call

    Returns
    -------
    d_x : float32 of ``input_shape``
    """
    return _avg_pool_backward(d_out, input_shape, size, stride, padding, 2)


def max_pool3d(x, size=2, *, stride=None, padding=0, return_indices=False):
    """Max pooling of volumes (D, H, W) or (N, C, D, H, W); see ``max_pool2d``.

    Returns
    -------
    y : float32 (D', H', W') or (N, C, D', H', W')
    indices : int64, shape of y (only with return_indices)
        Flat index ``(d * H + h) * W + w`` of each maximum in its (D, H, W) volume.
    """
    return _max_pool(x, size, stride, padding, return_indices, 3)


def max_pool3d_backward(d_out, indices, input_shape):
    """Gradient through ``max_pool3d``; ``input_shape`` is (D, H, W) or (N, C, D, H, W)."""
    return _max_pool_backward(d_out, indices, input_shape, 3)


def avg_pool3d(x, size=2, *, stride=None, padding=0):
    """Average pooling of volumes (D, H, W) or (N, C, D, H, W); see ``avg_pool2d``."""
    return _avg_pool(x, size, stride, padding, 3)


def avg_pool3d_backward(d_out, input_shape, size=2, *, stride=None, padding=0):
    """Gradient through ``avg_pool3d``; ``input_shape`` is (D, H, W) or (N, C, D, H, W)."""
    return _avg_pool_backward(d_out, input_shape, size, stride, padding, 3)


# --------------------------------------------------------------------------------------------
# Activations: forward beside backward; each backward takes the forward's INPUT x
# --------------------------------------------------------------------------------------------

def _elementwise(x, d_out, operation, slope=0.0):
    x = _ready(_as_float32(x, "x"))
    if d_out is None:
        d_flat = x.reshape(-1)
    else:
        d_out = _ready(_as_float32(d_out, "d_out"))
        if d_out.shape != x.shape:
            raise ValueError(f"d_out {d_out.shape} must have the shape of x {x.shape} (the forward input)")
        d_flat = d_out.reshape(-1)
    slope = float(slope)
    if not np.isfinite(slope):
        raise ValueError(f"slope must be a finite number, got {slope}")
    if not dispatch.compiled_loops_ready():
        _check_finite(x, "x")
        if d_out is not None:
            _check_finite(d_out, "d_out")
        return _uncompiled.elementwise(x, d_out, operation, slope)
    out = np.empty_like(x)
    cost = 1 if operation in (_jit.RELU, _jit.RELU_BACKWARD, _jit.LEAKY_RELU, _jit.LEAKY_RELU_BACKWARD) else 8
    if x.size * cost < _config.PARALLEL_MIN_WORK:  # the serial loop itself: no parallel launch to pay for
        nonfinite = bool(_jit.elementwise_range(x.reshape(-1), d_flat, operation, slope, out.reshape(-1)))
    else:
        nonfinite_blocks = np.empty(-(-x.size // _jit.ELEMENTWISE_BLOCK), dtype=np.uint8)
        with kernel_call_guard(x.size * cost):
            _jit.elementwise(x.reshape(-1), d_flat, operation, slope, out.reshape(-1), nonfinite_blocks)
        nonfinite = bool(nonfinite_blocks.any())
    if nonfinite:  # the kernel checked x and d_out as it read them
        _check_finite(x, "x")
        _check_finite(d_out, "d_out")
    return out


def relu(x):
    """``max(x, 0)`` element-wise; float32, shape of x."""
    return _elementwise(x, None, _jit.RELU)


def relu_backward(x, d_out):
    """Gradient through ``relu``: d_out where x > 0, else 0 (x is the forward input)."""
    return _elementwise(x, d_out, _jit.RELU_BACKWARD)


def leaky_relu(x, slope=0.01):
    """``x`` where x > 0, else ``slope * x``; float32, shape of x."""
    return _elementwise(x, None, _jit.LEAKY_RELU, slope)


def leaky_relu_backward(x, d_out, slope=0.01):
    """Gradient through ``leaky_relu``: d_out where x > 0, else ``slope * d_out``."""
    return _elementwise(x, d_out, _jit.LEAKY_RELU_BACKWARD, slope)


def sigmoid(x):
    """``1 / (1 + exp(-x))`` element-wise, computed without overflow; float32, shape of x."""
    return _elementwise(x, None, _jit.SIGMOID)


def sigmoid_backward(x, d_out):
    """Gradient through ``sigmoid``: ``d_out * s * (1 - s)`` with ``s = sigmoid(x)``."""
    return _elementwise(x, d_out, _jit.SIGMOID_BACKWARD)


def tanh(x):
    """Hyperbolic tangent element-wise; float32, shape of x."""
    return _elementwise(x, None, _jit.TANH)


def tanh_backward(x, d_out):
    """Gradient through ``tanh``: ``d_out * (1 - tanh(x)**2)``."""
    return _elementwise(x, d_out, _jit.TANH_BACKWARD)
