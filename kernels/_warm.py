"""Load (or, the first time, compile) every jitted kernel so the app's first page never waits.

``kernels.warm_up()`` is called once at app start-up; ``python -m kernels.warm_up`` runs :func:`main`
from the command line.  With the on-disk cache it takes under a second; the very first time (no cache) 29 s on
the 2-core AVX-512 development machine and 64.5 s on a 2-core AMD EPYC without AVX-512.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from kernels import _jit, engine


def warm_up() -> float:
    """Run every jitted kernel once on tiny arrays (each has a single compiled signature).

    Returns
    -------
    float
        Seconds it took.
    """
    start = time.perf_counter()
    image = np.linspace(0.0, 1.0, 4 * 5 * 6, dtype=np.float32).reshape(1, 4, 5, 6)
    kernel = np.ones((2, 4, 3, 3), dtype=np.float32)
    engine.conv2d(image[0, 0], kernel[0, 0], padding=1)  # correlate_image_rows (one image, one kernel)
    out = engine.conv2d(image, kernel, padding=1)  # correlate_forward
    # correlate_weight_grad_wide; the input gradient (4 flipped kernels) runs correlate_image_blocks
    engine.conv2d_backward(image, kernel, out, padding=1)
    strided = engine.conv2d(image, kernel, stride=2)
    engine.conv2d_backward(image, kernel, strided, stride=2)  # correlate_input_grad, correlate_weight_grad
    pooled, indices = engine.max_pool2d(image, 2, return_indices=True)  # max_pool_forward
    engine.max_pool2d_backward(pooled, indices, image.shape)  # scatter_add
    engine.relu(image)  # elementwise_range (small calls run the serial loop directly)
    # The parallel launcher of the activations' serial loop, which only big calls reach.
    flat = image[0, 0].reshape(-1)
    _jit.elementwise(flat, flat, _jit.RELU, 0.0, np.empty_like(flat), np.zeros(1, dtype=np.uint8))
    _jit.any_nonfinite(flat)  # the finiteness check of arrays over 4096 values
    return time.perf_counter() - start


CPUINFO = Path("/proc/cpuinfo")
# Said before the wait: the first run compiles silently for about a minute (64.5 s on a 2-core AMD EPYC).
START_MESSAGE = ("Preparing the convolution engine: the first run compiles it once (about a minute on a 2-core "
                 "laptop, nothing is printed meanwhile); later runs load it from the cache in seconds.")


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The processor's name, for reports of how long compiling took.

    Linux's /proc/cpuinfo "model name" (e.g. "AMD EPYC"), else ``platform.processor()`` (macOS, Windows),
    else the machine type ("an x86_64 processor"), else "an unknown processor".
    """
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass  # no /proc (macOS, Windows) or not readable: ask the platform module
    if platform.processor().strip():
        return platform.processor().strip()
    machine = platform.machine().strip()
    return f"an {machine} processor" if machine else "an unknown processor"


def main() -> None:
    """``python -m kernels.warm_up``: say what happens, warm up, then say how long it took on which processor."""
    print(START_MESSAGE, flush=True)
    seconds = warm_up()
    print(f"kernels ready in {seconds:.2f} s on {cpu_model()} ({os.cpu_count()} cores)")
