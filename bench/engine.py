"""Benchmark of the kernels/ engine against OpenCV, SciPy, NumPy and (if installed) PyTorch.

Run by hand: ``python -m bench.engine`` (add ``--quick`` for fewer repeats, ``--single-channel`` for
the single-channel tables only, ``--layer`` for the batched layer against PyTorch only).  Prints median times
over several repeats and the ratios the engine's speed bars are stated in; it never fails, it
reports.  Every library gets the same 2 threads (NumPy's OpenBLAS included).  The numbers depend on the machine and on
whatever else runs on it: quote them with the machine they were measured on (the CPU model and the load average are
printed).  Last, the start of a fresh install (empty Numba cache: the first visitor is served by NumPy while the
loops compile in the background) and a warm start, each in a fresh process (``--skip-first-start`` skips them).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

THREADS = 2
ROOT = Path(__file__).resolve().parents[1]


def _threads_from_command_line(argv: list[str]) -> int:
    """The --threads value (or the default), read before NumPy loads its BLAS."""
    for index, argument in enumerate(argv):
        if argument.startswith("--threads="):
            return int(argument.split("=", 1)[1])
        if argument == "--threads" and index + 1 < len(argv):
            return int(argv[index + 1])
    return THREADS


# NumPy's OpenBLAS (used by the einsum baseline) starts its own thread pool when NumPy is imported
# and its idle threads keep spinning after each call: without this cap they held a core while the
# next row's engine and cv2 calls were timed (measured: 512x512 15x15 engine 7.7 ms instead of
# 3.5 ms on one thread).  Must be set before NumPy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(_threads_from_command_line(sys.argv)))

import numpy as np  # noqa: E402  (after the BLAS thread cap above)


def set_threads() -> None:
    import kernels  # noqa: F401  (first: its config sets OMP_WAIT_POLICY before any OpenMP runtime, torch's, loads)
    import cv2
    import numba

    # The engine keeps small calls on one thread (kernels._config.PARALLEL_MIN_WORK): measured as is.
    numba.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)
    try:
        import torch

        torch.set_num_threads(THREADS)
    except ImportError:
        pass


def median_ms(function, repeats: int, budget_s: float = 2.0, min_s: float = 0.25) -> float:
    """Median wall time of ``function()`` in ms, after one untimed call.

    At least ``repeats`` calls and at least ``min_s`` seconds of calls (a 0.1 ms call is timed a
    few thousand times: nine samples of it moved by 20 % between runs), but fewer calls than
    ``repeats`` (at least 3) for a call so slow that they would take more than ``budget_s``.
    """
    function()
    times = []
    started = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - started
        if len(times) >= 3 and elapsed >= budget_s:
            break
        if len(times) >= repeats and elapsed >= min_s:
            break
        tick = time.perf_counter()
        function()
        times.append(time.perf_counter() - tick)
    return float(np.median(times)) * 1e3


def alternating_medians_ms(functions: dict, repeats: int, budget_s: float = 4.0, min_s: float = 0.5) -> dict:
    """Median wall time in ms of each function, the calls taking turns (a, b, a, b, ...) after one untimed round.

    On a shared machine the load moves while a benchmark runs: timed one after the other, two
    libraries can meet different loads.  Taking turns, both see the same.  Rounds as in ``median_ms``.
    """
    for function in functions.values():
        function()
    times = {name: [] for name in functions}
    started = time.perf_counter()
    rounds = 0
    while True:
        elapsed = time.perf_counter() - started
        if rounds >= 3 and elapsed >= budget_s:
            break
        if rounds >= repeats and elapsed >= min_s:
            break
        for name, function in functions.items():
            tick = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - tick)
        rounds += 1
    return {name: float(np.median(values)) * 1e3 for name, values in times.items()}


def numpy_correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Plain NumPy: a sliding-window view of the reflect-padded image contracted with the kernel."""
    kh, kw = kernel.shape
    padded = np.pad(image, ((kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2)), mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape)
    return np.einsum("ijkl,kl->ij", windows, kernel, optimize=True)


