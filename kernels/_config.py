"""Numba compilation flags and threading settings for the engine, kept in one place."""

from __future__ import annotations

import contextlib
import os
import threading

import numba

# Every jitted kernel in kernels/_jit.py is compiled with these options.
#
# cache=True: the machine code is written next to the module (or under NUMBA_CACHE_DIR) so a
#   lecturer's second start loads it in well under a second instead of recompiling.
# nogil=True: Streamlit serves every browser session as a thread of one process; releasing the GIL
#   lets two students' convolutions run at the same time.
# parallel=True: prange loops over output rows / planes spread over the cores (2 on the target
#   machine).  Set CONVSCOPE_PARALLEL=0 to compile serial kernels (e.g. when profiling).
# fastmath: only the flags that cannot change a finite result.  "nnan"/"ninf" let LLVM drop NaN
#   checks (the public wrappers refuse non-finite input), "nsz" ignores the sign of zero, "arcp"
#   allows reciprocal multiplication where the code divides.  Deliberately NOT "reassoc" or
#   "contract": the forward convolution must add its products in a fixed order, each with the
#   explicit fused multiply-add of kernels/_simd.py, so that the step trace (kernels/trace.py),
#   recomputed in NumPy, matches every output pixel bit for bit; "contract" would let LLVM choose
#   which multiplies to fuse.  Vectorisation does not need reassociation here because the
#   innermost loops run along an output row, where each element has its own independent sum.
PARALLEL = os.environ.get("CONVSCOPE_PARALLEL", "1") != "0"

def _prefer_wide_vectors() -> None:
    """Let LLVM use 512-bit vectors on CPUs that have them (AVX-512).

    LLVM's tuning for AVX-512 CPUs prefers 256-bit vectors (wide ones once lowered the clock of
    old Xeons), which halves the width of every row loop here: on the 2-core AVX-512 development
    machine a 512 x 512 3x3 single-image convolution took 0.135 ms with 256-bit and 0.116 ms with
    512-bit vectors (cv2.filter2D 0.105 ms).  The features are part of Numba's cache key, so a
    cache built with other settings is recompiled, never misused.  An explicit NUMBA_CPU_FEATURES
    in the environment wins.
    """
    if numba.config.CPU_FEATURES is not None:
        return
    from numba.core.codegen import get_host_cpu_features

    features = get_host_cpu_features()
    if "+avx512f" in features.split(","):
        numba.config.CPU_FEATURES = features + ",-prefer-256-bit"


_prefer_wide_vectors()


def _host_vector_lanes() -> int:
    """float32 lanes of the explicit vectors (kernels/_simd.py): one register of the CPU at hand.

    16 with AVX-512 (zmm); 8 otherwise (one ymm with AVX2; two NEON registers on ARM).  With 16
    lanes on an AVX2 CPU each vector took two registers and the register-blocked loops spilled.
    """
    features = numba.config.CPU_FEATURES
    if features is None:
        from numba.core.codegen import get_host_cpu_features

        features = get_host_cpu_features()
    return 16 if "+avx512f" in str(features).split(",") else 8


VECTOR_LANES = _host_vector_lanes()

FASTMATH = frozenset({"nnan", "ninf", "nsz", "arcp"})

JIT_OPTIONS = {
    "cache": True,
    "nogil": True,
    "parallel": PARALLEL,
    "fastmath": set(FASTMATH),
    "error_model": "numpy",  # no ZeroDivisionError checks inside the loops
}

# Kernels whose sums nobody replays step by step (the weight gradient): full fastmath, so LLVM may
# reassociate a dot product along a row into several vector accumulators.
JIT_REDUCTION_OPTIONS = dict(JIT_OPTIONS, fastmath=True)

# Small helpers called from inside the kernels: no prange of their own, so no parallel pass.
JIT_HELPER_OPTIONS = {key: value for key, value in JIT_OPTIONS.items() if key != "parallel"}


def _pick_threading_layer() -> str:
    """Return a Numba threading layer that tolerates parallel calls from several Python threads.

    Numba's default "workqueue" layer aborts the process when two threads launch parallel
    kernels at the same time, which is exactly what Streamlit does.  "omp" (GNU OpenMP, usually
    present on Linux) and "tbb" are thread-safe.
    """
    for layer, module in (("omp", "omppool"), ("tbb", "tbbpool")):
        try:
            __import__(f"numba.np.ufunc.{module}")
        except ImportError:
            continue
        return layer
    return "workqueue"


# Respect an explicit NUMBA_THREADING_LAYER from the environment; otherwise choose a safe one.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = _pick_threading_layer()

# GNU OpenMP's worker threads spin for a while after each parallel loop by default.  On a machine
# shared with other processes (Streamlit sessions, other users) a spinning thread holds a core that
# another parallel loop then waits for: 512x512 7x7 took 8 ms instead of 1.2 ms under load.
# Passive waiting costs a few microseconds of wake-up per call instead.  Must be set before the
# OpenMP runtime loads (at the first parallel call).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

