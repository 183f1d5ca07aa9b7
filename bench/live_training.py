"""Benchmark: the "Watch it learn" lesson's training as the app runs it, and what it costs a class.

Default: 200 steps of batch 32 on 64 x 64 patches, from random kernels, in a TrainingRun's worker
thread with the app's settings (model/live.py: one engine thread per training, the held-out AUC
measured every 25 steps, a snapshot published after each step). Prints the one-time cost of cutting
the lesson's patches (once per server process), then the wall time of each run from Start to
Finished and their median, against the bar of 10 s. Run: ``python -m bench.live_training``
(``--repeats N``, ``--steps N``, ``--batch N``, ``--threads N``).

``--classroom``: bench/classroom.py's class (30 students on the convolution lesson) on one server,
first alone, then while one more session trains (a headless Chromium tab on the lesson page, which
restarts its training whenever it finishes); prints both p95s and their ratio, against the bar of
1.5. Needs bench/classroom.py and Chromium; extra arguments after ``--`` go to bench/classroom.py.

Numbers depend on the machine and on what else runs on it: quote them with both.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS_BAR_S = 10.0
CLASSROOM_BAR = 1.5


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (else what platform knows), and the core count."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.partition(':')[2].strip()}, {os.cpu_count()} cores"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def time_runs(steps, batch, repeats):
    """Prepare the lesson's patches once, then time ``repeats`` runs; returns the seconds of each run."""
    from model import live

    started = time.perf_counter()
    live.lesson_data()
    print(f"Cutting the lesson's patches (once per server process): {time.perf_counter() - started:.1f} s")
    seconds = []
    for repeat in range(repeats):
        settings = live.LiveSettings(steps=steps, batch_size=batch, seed=repeat)
        started = time.perf_counter()
        run = live.lesson_run(settings)
        snapshot = run.wait_until(lambda snapshot: not snapshot.active, 3600)
        wall = time.perf_counter() - started
        if snapshot.status != "finished":
            raise RuntimeError(f"run {repeat + 1} ended {snapshot.status}: {snapshot.error}")
        seconds.append(wall)
        print(f"  run {repeat + 1}: {wall:.2f} s ({1000 * wall / steps:.1f} ms a step with its "
              f"{len(snapshot.auc_values)} AUC measurements; loss {snapshot.losses[:10].mean():.3f} -> "
              f"{snapshot.losses[-10:].mean():.3f}, AUC {snapshot.auc_values[0]:.3f} -> {snapshot.auc_values[-1]:.3f})")
    return seconds


def drive_training(url):
    """Keep one session of the lesson page training until this process is stopped (for --classroom)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(600_000)
        page.goto(f"{url}/learning")
        page.get_by_role("button", name="Start training").wait_for()
        steps = page.locator("input[aria-label='Steps']")
        steps.focus()
        page.keyboard.press("End")  # the most steps: fewer restarts
        page.wait_for_function("element => element.getAttribute('aria-valuetext') === '1000'",
                               arg=steps.element_handle())
        while True:
            page.get_by_role("button", name="Start training").click()
            page.get_by_text(re.compile(r"^Training: step")).first.wait_for()
            print("training", flush=True)
            page.get_by_text(re.compile(r"^Finished: step")).first.wait_for(timeout=0)
            page.get_by_role("button", name="Reset").first.click()


def _class_p95(classroom_main, arguments):
    """Run bench/classroom.py's main with ``arguments``; its printed report and the p95 of all interactions."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        classroom_main(arguments)
    report = output.getvalue()
    match = re.search(r"^all interactions\s+\d+\s+[0-9.]+\s+([0-9.]+)", report, re.MULTILINE)
    return report, float(match.group(1)) if match else float("nan")


def classroom(extra_arguments):
    try:
        from bench._common import app_server
        from bench.classroom import main as classroom_main
    except ImportError as error:
        print(f"--classroom skipped: it runs bench/classroom.py, which is not here ({error}).")
        return
    if shutil.which("chromium") is None:
        print("--classroom skipped: the training session is a headless Chromium tab, and chromium is not installed.")
        return
    with app_server() as server:
        arguments = ["--url", server.url, "--pid", str(server.pid), *extra_arguments]
        report, alone = _class_p95(classroom_main, arguments)
        print("=== The class alone\n" + report)
        driver = subprocess.Popen([sys.executable, "-m", "bench.live_training", "--drive", server.url], cwd=REPO,
                                  stdout=subprocess.PIPE, text=True)
        try:
            if driver.stdout.readline().strip() != "training":
                raise RuntimeError("the training session did not start")
            report, training = _class_p95(classroom_main, arguments)
            print("=== The class while one session trains\n" + report)
        finally:
            driver.terminate()
            driver.wait(30)
    print(f"p95 of every interaction: {alone:.0f} ms alone, {training:.0f} ms while one session trains: "
          f"{training / alone:.2f}x (bar: {CLASSROOM_BAR:g}x)")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m bench.live_training", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="engine threads per training (default: the app's, CONVSCOPE_TRAINING_THREADS or 1)")
    parser.add_argument("--classroom", action="store_true", help="the class's p95 alone and beside one training")
    parser.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)  # the --classroom training session
    arguments = parser.parse_args(argv)
    if arguments.threads is not None:
        os.environ["CONVSCOPE_TRAINING_THREADS"] = str(arguments.threads)  # read when model.live is imported
    if arguments.drive:
        drive_training(arguments.drive)
        return
    print(f"Machine: {cpu_model()}, load average {os.getloadavg()[0]:.2f} at start")
    if arguments.classroom:
        classroom(extra)
        return
    from model.live import TRAINING_SLOTS, TRAINING_THREADS

    print(f"Live training: {arguments.steps} steps of batch {arguments.batch} on 64 x 64 patches from random "
          f"kernels, {TRAINING_THREADS} engine thread(s) per training, {TRAINING_SLOTS} training slot(s)")
    seconds = time_runs(arguments.steps, arguments.batch, arguments.repeats)
    median = statistics.median(seconds)
    verdict = "met" if median < STEPS_BAR_S or arguments.steps != 200 else "MISSED"
    print(f"Median {median:.2f} s for {arguments.steps} steps ({1000 * median / arguments.steps:.1f} ms a step); "
          f"bar: 200 steps under {STEPS_BAR_S:g} s: {verdict}")


if __name__ == "__main__":
    main()