def single_channel_table(repeats: int) -> list[str]:
    import cv2
    import scipy.ndimage
    import scipy.signal

    from kernels import conv2d

    rng = np.random.default_rng(0)
    lines = [
        "Single-channel conv2d, float32, 'same' size, reflect border (cv2 BORDER_REFLECT_101, ndimage 'mirror');",
        "fftconvolve pads with zeros.  Times: median ms.  Ratio = other library's time / engine's time.",
        "",
        f"{'image':>9} {'kernel':>6} | {'engine':>8} | {'cv2':>8} {'x':>5} | {'ndimage':>8} {'x':>5} | "
        f"{'fftconv':>8} {'x':>5} | {'numpy':>8} {'x':>5} | bars",
    ]
    for size in (512, 2048):
        image = rng.random((size, size), dtype=np.float32)
        for k in (3, 7, 15):
            kernel = rng.random((k, k), dtype=np.float32)
            engine = median_ms(lambda: conv2d(image, kernel, padding="same", padding_mode="reflect"), repeats)
            opencv = median_ms(lambda: cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101), repeats)
            ndimage = median_ms(lambda: scipy.ndimage.correlate(image, kernel, mode="mirror"), repeats)
            flipped = kernel[::-1, ::-1]
            fft = median_ms(lambda: scipy.signal.fftconvolve(image, flipped, mode="same"), repeats)
            plain = median_ms(lambda: numpy_correlate(image, kernel), max(3, repeats // 3))
            bars = []
            bars.append("cv2 ok" if engine <= opencv else "cv2 MISSED")
            bars.append("ndimage ok" if ndimage >= 10 * engine else "ndimage MISSED")
            lines.append(
                f"{size:>4}x{size:<4} {k:>3}x{k:<2} | {engine:8.2f} | {opencv:8.2f} {opencv / engine:5.2f} | "
                f"{ndimage:8.2f} {ndimage / engine:5.1f} | {fft:8.2f} {fft / engine:5.2f} | "
                f"{plain:8.2f} {plain / engine:5.1f} | {', '.join(bars)}"
            )
    lines.append("Bars: engine not slower than cv2.filter2D (cv2 ratio >= 1); >= 10x faster than ndimage.")
    return lines


def single_channel_cpu_lines(repeats: int) -> list[str]:
    """Single-channel conv2d against cv2.filter2D in CPU time, both on one thread, calls alternating.

    The least CPU time of many calls (time.thread_time around each; the 1st percentile, so that a
    rare misread clock cannot set it) moves much less than a wall-clock median when other processes
    share the machine.  One thread is how the app runs a 512 x 512 call, and how cv2 runs these.
    """
    import cv2
    import numba

    from kernels import conv2d

    calls_512 = 200 * repeats
    rng = np.random.default_rng(1)
    previous = numba.get_num_threads(), cv2.getNumThreads()
    numba.set_num_threads(1)
    cv2.setNumThreads(1)
    lines = ["Single-channel conv2d, float32, 'same' size, reflect border: least CPU time of many calls (1st",
             "percentile), engine and cv2.filter2D each on one thread, calls alternating.  Ratio = cv2 / engine.", ""]
    try:
        for size in (512, 2048):
            image = rng.random((size, size), dtype=np.float32)
            row = {"engine": [], "cv2": [], "ratio": []}
            for k in range(3, 16, 2):
                kernel = rng.random((k, k), dtype=np.float32)
                calls = {"engine": lambda: conv2d(image, kernel, padding="same", padding_mode="reflect"),
                         "cv2": lambda: cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)}
                times = {name: [] for name in calls}
                for _ in range(max(20, calls_512 * 512 * 512 // (size * size))):
                    for name, call in calls.items():
                        started = time.thread_time()
                        call()
                        times[name].append(time.thread_time() - started)
                least = {name: float(np.percentile(values, 1)) * 1e3 for name, values in times.items()}
                row["engine"].append(f"{least['engine']:.3g}")
                row["cv2"].append(f"{least['cv2']:.3g}")
                row["ratio"].append(f"{least['cv2'] / least['engine']:.2f}")
            lines.append(f"{size} x {size}, kernel | " + " | ".join(f"{k} x {k}" for k in range(3, 16, 2)))
            lines.append("engine, ms CPU | " + " | ".join(row["engine"]))
            lines.append("cv2.filter2D, ms CPU | " + " | ".join(row["cv2"]))
            lines.append("ratio | " + " | ".join(row["ratio"]) + f"   (load average {os.getloadavg()[0]:.1f})")
            lines.append("")
    finally:
        numba.set_num_threads(previous[0])
        cv2.setNumThreads(previous[1])
    lines.append("Bar: ratio >= 1 (engine not slower than cv2.filter2D) for 3 x 3 to 15 x 15 on both sizes.")
    return lines


def large_kernel_lines(repeats: int) -> list[str]:
    from kernels import FFT_MIN_KERNEL_AREA, conv2d

    rng = np.random.default_rng(1)
    image = rng.random((512, 512), dtype=np.float32)
    kernel = rng.random((64, 64), dtype=np.float32)
    auto = median_ms(lambda: conv2d(image, kernel, padding="same"), repeats)
    direct = median_ms(lambda: conv2d(image, kernel, padding="same", method="direct"), max(3, repeats // 3))
    difference = np.abs(conv2d(image, kernel, padding="same") - conv2d(image, kernel, padding="same", method="direct"))
    return [
        f"Large kernel, 512x512 image x 64x64 kernel ('same', zeros): FFT path (auto, kernel area >= "
        f"{FFT_MIN_KERNEL_AREA}) {auto:.1f} ms, direct loop {direct:.1f} ms; max |FFT - direct| = "
        f"{difference.max():.2e} (values ~{np.abs(conv2d(image, kernel)).mean():.0f}).  Bar: < 500 ms.",
    ]


def layer_lines(repeats: int) -> list[str]:
    from kernels import conv2d, conv2d_backward
    from kernels._config import keep_freed_memory

    # Both libraries allocate arrays of several MB per call; with glibc's default settings, whether
    # those land on fresh pages (a page fault per 4 KiB) depends on what the process freed before,
    # so PyTorch's forward measured 1.5 or 5.6 ms by the order of the calls alone.  Freed memory
    # kept for reuse (as in training) gives both their steady state.  Run last: it stays on.
    keep_freed_memory()

    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 8, 64, 64), dtype=np.float32)
    w = (rng.standard_normal((16, 8, 3, 3)) * 0.1).astype(np.float32)
    b = np.zeros(16, dtype=np.float32)
    d_out = rng.standard_normal((32, 16, 64, 64), dtype=np.float32)

    def engine_both():
        conv2d(x, w, b, padding=1)
        conv2d_backward(x, w, d_out, padding=1)

    def engine_forward():
        conv2d(x, w, b, padding=1)

    lines = ["Batched layer N=32, C=8 -> K=16, 64x64, 3x3, padding 1 (median ms; engine and torch calls taking turns):"]
    try:
        import torch
    except ImportError:
        forward = median_ms(engine_forward, repeats)
        both = median_ms(engine_both, repeats)
        lines.append(f"  engine forward {forward:.2f}, forward+backward {both:.2f}; torch not installed: comparison skipped")
        return lines
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(w).requires_grad_(True)
    tb = torch.from_numpy(b).requires_grad_(True)
    t_grad = torch.from_numpy(d_out)

    def torch_forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, tb, padding=1)

    def torch_both():
        tx.grad = tw.grad = tb.grad = None
        torch.nn.functional.conv2d(tx, tw, tb, padding=1).backward(t_grad)

    # At least 30 rounds: on a shared machine a few slow rounds otherwise move a median of 9.
    forward, torch_fwd = alternating_medians_ms({"engine": engine_forward, "torch": torch_forward},
                                                max(30, repeats)).values()
    both, torch_total = alternating_medians_ms({"engine": engine_both, "torch": torch_both}, max(30, repeats)).values()
    lines.append(f"  forward:          engine {forward:7.2f}  torch {torch_fwd:7.2f}  torch/engine {torch_fwd / forward:5.2f}"
                 f"  {'ok' if forward <= torch_fwd else 'MISSED'}")
    lines.append(f"  forward+backward: engine {both:7.2f}  torch {torch_total:7.2f}  torch/engine {torch_total / both:5.2f}"
                 f"  {'ok' if both <= torch_total else 'MISSED'}")
    lines.append(f"  (torch {torch.__version__}; bar: engine not slower than torch on {THREADS} threads)")
    return lines


def _on_both_cores(call):
    """``call`` with the engine's small-call threshold lowered as in training (``machine_to_ourselves``)."""
    from kernels._config import machine_to_ourselves

    def run():
        with machine_to_ourselves():
            call()

    return run


def pooling_lines(repeats: int) -> list[str]:
    from kernels import avg_pool2d, max_pool2d, relu

    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 16, 64, 64), dtype=np.float32)
    blocks = lambda: x.reshape(32, 16, 32, 2, 32, 2)  # noqa: E731
    rows = [
        ("max_pool2d 2x2", lambda: max_pool2d(x, 2), lambda: blocks().max(axis=(3, 5))),
        ("max_pool2d 2x2 + argmax", lambda: max_pool2d(x, 2, return_indices=True), None),
        ("avg_pool2d 2x2", lambda: avg_pool2d(x, 2), lambda: blocks().mean(axis=(3, 5))),
        # The app keeps calls under PARALLEL_MIN_WORK (2**24) on one thread, so this one (2**21
        # values) gets one; training, where ReLUs of this size run, spreads them over both cores.
        ("relu (app: one thread)", lambda: relu(x), lambda: np.maximum(x, 0)),
        (f"relu (training: {THREADS} thr.)", _on_both_cores(lambda: relu(x)), lambda: np.maximum(x, 0)),
    ]
    lines = ["Pooling and ReLU on (32, 16, 64, 64) float32 (median ms; NumPy: reshape-max/mean, np.maximum):"]
    for name, engine_call, numpy_call in rows:
        engine = median_ms(engine_call, repeats)
        if numpy_call is None:
            lines.append(f"  {name:<24} engine {engine:6.2f}")
            continue
        plain = median_ms(numpy_call, repeats)
        lines.append(f"  {name:<24} engine {engine:6.2f}  numpy {plain:6.2f}  numpy/engine {plain / engine:5.2f}"
                     f"  {'ok' if engine <= plain else 'MISSED'}")
    return lines