THREADING_LAYER_IS_THREADSAFE = numba.config.THREADING_LAYER in ("omp", "tbb", "threadsafe", "safe")

# With only the workqueue layer available, parallel kernels must not run concurrently: the
# public wrappers hold this lock around each call.  With a thread-safe layer it is a no-op.
_WORKQUEUE_LOCK = threading.Lock()


# Smallest amount of work (multiply-adds or element operations) worth spreading over threads.
# Waking a second thread costs microseconds on an idle machine but a whole scheduler time slice
# (measured: ReLU on 2M values 0.7 ms on one thread, 8 ms on two) when other processes hold the
# cores, as on a lecturer's laptop serving many sessions.  Below this, kernels run on the calling
# thread only.  CONVSCOPE_PARALLEL_MIN_WORK overrides it; ``machine_to_ourselves`` lowers it for a
# process that owns the machine (training).  Read at each call, never copied.
PARALLEL_MIN_WORK = int(os.environ.get("CONVSCOPE_PARALLEL_MIN_WORK", str(1 << 24)))
# The threshold while a process has the machine to itself: a 2 x 2 max pool or a ReLU of a
# (32, 8, 64, 64) batch (1M values) is then worth both cores.  The classifier's training step took
# 23.5 ms with the default threshold and 21.0 ms with this one (two threads).
DEDICATED_PARALLEL_MIN_WORK = 1 << 18


@contextlib.contextmanager
def machine_to_ourselves(min_work: int = DEDICATED_PARALLEL_MIN_WORK):
    """Within this block, spread calls of at least ``min_work`` operations over the threads.

    For work that has the machine to itself, such as ``python -m model.train``; the app keeps the
    default.  The results are the same bit for bit with any threshold (every loop gives each
    thread whole outputs, and the weight gradient adds per-image partial sums in a fixed order).
    """
    global PARALLEL_MIN_WORK
    previous = PARALLEL_MIN_WORK
    PARALLEL_MIN_WORK = min(previous, min_work)
    try:
        yield
    finally:
        PARALLEL_MIN_WORK = previous


@contextlib.contextmanager
def kernel_call_guard(work: int):
    """Context manager to wrap every call of a parallel jitted kernel in.

    Parameters
    ----------
    work : int
        Rough operation count of the call: below ``PARALLEL_MIN_WORK`` the kernel runs on the
        calling thread alone (``numba.set_num_threads`` is per calling thread, so other sessions
        are not affected).

    Notes
    -----
    With a threading layer that cannot take concurrent launches (workqueue) the call also holds
    a process-wide lock.
    """
    lock = _WORKQUEUE_LOCK if PARALLEL and not THREADING_LAYER_IS_THREADSAFE else contextlib.nullcontext()
    with lock:
        if PARALLEL and work < PARALLEL_MIN_WORK and numba.get_num_threads() > 1:
            previous = numba.get_num_threads()
            numba.set_num_threads(1)
            try:
                yield
            finally:
                numba.set_num_threads(previous)
        else:
            yield


# BLAS threads: the engine does not call BLAS (its loops are Numba's, its FFT is pocketfft), but
# model/ code and NumPy matmuls in the same process could, and an OpenBLAS pool of its own next to
# Numba's would oversubscribe the 2 cores.  threadpoolctl (optional) caps it at runtime; without it,
# set OPENBLAS_NUM_THREADS=1 (or OMP_NUM_THREADS=1) in the environment before Python starts.
BLAS_THREADS = int(os.environ.get("CONVSCOPE_BLAS_THREADS", "1"))


def limit_blas_threads(count: int = BLAS_THREADS) -> bool:
    """Cap BLAS thread pools at ``count`` threads if threadpoolctl is installed.

    Parameters
    ----------
    count : int
        Maximum number of BLAS threads.

    Returns
    -------
    bool
        True if the limit was applied, False if threadpoolctl is not available.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(limits=count, user_api="blas")
    return True


# glibc's malloc returns big freed blocks to the operating system (blocks over 128 KiB, up to
# 32 MiB as its threshold adapts, come from mmap; free memory above 128 KiB at the top of the heap
# is trimmed).  A training step allocates and frees dozens of arrays of 1-9 MB, so each new one
# starts on fresh pages whose first touch costs a page fault per 4 KiB: on the development VM that
# was a third of the non-convolution time of a step (ReLU backward on a 64 x 64 batch 2.5 ms
# instead of 0.9 ms).  Keeping freed memory for reuse costs resident memory (the peak stays).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory(limit_bytes: int = 32 << 20) -> bool:
    """Ask glibc to keep freed blocks (arrays up to ``limit_bytes``) for reuse instead of unmapping them.

    For long computations that allocate and free many large arrays (training).  Returns False
    where there is no glibc (macOS, Windows, musl), which then keeps its own behaviour.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # mallopt returns 1 on success; glibc caps the mmap threshold at 32 MiB on 64-bit machines.
    return bool(mallopt(_M_MMAP_THRESHOLD, min(limit_bytes, 32 << 20)) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
                and mallopt(_M_TOP_PAD, 64 << 20))

