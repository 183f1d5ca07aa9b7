"""Which loop computes a convolution: the one place where the engine chooses between its paths.

The engine has one definition of each operation (kernels.reference, plain loops) and several fast
ways to compute a forward convolution, each best for one shape of problem:

================ ===================================================================================
``fft``          NumPy's FFT (float64 inside): one channel, one kernel of at least
                 ``FFT_MIN_KERNEL_AREA`` taps, where the direct loops' cost grows with the kernel area
``uncompiled``   whole-array NumPy steps (kernels/_uncompiled.py), while the Numba loops are still
                 compiling after a fresh install (see ``kernels.warm_up``)
``image_rows``   one (H, W) image with one kernel (the lessons): ``_jit.correlate_image_rows``
``image_blocks`` 2-D batches with at least four kernels and stride 1 (the classifier's layers, and the
                 input gradients of its backward pass): ``_jit.correlate_image_blocks``, register
                 blocks of four kernels sized to the CPU's vector registers
``tap_table``    everything else (volumes, strided windows, one to three kernels, average pooling):
                 ``_jit.correlate_forward``, the general loop
================ ===================================================================================

All of them agree with kernels.reference to float32 rounding (tests/test_kernels*.py).
"""

from __future__ import annotations

import contextlib
import threading

# The switch between the direct loops and the FFT path of conv2d (method="auto"): single-channel
# convolutions whose kernel has at least this many taps go through the FFT.  The direct loop's cost
# grows with the kernel area, the FFT's does not: on 512 x 512, a 15 x 15 kernel takes ~8 ms either
# way, a 64 x 64 kernel 60 ms direct and 7 ms by FFT (one core).
FFT_MIN_KERNEL_AREA = 20 * 20

# Set while the compiled loops may be called (the default: a process that never calls warm_up compiles
# each loop on its first call, as before).  ``kernels.warm_up`` clears it while a fresh install's loops
# compile in the background, and sets it again once they are loaded.
_compiled_loops = threading.Event()
_compiled_loops.set()
# The thread that loads the loops calls them (to load them) before every other thread may.
_this_thread = threading.local()


def compiled_loops_ready() -> bool:
    """Whether the Numba loops are loaded (or may be compiled on first call) rather than still compiling."""
    return _compiled_loops.is_set() or getattr(_this_thread, "loading", False)


def wait_for_compiled_loops(timeout: float | None = None) -> bool:
    """Block until the compiled loops are ready (for the operations with no NumPy path, such as gradients)."""
    return compiled_loops_ready() or _compiled_loops.wait(timeout)


def serve_uncompiled_meanwhile() -> None:
    """From now on, serve what has a NumPy path with it, until :func:`serve_compiled` (used by kernels.warm_up)."""
    _compiled_loops.clear()


def serve_compiled() -> None:
    """The compiled loops are loaded: every call goes to them again."""
    _compiled_loops.set()


@contextlib.contextmanager
def loading_compiled_loops():
    """Within this block, this thread calls the compiled loops (to load them) while others are still served by NumPy."""
    _this_thread.loading = True
    try:
        yield
    finally:
        _this_thread.loading = False


def forward_path(*, planar: bool, unbatched: bool, n_channels: int, n_kernels: int, kernel_taps: int,
                 strides: tuple, method: str = "direct") -> str:
    """The name of the loop that computes a forward convolution (see the table in this module's docstring).

    Parameters
    ----------
    planar : bool
        A 2-D problem (depth 1 and kernel depth 1).
    unbatched : bool
        The caller passed one (H, W) image and one (kh, kw) kernel.
    n_channels, n_kernels, kernel_taps : int
        C, K and the taps of one kernel plane (kh * kw).
    strides : (sd, sh, sw)
    method : {"auto", "direct", "fft"}
        conv2d's choice: "auto" lets big single-channel kernels take the FFT, "direct" never does.
    """
    if method == "fft" or (method == "auto" and n_channels == 1 and n_kernels == 1
                           and kernel_taps >= FFT_MIN_KERNEL_AREA):
        return "fft"
    if not compiled_loops_ready():
        return "uncompiled"
    if planar and unbatched:
        return "image_rows"
    if planar and n_kernels >= 4 and strides[1] == 1 and strides[2] == 1:
        return "image_blocks"
    return "tap_table"
