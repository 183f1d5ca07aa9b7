"""The 3-D filter bank: kernels (kd, kh, kw) for volumes and clips, built from 1-D pieces like the 2-D bank.

Axes are (slice, row, column), the order of a volume's ``pixels`` (D, H, W); for a clip the first axis
is time. Kernels are written for cross-correlation (``conv3d``'s default): "sobel z" is positive where
brightness rises from one slice to the next, as "sobel x" is where it rises to the right. A kernel one
slice deep is a 2-D kernel applied to every slice on its own: ``make_kernel3d("laplacian of gaussian",
1, 5)`` holds the 2-D bank's 5 x 5 Laplacian of Gaussian.
"""

from __future__ import annotations

import numpy as np

from kernels.filters import DIFFERENCE, SOBEL_SMOOTH, Kernel, _binomial

__all__ = ["KERNELS_3D", "KERNEL_3D_DEPTHS", "KERNEL_3D_SIZES", "make_kernel3d"]

KERNEL_3D_DEPTHS = (1, 3, 5, 7)  # slices of a resizable 3-D kernel
KERNEL_3D_SIZES = (1, 3, 5, 7)  # rows and columns


def _outer3(depth_piece, row_piece, col_piece):
    return np.einsum("a,i,j->aij", depth_piece, row_piece, col_piece)


def _smooth(length):
    """Along one axis of a Laplacian of Gaussian: a binomial blur of ``length - 2`` with a zero at each end."""
    if length == 1:
        return np.ones(1)
    return np.concatenate(([0.0], _binomial(length - 2), [0.0]))


def _second_difference(length):
    """Along one axis: the second difference [1, -2, 1] blurred by the binomial of ``length - 2``."""
    if length == 1:
        return np.zeros(1)  # no neighbours along this axis: it takes no part
    return np.convolve([1.0, -2.0, 1.0], _binomial(length - 2))


def _laplacian_of_gaussian(depth, size):
    # The sum of the second differences along each axis, each blurred along the other two; negated so a
    # bright blob about the kernel's size answers positive. It sums to zero: flat regions give 0.
    smooth_z, smooth_y = _smooth(depth), _smooth(size)
    second_z, second_y = _second_difference(depth), _second_difference(size)
    laplacian = (_outer3(second_z, smooth_y, smooth_y) + _outer3(smooth_z, second_y, smooth_y)
                 + _outer3(smooth_z, smooth_y, second_y))
    return 0.0 - laplacian  # 0.0 - x, not -x: no negative zeros in the printed kernel


def _box_blur(depth, size):
    return np.full((depth, size, size), 1.0 / (depth * size * size))


def _gaussian_blur(depth, size):
    return _outer3(_binomial(depth), _binomial(size), _binomial(size))


def _identity(depth, size):
    kernel = np.zeros((depth, size, size))
    kernel[(depth - 1) // 2, (size - 1) // 2, (size - 1) // 2] = 1.0
    return kernel


_RESIZABLE = {
    "laplacian of gaussian": _laplacian_of_gaussian,
    "gaussian blur": _gaussian_blur,
    "box blur": _box_blur,
    "identity": _identity,
}
_DEFAULT_SHAPES = {"laplacian of gaussian": (3, 3), "gaussian blur": (3, 3), "box blur": (3, 3), "identity": (3, 3)}
_FIXED = {
    "sobel x": _outer3(SOBEL_SMOOTH, SOBEL_SMOOTH, DIFFERENCE),
    "sobel y": _outer3(SOBEL_SMOOTH, DIFFERENCE, SOBEL_SMOOTH),
    "sobel z": _outer3(DIFFERENCE, SOBEL_SMOOTH, SOBEL_SMOOTH),
    "frame difference": np.array([-1.0, 1.0])[:, None, None],
}
_DESCRIPTIONS = {
    "sobel x": "Edges across the columns: positive where brightness rises to the right, smoothed over rows "
               "and slices.",
    "sobel y": "Edges across the rows: positive where brightness rises downwards, smoothed over columns and "
               "slices.",
    "sobel z": "Edges across the slices: positive where brightness rises from one slice to the next.",
    "laplacian of gaussian": "Blob detector: answers most to a bright ball about the kernel's size, less to a "
                             "tube or a sheet.",
    "gaussian blur": "Weighted average of a block of voxels, heaviest at the centre: smooths noise in all "
                     "three directions.",
    "box blur": "Plain average of a block of voxels.",
    "identity": "Copies the volume unchanged: a single 1 at the centre.",
    "frame difference": "Two frames deep: the next frame minus this one. Where nothing moved it gives 0.",
}


def make_kernel3d(name: str, depth: int | None = None, size: int | None = None) -> np.ndarray:
    """Return a 3-D bank kernel, at a chosen depth and in-plane size if it is resizable.

    Parameters
    ----------
    name : str
        A key of ``KERNELS_3D``.
    depth, size : int, optional
        Slices and rows (= columns). Resizable kernels take depths from ``KERNEL_3D_DEPTHS`` and sizes
        from ``KERNEL_3D_SIZES``; fixed ones only their own shape. None gives the default.

    Returns
    -------
    float32 array (depth, size, size)

    Examples
    --------
    >>> make_kernel3d("laplacian of gaussian")[1]
    array([[ 0., -1.,  0.],
           [-1.,  6., -1.],
           [ 0., -1.,  0.]], dtype=float32)
    """
    if name in _RESIZABLE:
        default_depth, default_size = _DEFAULT_SHAPES[name]
        depth = default_depth if depth is None else depth
        size = default_size if size is None else size
        for value, allowed, what in ((depth, KERNEL_3D_DEPTHS, "depth"), (size, KERNEL_3D_SIZES, "size")):
            if isinstance(value, bool) or value not in allowed:
                raise ValueError(f"the {what} of {name!r} must be one of {allowed}; got {value!r}")
        return _RESIZABLE[name](int(depth), int(size)).astype(np.float32)
    if name in _FIXED:
        weights = _FIXED[name]
        if (depth is not None and depth != weights.shape[0]) or (size is not None and size != weights.shape[1]):
            raise ValueError(f"{name!r} is a fixed {' x '.join(map(str, weights.shape))} kernel; got depth "
                             f"{depth!r} and size {size!r}")
        return weights.astype(np.float32)
    raise ValueError(f"unknown 3-D kernel {name!r}; choose one of: {', '.join(_DESCRIPTIONS)}")


def _build_bank() -> dict[str, Kernel]:
    bank = {}
    for name, description in _DESCRIPTIONS.items():
        weights = make_kernel3d(name)
        weights.setflags(write=False)  # shared by every session: nobody may edit it in place
        bank[name] = Kernel(name, weights, description, name in _RESIZABLE)
    return bank


KERNELS_3D: dict[str, Kernel] = _build_bank()
