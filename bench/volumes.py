"""Benchmark of 3-D convolution and of what the volumes lesson computes per click.

Run by hand: ``python -m bench.volumes`` (``--threads N``, default 2). Prints median times and never
fails: it reports. The bar (issue 19): a 3 x 3 x 3 conv3d on a 64 x 256 x 256 volume under 0.5 s, set
beside scipy.ndimage.correlate (one thread: SciPy's filters do not use more) and PyTorch's conv3d on the
same threads (skipped if PyTorch is not installed). Quote the figures with the machine line it prints.
"""

from __future__ import annotations

import os
import sys

from bench.engine import THREADS, median_ms, set_threads  # first: caps NumPy's BLAS threads before NumPy loads

import numpy as np  # noqa: E402

BAR_MS = 500.0
SHAPE = (64, 256, 256)  # slices, rows, columns


def conv3d_lines(repeats):
    import scipy.ndimage

    import kernels

    rng = np.random.default_rng(0)
    volume = rng.random(SHAPE, dtype=np.float32)
    kernel = rng.standard_normal((3, 3, 3)).astype(np.float32)
    lines = [f"3 x 3 x 3 kernel on a {' x '.join(map(str, SHAPE))} volume (slices x rows x columns), float32, "
             f"median ms:"]
    same = median_ms(lambda: kernels.conv3d(volume, kernel, padding="same"), repeats)
    valid = median_ms(lambda: kernels.conv3d(volume, kernel), repeats)
    scipy_ms = median_ms(lambda: scipy.ndimage.correlate(volume, kernel, mode="constant"), repeats)
    expected = scipy.ndimage.correlate(volume.astype(np.float64), kernel.astype(np.float64), mode="constant")
    error = float(np.max(np.abs(kernels.conv3d(volume, kernel, padding="same") - expected)))
    lines.append(f"  engine conv3d, padding 'same' {same:8.1f}   ({'ok' if same < BAR_MS else 'MISSED'}: bar {BAR_MS:.0f})")
    lines.append(f"  engine conv3d, no padding     {valid:8.1f}")
    lines.append(f"  scipy.ndimage.correlate       {scipy_ms:8.1f}   scipy/engine {scipy_ms / same:5.2f}"
                 f"   (largest difference from SciPy in float64: {error:.1e})")
    try:
        import torch
    except ImportError:
        lines.append("  torch not installed: comparison skipped")
        return lines
    x = torch.from_numpy(volume)[None, None]
    w = torch.from_numpy(kernel)[None, None]

    def torch_conv3d():
        with torch.no_grad():
            torch.nn.functional.conv3d(x, w, padding=1)

    torch_ms = median_ms(torch_conv3d, repeats)
    lines.append(f"  torch conv3d, padding 1       {torch_ms:8.1f}   torch/engine {torch_ms / same:5.2f}"
                 f"   (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    return lines


def lesson_lines(repeats):
    """What a click on the volumes page computes, on the shipped chest CT (48 x 128 x 128)."""
    from kernels import conv3d, conv3d_trace, make_kernel3d
    from lessons import volumes
    from scans import apply_window, read_sample
    from views.components.step_player import conv_payload

    scan = read_sample("Chest CT volume")
    volume, _ = volumes.working_volume(apply_window(scan.pixels, *scan.default_window))
    kernel = make_kernel3d("laplacian of gaussian")
    bounds = volumes.region_bounds(volume.shape, (24, 64, 64), 4, 6)
    region = volume[tuple(slice(start, stop) for start, stop in bounds)]
    lines = [f"The lesson on the chest CT ({' x '.join(map(str, volume.shape))}), median ms:"]
    timings = (
        ("window the volume", lambda: volumes.working_volume(apply_window(scan.pixels, *scan.default_window))),
        ("3 x 3 x 3 kernel over the volume", lambda: conv3d(volume, kernel, padding="same", padding_mode="replicate")),
        ("trace + player data, 4 x 6 x 6 region", lambda: conv_payload(conv3d_trace(region, kernel, padding="same"),
                                                                       titles={}, memory="bench")),
        ("2-D and 3-D 5 x 5 (x 5) Laplacian of Gaussian", lambda: volumes.flat_and_deep(volume, 5)),
        ("two stages of conv, ReLU, 2 x 2 x 2 pooling", lambda: volumes.run_stages(volume, kernel, 2)),
        ("ball and tube", volumes.sphere_and_tube),
    )
    for name, call in timings:
        lines.append(f"  {name:46s} {median_ms(call, repeats):8.1f}")
    return lines


def main():
    from kernels import warm_up
    from kernels._warm import cpu_model

    quick = "--quick" in sys.argv
    set_threads()
    warm_up(wait=True)
    print(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"{THREADS} threads for the engine and torch")
    repeats = 3 if quick else 9
    for line in conv3d_lines(repeats) + lesson_lines(repeats):
        print(line)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
