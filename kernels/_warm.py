"""Load (or, the first time, compile) every jitted kernel so the app's first page never waits.

``kernels.warm_up()`` loads or compiles every loop in this process and returns when they are ready;
``python -m kernels.warm_up`` runs :func:`main` from the command line.  With the on-disk cache that takes
about a second; without it (a fresh install) about a minute on a 2-core laptop (64.5 s on a 2-core AMD
EPYC without AVX-512, 29 s on a 2-core AVX-512 machine).

The app calls ``warm_up(wait=False)`` instead: when the cache holds this machine's loops it loads them
at once, and otherwise it compiles them in a background process while the engine serves every forward
pass, pooling and activation with whole-array NumPy steps (kernels/_uncompiled.py, see
kernels/dispatch.py), then loads them and switches over.  The first visitor of a fresh install does
not wait for the compiler.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numba
import numpy as np

from kernels import _jit, dispatch, engine

# Written into Numba's cache directory after a complete warm-up: names the sources, Numba, Python and
# CPU the cached loops were compiled for, so that the next start knows it only has to load them.
_READY_MARKER = "_jit.warm-up.done"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _compile_all() -> None:
    """Run every jitted kernel once on tiny arrays (each has a single compiled signature)."""
    image = np.linspace(0.0, 1.0, 4 * 5 * 6, dtype=np.float32).reshape(1, 4, 5, 6)
    kernel = np.ones((4, 4, 3, 3), dtype=np.float32)
    engine.conv2d(image[0, 0], kernel[0, 0], padding=1)  # correlate_image_rows (one image, one kernel)
    out = engine.conv2d(image, kernel, padding=1)  # correlate_image_blocks
    engine.conv2d(image, kernel[:2], padding=1)  # correlate_forward (fewer than four kernels)
    engine.conv2d_backward(image, kernel, out, padding=1)  # copy_planes_into_rows, correlate_weight_grad_wide
    strided = engine.conv2d(image, kernel, stride=2)
    engine.conv2d_backward(image, kernel, strided, stride=2)  # correlate_input_grad, correlate_weight_grad
    pooled, indices = engine.max_pool2d(image, 2, return_indices=True)  # max_pool_forward
    engine.max_pool2d_backward(pooled, indices, image.shape)  # scatter_add
    engine.relu(image)  # elementwise_range (small calls run the serial loop directly)
    # The parallel launcher of the activations' serial loop, which only big calls reach.
    flat = image[0, 0].reshape(-1)
    _jit.elementwise(flat, flat, _jit.RELU, 0.0, np.empty_like(flat), np.zeros(1, dtype=np.uint8))
    _jit.any_nonfinite(flat)  # the finiteness check of arrays over 4096 values


def _cache_key() -> str:
    """What the cached loops depend on: their sources, this warm-up, Numba, Python and the CPU."""
    import llvmlite.binding
    from numba.core.codegen import get_host_cpu_features

    digest = hashlib.sha256()
    for name in ("_jit.py", "_simd.py", "_config.py", "_warm.py"):
        digest.update(Path(__file__).with_name(name).read_bytes())
    for part in (numba.__version__, sys.version, numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name(),
                 numba.config.CPU_FEATURES or get_host_cpu_features()):
        digest.update(str(part).encode())
    return digest.hexdigest()


def _marker() -> Path | None:
    return None if _jit._CACHE_PATH is None else Path(_jit._CACHE_PATH) / _READY_MARKER


def loops_cached() -> bool:
    """Whether Numba's cache holds every loop, compiled for this CPU from these sources."""
    marker = _marker()
    try:
        return marker is not None and marker.read_text() == _cache_key()
    except OSError:
        return False


def warm_up(*, wait: bool = True) -> float:
    """Load or compile every jitted kernel; returns the seconds it took.

    Parameters
    ----------
    wait : bool, default True
        False (the app): if the loops are not in the cache yet, compile them in a background process
        and return at once; until they are loaded the engine serves forward passes, pooling and
        activations with NumPy, and gradients wait for the loops (``kernels.dispatch``).
    """
    start = time.perf_counter()
    if not wait and not loops_cached():
        dispatch.serve_uncompiled_meanwhile()
        threading.Thread(target=_compile_in_background, name="convscope-warm-up", daemon=True).start()
        return time.perf_counter() - start
    with dispatch.loading_compiled_loops():
        _compile_all()
    marker = _marker()
    if marker is not None:
        try:
            marker.write_text(_cache_key())
        except OSError:
            pass  # a read-only cache: the next start compiles in the background again
    return time.perf_counter() - start


def _compile_in_background() -> None:
    """Compile every loop in a child process (it writes Numba's cache), then load them here and switch over.

    A separate process, because compiling holds Python's lock for most of a minute: in a thread of the
    app it would slow every page down.  If the child fails (or the cache cannot be written), the loops
    compile here instead; either way the engine switches to them at the end.
    """
    try:
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(_PACKAGE_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        subprocess.run([sys.executable, "-c", "from kernels._warm import warm_up; warm_up()"], env=environment,
                       cwd=_PACKAGE_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        warm_up()
    finally:
        dispatch.serve_compiled()


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