def memory_lines() -> list[str]:
    from kernels import conv2d

    image = np.random.default_rng(4).random((2048, 2048), dtype=np.float32)
    kernel = np.ones((15, 15), dtype=np.float32) / 225
    conv2d(image, kernel, padding="same")  # compiled / loaded before measuring
    tracemalloc.start()
    out = conv2d(image, kernel, padding="same", padding_mode="reflect")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    budget = 3 * (image.nbytes + out.nbytes)
    return [
        f"Peak memory (tracemalloc) of a 2048x2048 15x15 conv2d: {peak / 2**20:.1f} MiB = "
        f"{peak / (image.nbytes + out.nbytes):.2f}x (input + output); bar < 3x ({budget / 2**20:.0f} MiB): "
        f"{'ok' if peak < budget else 'MISSED'}",
    ]


FIRST_START = """
import time
start = time.perf_counter()
import numpy as np
import kernels
from kernels import dispatch
imported = time.perf_counter()
kernels.warm_up(wait=False)  # as app.py calls it
warmed = time.perf_counter()
compiled_at_once = dispatch.compiled_loops_ready()
# The first clicks: the convolution lesson's image with a 3 x 3 kernel, and the classifier on patches.
image = np.random.default_rng(0).random((512, 512), dtype=np.float32)
kernels.conv2d(image, kernels.KERNELS["sobel x"].weights, padding="same", padding_mode="reflect")
import model
classifier = model.load()
classifier.predict_proba(np.random.default_rng(1).random((16, classifier.input_size, classifier.input_size),
                                                          dtype=np.float32))
clicks = time.perf_counter()
dispatch.wait_for_compiled_loops()
compiled = time.perf_counter()
print(f"{imported - start:.2f} {warmed - imported:.2f} {clicks - warmed:.2f} {compiled - start:.2f} {compiled_at_once}")
"""
START_BAR_S = {"cold": 15.0, "warm": 2.0}


