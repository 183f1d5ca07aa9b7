"""Benchmark: template-matching response maps on a 512 x 512 scan, kernels 8 x 8 to 64 x 64 (target < 0.5 s).

Prints the median time of lessons.matching.response_map (normalised and plain) and, for reference,
OpenCV's cv2.matchTemplate (TM_CCOEFF_NORMED, the same score) and scikit-image's match_template,
with the ratio to ours. Run: ``python -m bench.detection`` (add ``--repeats N`` for more runs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from lessons.matching import cut_box, response_map, structured_boxes
from scans import apply_window, read_sample

TARGET_SECONDS = 0.5
KERNEL_SIZES = (8, 16, 32, 48, 64)


def _median_seconds(function, repeats):
    function()  # warm-up: Numba cache load, FFT plan, first-touch allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _optional_references():
    references = {}
    try:
        import cv2

        references["cv2.matchTemplate"] = lambda image, template: cv2.matchTemplate(
            image, template, cv2.TM_CCOEFF_NORMED)
    except ImportError:
        pass
    try:
        from skimage.feature import match_template

        references["skimage match_template"] = match_template
    except ImportError:
        pass
    return references


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    arguments = parser.parse_args(argv)

    scan = read_sample("Abdomen CT slice")
    image = apply_window(scan.pixels, *scan.default_window).astype(np.float32)
    assert image.shape == (512, 512), image.shape
    references = _optional_references()

    print(f"Response maps on a {image.shape[0]} x {image.shape[1]} CT slice, median of {arguments.repeats} runs")
    header = f"{'kernel':>8} {'normalised':>11} {'plain':>9}" + "".join(f" {name:>24}" for name in references)
    print(header)
    worst = 0.0
    for size in KERNEL_SIZES:
        template = cut_box(image, structured_boxes(image, (size, size), count=1)[0])
        normalised = _median_seconds(lambda: response_map(image, template), arguments.repeats)
        plain = _median_seconds(lambda: response_map(image, template, normalise=False), arguments.repeats)
        worst = max(worst, normalised, plain)
        row = f"{size:>4}x{size:<3} {normalised * 1000:>9.1f}ms {plain * 1000:>7.1f}ms"
        for function in references.values():
            seconds = _median_seconds(lambda: function(image, template), arguments.repeats)
            row += f" {seconds * 1000:>9.1f}ms (ours x{normalised / seconds:>5.2f})"
        print(row)
    verdict = "within" if worst < TARGET_SECONDS else "OVER"
    print(f"slowest map: {worst * 1000:.1f} ms, {verdict} the {TARGET_SECONDS * 1000:.0f} ms target")
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
