"""Run what deploy/compose.yaml runs, without a container engine: N replicas of the app and HAProxy in front.

    python -m deploy.local --replicas 2 --port 8500    # prints the URLs; Ctrl-C stops everything
    python -m deploy.local stop --port 8500            # stops that run from another terminal

It runs the image's own commands (deploy/Dockerfile): ``python -m kernels.warm_up`` once, so the Numba
cache is ready, then ``python -m streamlit run app.py --server.headless=true`` per replica on ports
PORT+1 ... PORT+N of 127.0.0.1 (reachable only through the balancer), waits until each answers
/_stcore/health, and starts Debian's HAProxy on PORT of every network interface (``--address`` to choose
one), with the same rules as compose (deploy/haproxy.cfg) and a list of servers written for these ports.
With at least one CPU core per replica, each replica runs on cores of its own (``replica_cores``).
Every process it starts runs in a process group of its own; their ids are written to a state file so
that ``stop`` ends exactly those, and nothing else, by id.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "haproxy.cfg"
# The image's build and start commands (deploy/Dockerfile runs them as "python ..."; tests/test_deploy.py
# checks that both say the same).
WARM_UP_COMMAND = ("-m", "kernels.warm_up")
STREAMLIT_COMMAND = ("-m", "streamlit", "run", "app.py", "--server.headless=true")
START_TIMEOUT_S = 180  # for a replica or HAProxy to answer /_stcore/health
STOP_TIMEOUT_S = 15
HAPROXY_MISSING = ("HAProxy is not installed: on Debian or Ubuntu run 'apt-get install -y haproxy' "
                   "(macOS: 'brew install haproxy'), then try again.")


class DeployError(Exception):
    """Something the person starting the replicas can act on: the message says what and what to do."""


def haproxy_path():
    """HAProxy's executable, or None. Debian installs it in /usr/sbin, which a normal user's PATH may lack."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/local/sbin:/usr/sbin")


def replica_command(port):
    """The command line of one replica listening on 127.0.0.1:``port``."""
    return [sys.executable, *STREAMLIT_COMMAND, "--server.address=127.0.0.1", f"--server.port={port}"]


def servers_config(ports):
    """HAProxy's backend for replicas on 127.0.0.1 at ``ports``: replica1, replica2, ... each with its cookie."""
    lines = ["# Written by python -m deploy.local; the rules are in deploy/haproxy.cfg.", "backend replicas"]
    for number, port in enumerate(ports, start=1):
        lines.append(f"    server replica{number} 127.0.0.1:{port} cookie replica{number}")
    return "\n".join(lines) + "\n"


def replica_cores(replicas, cores=None):
    """The CPU cores each replica may run on: an equal share of its own while there is at least one core per
    replica, else None for each (the OS spreads them). ``cores``: those this process may use (default: all).

    A replica runs its Python one thread at a time; pinned to a core of its own it keeps that core's caches
    and hands its lock between threads on one core. On the 2-core machine, 60 students through two pinned
    replicas waited p95 0.10-0.19 s against 0.18-0.33 s unpinned (README, "A course of 300").
    """
    if cores is None:
        if not hasattr(os, "sched_getaffinity"):  # macOS, Windows: no pinning
            return [None] * replicas
        cores = os.sched_getaffinity(0)
    cores = sorted(cores)
    share = len(cores) // replicas
    if share == 0:
        return [None] * replicas
    return [frozenset(cores[number * share:(number + 1) * share]) for number in range(replicas)]


def state_path(port):
    """Where the run on ``port`` keeps its processes' ids, for ``stop``."""
    return Path(tempfile.gettempdir()) / f"convscope-local-{port}.json"


def port_is_free(port):
    """True if a server could listen on ``port`` of 127.0.0.1 now."""
    with socket.socket() as probe:
        # As the servers bind: connections of an earlier run still closing (TIME_WAIT) do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _healthy(url):
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    return False