def first_start_lines() -> list[str]:
    """The app's first start after a fresh install (empty Numba cache), then a warm start, each in a fresh process.

    What the first visitor waits for: Python importing the engine, ``kernels.warm_up(wait=False)`` (as
    app.py calls it) and the first clicks (a 512 x 512 convolution, the classifier on 16 patches).  Cold,
    the compiled loops are built in a background process meanwhile; the last column says when they took
    over.  Warm, they are loaded from the cache before the first click.
    """
    lines = [f"Start of the engine in a fresh process on {os.cpu_count()} cores, NUMBA_CACHE_DIR a new temporary "
             f"directory (load average {os.getloadavg()[0]:.1f}); seconds:",
             f"  {'':<6} {'import':>7} {'warm_up':>8} {'clicks':>7} {'ready':>7} | compiled loops"]
    with tempfile.TemporaryDirectory() as cache_dir:
        environment = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        for label in ("cold", "warm"):
            completed = subprocess.run([sys.executable, "-c", FIRST_START], cwd=ROOT, env=environment,
                                       capture_output=True, text=True, check=True)
            imported, warmed, clicks, compiled, at_once = completed.stdout.split()
            ready = float(imported) + float(warmed) + float(clicks)
            verdict = "ok" if ready < START_BAR_S[label] else "MISSED"
            lines.append(f"  {label:<6} {float(imported):7.2f} {float(warmed):8.2f} {float(clicks):7.2f} {ready:7.2f} | "
                         + (f"loaded before the first click" if at_once == "True" else
                            f"compiled in the background, serving after {float(compiled):.1f} s") +
                         f"  (bar < {START_BAR_S[label]:g} s: {verdict})")
    lines.append("  ready = import + warm_up + first clicks: what the first visitor waits for.")
    return lines


