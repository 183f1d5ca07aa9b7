"""What the classroom benchmarks share: the students' interactions, a server of their own, /proc figures.

bench/classroom.py (students over the websocket) and bench/browser_clicks.py (one student in Chromium)
do the same interactions on each page (PAGE_INTERACTIONS), start `streamlit run app.py` on a free port
(or use one given by URL), read the server's memory and CPU time from /proc (no psutil), describe the
machine in one line and summarise latencies with the same percentiles.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 180  # a cold start compiles the Numba engine once
# The pages a simulated student can open: name -> st.navigation's url path ("" is the default page).
PAGE_PATHS = {"home": "", "input": "input", "convolution": "convolution", "stacks": "stacks",
              "detection": "detection", "classifier": "classifier", "volumes": "volumes"}


# ---------------------------------------------------------------------------------------------------
# What a student does on each page


class Interaction(NamedTuple):
    """One thing a student does on a page: ``action`` on the widget with user key ``key``.

    Actions: "click" a button; "choose" another option (selectbox, radio, select slider, slider);
    "toggle" a toggle; "click_image" / "drag_image" on a picture (views/components/picture); "set" another
    value of the control named ``control`` in the control panel ``key`` (views/components/control_panel);
    "rerun" the page as it is (the R key). ``weight``: how often it is picked relative to the others.
    """

    name: str
    key: str
    action: str
    weight: float = 1.0
    control: str = ""


# Each lesson's main controls, read from views/*.py.
PAGE_INTERACTIONS = {
    "convolution": (
        # Next, Previous, Play and the scrubber run in the browser's step player: no server message.
        Interaction("kernel", "conv_kernel_panel", "set", 2, control="conv_kernel_name"),
        Interaction("region size", "conv_region_panel", "set", control="conv_region_size"),
        Interaction("stride", "conv_settings_panel", "set", control="conv_stride"),
        Interaction("image click", "conv_click", "click_image"),
    ),
    "stacks": (
        Interaction("number of stages", "stacks_stage_count", "choose"),
        Interaction("stage 1 kernel size", "stacks_s0_size", "choose"),
        Interaction("stage 1 pooling", "stacks_s0_pool", "choose"),
        Interaction("cell click", "stacks_rf_click", "click_image", 2),
    ),
    "detection": (
        Interaction("box drag", "det_drag", "drag_image", 2),
        Interaction("kernel kind", "det_kind", "choose"),
        Interaction("search in", "det_target", "choose"),
        Interaction("score", "det_score", "choose"),
        Interaction("two-class click", "cls_drag", "click_image"),
    ),
    "classifier": (
        Interaction("image click", "clf_click", "click_image", 2),
        Interaction("add lesion", "clf_add", "click"),
        Interaction("layer stage", "clf_stage", "choose"),
        Interaction("kernel", "clf_kernel", "choose"),
    ),
    "input": (
        Interaction("window preset", "scan_preset", "choose"),
        Interaction("normalisation", "input_normalisation", "choose"),
        Interaction("resize", "input_use_resize", "toggle"),
        Interaction("clipping colours", "input_show_clipping", "toggle"),
    ),
    "home": (Interaction("rerun", "", "rerun"),),
    "volumes": (
        # The voxel-by-voxel player runs in the browser; the first tab (planes) is the one open.
        Interaction("plane click", "vol3d_planes_click", "click_image", 2),
        Interaction("slice", "volume_slice", "choose"),
        Interaction("window preset", "volume_preset", "choose"),
    ),
}
OPEN_PAGE = "open page"  # how the first load of the page is named in the reports


class Unavailable(Exception):
    """The interaction's widget is not on the page, or is disabled: a student could not do it."""


def pick_interaction(interactions, rng, unavailable):
    """A weighted random choice among ``interactions`` whose names are not in ``unavailable``."""
    choices = [interaction for interaction in interactions if interaction.name not in unavailable]
    if not choices:
        return None
    return rng.choices(choices, weights=[interaction.weight for interaction in choices])[0]