class LocalCluster:
    """N replicas and HAProxy on this machine, as a context manager: ``with LocalCluster(2, 8500) as c: c.url``.

    The balancer listens on ``address`` (all interfaces by default, as Streamlit does; "127.0.0.1" keeps
    it to this machine). Logs go to ``log_dir`` (a new temporary folder unless given): replica1.log, ...,
    haproxy.log, beside the list of servers written for HAProxy.
    """

    def __init__(self, replicas, port, *, address="0.0.0.0", log_dir=None):
        if replicas < 1:
            raise DeployError(f"--replicas must be at least 1, got {replicas}.")
        self.port = port
        self.replica_ports = [port + number for number in range(1, replicas + 1)]
        self.url = f"http://127.0.0.1:{port}"
        self.address = address
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix=f"convscope-local-{port}-"))
        self.processes = {}  # name -> Popen, in the order started

    # -- starting ------------------------------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        haproxy = haproxy_path()
        if haproxy is None:
            raise DeployError(HAPROXY_MISSING)
        busy = [port for port in [self.port, *self.replica_ports] if not port_is_free(port)]
        if busy:
            raise DeployError(f"Port(s) {', '.join(map(str, busy))} already in use on 127.0.0.1: stop what "
                              f"uses them (python -m deploy.local stop --port {self.port}, if it is an "
                              "earlier run) or choose another --port.")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._warm_up()
        for number, (port, cores) in enumerate(zip(self.replica_ports, replica_cores(len(self.replica_ports))),
                                               start=1):
            self._launch(f"replica{number}", replica_command(port), cores=cores)
        self._write_state()
        for number, port in enumerate(self.replica_ports, start=1):
            self._wait_until_healthy(f"replica{number}", f"http://127.0.0.1:{port}")
        servers = self.log_dir / "haproxy-servers.cfg"
        servers.write_text(servers_config(self.replica_ports))
        environment = dict(os.environ, CONVSCOPE_LISTEN=f"{self.address}:{self.port}")
        self._launch("haproxy", [haproxy, "-db", "-f", str(RULES), "-f", str(servers)], environment)
        self._write_state()
        self._wait_until_healthy("haproxy", self.url)

    def _warm_up(self):
        # The image does this at build time; here it is a cache load (about a second) unless the code changed,
        # and then a compile of about a minute that the command announces on the terminal.
        done = subprocess.run([sys.executable, *WARM_UP_COMMAND], cwd=REPO, check=False)
        if done.returncode != 0:
            raise DeployError(f"python -m kernels.warm_up failed with exit code {done.returncode} (its output is "
                              "above); the replicas were not started.")

    def _launch(self, name, command, environment=None, *, cores=None):
        """Start ``command`` as process ``name``; ``cores``: the CPU cores it and its threads may use."""
        pin = None
        if cores is not None:
            # The engine's thread pool sized to the cores the replica has, set before its first thread starts.
            environment = dict(environment or os.environ, NUMBA_NUM_THREADS=str(len(cores)))

            def pin():
                os.sched_setaffinity(0, cores)
        with open(self.log_dir / f"{name}.log", "w") as log:
            self.processes[name] = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, env=environment,
                                                    start_new_session=True, preexec_fn=pin)

    def _wait_until_healthy(self, name, url):
        process = self.processes[name]
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DeployError(f"{name} exited with code {process.returncode} while starting; "
                                  f"its log: {self.log_dir / (name + '.log')}")
            if _healthy(url):
                return
            time.sleep(0.25)
        raise DeployError(f"{name} did not answer {url}/_stcore/health within {START_TIMEOUT_S} s; "
                          f"its log: {self.log_dir / (name + '.log')}")

    def _write_state(self):
        state = {"url": self.url, "log_dir": str(self.log_dir),
                 "processes": [{"name": name, "pid": process.pid, "command": process.args}
                               for name, process in self.processes.items()]}
        state_path(self.port).write_text(json.dumps(state, indent=1))

    # -- running and stopping --------------------------------------------------------------------

    def first_exit(self):
        """(name, exit code) of a process that has ended, or None while all run."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop(self):
        """Stop the balancer first (no new requests), then the replicas; each by its process group's id."""
        for name in reversed(list(self.processes)):
            _stop_group(self.processes[name])
        self.processes.clear()
        with contextlib.suppress(FileNotFoundError):
            state_path(self.port).unlink()