def main() -> None:
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 9")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"threads for every library (default {THREADS})")
    parser.add_argument("--skip-first-start", action="store_true", help="skip the cold/warm start measurement")
    parser.add_argument("--single-channel", action="store_true",
                        help="only the single-channel tables against cv2 (wall-clock medians and CPU time)")
    parser.add_argument("--layer", action="store_true", help="only the batched layer against PyTorch")
    arguments = parser.parse_args()
    repeats = 3 if arguments.quick else 9
    THREADS = arguments.threads
    sys.path.insert(0, str(ROOT))
    set_threads()
    from kernels import warm_up

    warm_up()
    import numba

    from kernels._config import VECTOR_LANES
    from kernels._jit import WEIGHT_GRAD_TAPS, WIDE_BLOCK_VECTORS
    from kernels._warm import cpu_model

    print(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__} "
          f"({numba.config.THREADING_LAYER} threads: {THREADS}); load average {os.getloadavg()[0]:.1f}")
    print(f"Engine for this CPU: vectors of {VECTOR_LANES} float32, forward register blocks of 4 kernels x "
          f"{WIDE_BLOCK_VECTORS} vectors, weight gradient 4 kernels x {WEIGHT_GRAD_TAPS} taps")
    print()
    sections = (single_channel_table, single_channel_cpu_lines, large_kernel_lines, pooling_lines, layer_lines)
    if arguments.single_channel:
        sections = sections[:2]
    if arguments.layer:
        sections = (layer_lines,)
    for section in sections:
        print("\n".join(section(repeats)))
        print(f"(load average {os.getloadavg()[0]:.1f})")
        print()
    if arguments.single_channel or arguments.layer:
        return
    print("\n".join(memory_lines()))
    if not arguments.skip_first_start:
        print()
        print("\n".join(first_start_lines()))


if __name__ == "__main__":
    main()
