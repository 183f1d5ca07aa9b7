"""Load (or, the first time, compile) every jitted kernel so the app's first page never waits.

``kernels.warm_up()`` is called once at app start-up; ``python -m kernels.warm_up`` runs it from the
command line.  With the on-disk cache it takes about 0.3 s; the very first time (no cache) about 24 s.
"""

from __future__ import annotations

import time

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