def _stop_group(process):
    # The group this module started with start_new_session: the process and anything it started.
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)


def _command_line(pid):
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    return None


def stop_recorded(port):
    """``stop``: end the processes a run on ``port`` recorded, each only if its id still runs its command.

    Returns the names of those stopped. A process id the system has since given to another program is
    left alone.
    """
    path = state_path(port)
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeployError(f"No run of deploy.local on port {port} is recorded ({path} does not exist).") from None
    # Removed first: the run being stopped sees it gone and knows the stop was asked for.
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    stopped = []
    for entry in reversed(state["processes"]):
        pid, command = entry["pid"], [part.encode() for part in entry["command"]]
        try:
            if _command_line(pid) == command and os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGTERM)
                stopped.append((entry["name"], pid))
        except ProcessLookupError:
            pass  # it ended meanwhile
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for name, pid in stopped:
        # An ended process has no command line (a zombie's is empty until its parent reaps it).
        while _command_line(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _command_line(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    return [name for name, _ in stopped]


# ---------------------------------------------------------------------------------------------------


def _raise_keyboard_interrupt(signal_number, frame):
    raise KeyboardInterrupt


def network_address():
    """This machine's address on its network (what students type), or None without a network.

    A UDP socket "connected" to a private address sends nothing; it only makes the system pick the
    interface, and so the address, it would use.
    """
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))
        return probe.getsockname()[0]
    return None


def run(replicas, port, address):
    """Start, print the URLs, and keep running until Ctrl-C (or SIGTERM, or one of the processes ends)."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    cores = replica_cores(replicas)
    where = ("each on cores of its own: " + ", ".join(",".join(map(str, sorted(share))) for share in cores)
             if cores[0] is not None else "sharing the CPU cores (fewer cores than replicas)")
    print(f"Starting {replicas} replica(s) on ports {port + 1}-{port + replicas} ({where}) and HAProxy on {port} ...",
          flush=True)
    try:
        with LocalCluster(replicas, port, address=address) as cluster:
            pids = ", ".join(f"{name} {process.pid}" for name, process in cluster.processes.items())
            print(f"ConvScope is ready: {cluster.url}", flush=True)
            if address == "0.0.0.0" and (network := network_address()) is not None:
                print(f"Students in the same network: http://{network}:{port}")
            print(f"Processes: {pids}; logs in {cluster.log_dir}. Ctrl-C here, or "
                  f"'python -m deploy.local stop --port {port}' elsewhere, stops them all.", flush=True)
            while (ended := cluster.first_exit()) is None:
                time.sleep(0.5)
            if not state_path(port).exists():
                print("Stopped by 'python -m deploy.local stop'.")
                return 0
            name, code = ended
            print(f"{name} exited with code {code} (its log: {cluster.log_dir / (name + '.log')}); "
                  "stopping the others.", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("Stopped every replica and HAProxy.")
        return 0


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", choices=("start", "stop"), default="start",
                        help="start (the default; runs until Ctrl-C) or stop a run started elsewhere")
    parser.add_argument("--replicas", type=int, default=2, help="app processes behind the balancer (default 2)")
    parser.add_argument("--port", type=int, default=8500,
                        help="the balancer's port; replicas use the next ones (default 8500)")
    parser.add_argument("--address", default="0.0.0.0",
                        help="where the balancer listens (default 0.0.0.0, every interface; 127.0.0.1: "
                             "this machine only)")
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    try:
        if arguments.action == "stop":
            names = stop_recorded(arguments.port)
            print(f"Stopped: {', '.join(names) if names else 'nothing was still running'}.")
            return 0
        return run(arguments.replicas, arguments.port, arguments.address)
    except DeployError as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