# ---------------------------------------------------------------------------------------------------
# The server


def server_flag_arguments(flags):
    """Command-line arguments of ``streamlit run`` for flags written "section.option=value".

    >>> server_flag_arguments(["runner.postScriptGC=false"])
    ['--runner.postScriptGC', 'false']
    """
    arguments = []
    for flag in flags:
        name, separator, value = flag.partition("=")
        if not separator or "." not in name:
            raise SystemExit(f"--server-flag wants section.option=value (e.g. runner.postScriptGC=false), "
                             f"got {flag!r}")
        arguments += [f"--{name.removeprefix('--')}", value]
    return arguments


def flag_value(flags, name, default):
    """The value given for option ``name`` among "section.option=value" flags, else ``default``."""
    for flag in flags:
        option, _, value = flag.partition("=")
        if option.removeprefix("--") == name:
            return value
    return default


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(base_url, server, log_path):
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"streamlit exited early with code {server.returncode}; its log: {log_path}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.5)
    raise SystemExit(f"streamlit did not answer {base_url}/_stcore/health in {SERVER_START_TIMEOUT_S} s; "
                     f"its log: {log_path}")


class RunningServer(NamedTuple):
    """A server to benchmark: its base URL, its process id (None when only a URL was given), its command."""

    url: str
    pid: int | None
    command: str


@contextlib.contextmanager
def app_server(url=None, flags=(), pid=None):
    """Yield a RunningServer: the one at ``url``, or ``streamlit run app.py`` started here on a free port.

    ``flags`` ("section.option=value") are passed to the server this function starts. The started server
    runs in a process group of its own and is stopped on exit; its output goes to a temporary log file,
    deleted unless something failed.
    """
    if url is not None:
        yield RunningServer(url.rstrip("/"), pid, f"given: {url}")
        return
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false", *server_flag_arguments(flags)]
    log = tempfile.NamedTemporaryFile("w", prefix="convscope-bench-server-", suffix=".log", delete=False)
    with log:
        server = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_healthy(base_url, server, log.name)
        yield RunningServer(base_url, server.pid, "streamlit run app.py " + " ".join(command[5:]))
    except BaseException:
        print(f"The server's log is kept: {log.name}", file=sys.stderr)
        raise
    else:
        os.unlink(log.name)
    finally:
        _stop(server)


def _stop(server):
    # Only the group this module started: the server and anything it started.
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)


# ---------------------------------------------------------------------------------------------------
# The server's memory and CPU time, from /proc


def memory_mib(pid):
    """{"VmRSS": MiB now, "VmHWM": peak MiB} of process ``pid``."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(rest.split()[0]) / 1024  # the file gives kB
    return figures


def cpu_seconds(pid):
    """User + system CPU seconds used so far by process ``pid`` (all its threads)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name, in parentheses, may hold spaces: fields are counted after its closing one.
    fields = text[text.rindex(")") + 2:].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])  # utime and stime, fields 14 and 15
    return (user_ticks + system_ticks) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------
# The machine and the summaries


def _cpu_model():
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def machine_line():
    """One line: CPU model, cores, load average, Python and Streamlit versions."""
    load = os.getloadavg()[0]
    return (f"Machine: {_cpu_model()}, {os.cpu_count()} cores, load average {load:.2f} at start; "
            f"Python {platform.python_version()}, Streamlit {metadata.version('streamlit')}")


class Summary(NamedTuple):
    """Latencies in milliseconds: how many, median, 95th percentile, largest."""

    count: int
    p50: float
    p95: float
    largest: float

    @classmethod
    def of(cls, seconds):
        milliseconds = 1000.0 * np.asarray(seconds, dtype=float)
        if milliseconds.size == 0:
            return cls(0, float("nan"), float("nan"), float("nan"))
        return cls(int(milliseconds.size), float(np.percentile(milliseconds, 50)),
                   float(np.percentile(milliseconds, 95)), float(milliseconds.max()))
