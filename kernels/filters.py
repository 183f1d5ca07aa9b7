"""The named filter bank: classic image kernels, what each responds to, and resizable versions.

Kernels are written for cross-correlation (``conv2d``'s default), so an "x" derivative kernel
gives a positive response where intensity increases to the right, and "y" where it increases
downwards.  Derivative kernels are built from 1-D pieces, as in scikit-image: a smoothing vector
times a difference vector.

Resizable kernels come at any size from 1 to 9, even sizes included.  For an even size the kernel's
reference pixel is ``(size - 1) // 2``, which is where ``padding="same"`` puts it (the extra
row/column of padding goes to the bottom/right), so "identity" stays an exact identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

__all__ = ["KERNELS", "Kernel", "MAX_KERNEL_SIZE", "make_kernel"]

MAX_KERNEL_SIZE = 9

# 1-D pieces of the derivative kernels.
DIFFERENCE = np.array([-1.0, 0.0, 1.0])  # central difference: right minus left
SOBEL_SMOOTH = np.array([1.0, 2.0, 1.0])  # binomial smoothing across the derivative
PREWITT_SMOOTH = np.array([1.0, 1.0, 1.0])  # box smoothing across the derivative
LAPLACIAN_3X3 = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class Kernel:
    """A named kernel of the filter bank.

    Attributes
    ----------
    name : str
    weights : float32 (kh, kw)
        The default-size kernel.
    description : str
        One line: what the kernel responds to.
    resizable : bool
        Whether ``make_kernel(name, size)`` accepts sizes 1..9.
    """

    name: str
    weights: np.ndarray
    description: str
    resizable: bool


def _binomial(size: int) -> np.ndarray:
    """Row ``size - 1`` of Pascal's triangle, normalised: a 1-D Gaussian approximation."""
    row = np.array([comb(size - 1, i) for i in range(size)], dtype=np.float64)
    return row / row.sum()


def _identity(size: int) -> np.ndarray:
    kernel = np.zeros((size, size))
    centre = (size - 1) // 2
    kernel[centre, centre] = 1.0
    return kernel


def _box_blur(size: int) -> np.ndarray:
    return np.full((size, size), 1.0 / (size * size))


def _gaussian_blur(size: int) -> np.ndarray:
    # Binomial weights: [1 2 1]/4 at size 3, [1 4 6 4 1]/16 at size 5; standard deviation
    # sqrt(size - 1) / 2 pixels.  Exact small fractions read better on a slide than exp() samples.
    row = _binomial(size)
    return np.outer(row, row)


def _laplacian_of_gaussian(size: int) -> np.ndarray:
    # Laplacian of a binomial blur of size - 2 (so size 3 is the plain Laplacian), negated so a
    # bright round spot about the kernel's size gives a strong positive response.  It sums to zero:
    # flat regions give 0.  Sizes 1 and 2 have no room for a centre and its neighbours: all zeros.
    if size < 3:
        return np.zeros((size, size))
    blur = _gaussian_blur(size - 2)
    kernel = np.zeros((size, size))
    for i in range(3):
        for j in range(3):
            kernel[i:i + size - 2, j:j + size - 2] += LAPLACIAN_3X3[i, j] * blur
    return 0.0 - kernel  # 0.0 - x, not -x: no negative zeros in the printed matrix


_RESIZABLE = {
    "identity": _identity,
    "box blur": _box_blur,
    "gaussian blur": _gaussian_blur,
    "laplacian of gaussian": _laplacian_of_gaussian,
}

_DEFAULT_SIZES = {"identity": 3, "box blur": 3, "gaussian blur": 3, "laplacian of gaussian": 5}

_FIXED = {
    "sharpen": np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]]),
    "sobel x": np.outer(SOBEL_SMOOTH, DIFFERENCE),
    "sobel y": np.outer(DIFFERENCE, SOBEL_SMOOTH),
    "prewitt x": np.outer(PREWITT_SMOOTH, DIFFERENCE),
    "prewitt y": np.outer(DIFFERENCE, PREWITT_SMOOTH),
    "laplacian": LAPLACIAN_3X3,
    "emboss": np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]]),
    "outline": np.array([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]]),
}

_DESCRIPTIONS = {
    "identity": "Copies the image unchanged: a single 1 at the centre.",
    "box blur": "Averages every pixel with its neighbours equally, smoothing noise and fine detail.",
    "gaussian blur": "Weighted average favouring the centre: smooths noise while keeping edges softer than a box.",
    "sharpen": "Adds the difference from the neighbours back in, making edges and small details crisper.",
    "sobel x": "Responds to vertical edges: positive where brightness rises from left to right.",
    "sobel y": "Responds to horizontal edges: positive where brightness rises from top to bottom.",
    "prewitt x": "Like Sobel x with equal smoothing weights: vertical edges, left-to-right rises positive.",
    "prewitt y": "Like Sobel y with equal smoothing weights: horizontal edges, top-to-bottom rises positive.",
    "laplacian": "Second derivative: responds to fine detail and edges in every direction, zero on flat areas.",
    "emboss": "Shades the image as if lit from the top-left, so edges look raised or sunken.",
    "outline": "Highlights every edge and isolated spot, turning flat regions dark.",
    "laplacian of gaussian": "Blob detector: strong positive response to bright round spots about the kernel's size.",
}


def make_kernel(name: str, size: int | None = None) -> np.ndarray:
    """Return a filter-bank kernel, at a chosen size if it is resizable.

    Parameters
    ----------
    name : str
        A key of ``KERNELS``.
    size : int, optional
        Side length.  Resizable kernels accept 1..9 (even sizes included); fixed kernels only their
        own size.  None gives the default size.

    Returns
    -------
    float32 array (size, size)

    Examples
    --------
    >>> make_kernel("gaussian blur", 3) * 16
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]], dtype=float32)
    """
    if name in _RESIZABLE:
        if size is None:
            size = _DEFAULT_SIZES[name]
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= MAX_KERNEL_SIZE:
            raise ValueError(f"size of {name!r} must be an int from 1 to {MAX_KERNEL_SIZE}; got {size!r}")
        return _RESIZABLE[name](int(size)).astype(np.float32)
    if name in _FIXED:
        weights = _FIXED[name]
        if size is not None and size != weights.shape[0]:
            raise ValueError(
                f"{name!r} is a fixed {weights.shape[0]}x{weights.shape[1]} kernel; its size must be "
                f"{weights.shape[0]} (or None), got {size!r}"
            )
        return weights.astype(np.float32)
    raise ValueError(f"unknown kernel {name!r}; choose one of: {', '.join(sorted(KERNELS))}")


def _build_bank() -> dict[str, Kernel]:
    bank = {}
    for name in _DESCRIPTIONS:
        weights = make_kernel(name)
        weights.setflags(write=False)  # shared by every session: nobody may edit it in place
        bank[name] = Kernel(name, weights, _DESCRIPTIONS[name], name in _RESIZABLE)
    return bank


# make_kernel's error message lists KERNELS; it is only called after the bank exists.
KERNELS: dict[str, Kernel] = {}
KERNELS.update(_build_bank())
