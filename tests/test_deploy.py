"""deploy/: the image runs what the local script runs, the balancer's files are valid, and stop ends only its own."""

import json
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from deploy import local

DEPLOY = local.REPO / "deploy"
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def dockerfile_instructions(name):
    """The arguments of every ``name`` instruction in deploy/Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1].strip() for line in joined.splitlines() if line.split(None, 1)[:1] == [name]]


def test_the_image_builds_and_starts_with_the_local_scripts_commands():
    runs = dockerfile_instructions("RUN")
    assert "pip install --no-cache-dir -r requirements.txt" in runs
    assert " ".join(["python", *local.WARM_UP_COMMAND]) in runs
    (command,) = dockerfile_instructions("CMD")
    assert json.loads(command) == ["python", *local.STREAMLIT_COMMAND, "--server.address=0.0.0.0",
                                   "--server.port=8501"]
    assert local.replica_command(8601)[1:] == [*local.STREAMLIT_COMMAND, "--server.address=127.0.0.1",
                                                "--server.port=8601"]
    (healthcheck,) = dockerfile_instructions("HEALTHCHECK")
    assert "http://127.0.0.1:8501/_stcore/health" in healthcheck


def test_the_warm_up_runs_as_the_user_that_serves_and_writes_where_that_user_can():
    # Numba keeps a cache only in a directory it can write: compiled as root into a root-owned tree, the
    # engine would be compiled again by the app's user at its first visitor.
    lines = DOCKERFILE.splitlines()
    user_line = next(index for index, line in enumerate(lines) if line.startswith("USER "))
    warm_up_line = next(index for index, line in enumerate(lines) if line == "RUN python -m kernels.warm_up")
    assert user_line < warm_up_line
    user = lines[user_line].split()[1]
    assert user.isdigit(), "Kubernetes' runAsNonRoot can check only a numeric user"
    assert f"--uid {user}" in DOCKERFILE and 'chown convscope "$NUMBA_CACHE_DIR"' in DOCKERFILE
    assert f"runAsUser: {user}" in (DEPLOY / "kubernetes.yaml").read_text()


def test_the_build_context_keeps_what_the_app_reads():
    ignored = {line.strip() for line in (local.REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    imported = {"app.py", "requirements.txt", ".streamlit", "views", "lessons", "viz", "kernels", "model", "scans",
                "sample_images"}
    assert not ignored & imported
    assert "**/__pycache__" in ignored  # a developer's Numba cache, compiled for another processor


def test_uploads_as_large_as_the_app_allows_pass_the_kubernetes_ingress():
    config = tomllib.loads((local.REPO / ".streamlit" / "config.toml").read_text())
    manifest = (DEPLOY / "kubernetes.yaml").read_text()
    body_size = re.search(r'proxy-body-size: "(\d+)m"', manifest)
    assert body_size and int(body_size.group(1)) >= config["server"]["maxUploadSize"]


def test_compose_mounts_the_one_rules_file_and_its_server_list():
    compose = (DEPLOY / "compose.yaml").read_text()
    for mounted in re.findall(r"- \./(\S+):/usr/local/etc/haproxy/", compose):
        assert (DEPLOY / mounted).is_file(), mounted
    assert "./haproxy.cfg:" in compose and "./haproxy-compose-servers.cfg:" in compose


def test_servers_config_names_each_replica_and_its_cookie():
    assert local.servers_config([8501, 8502]).splitlines()[1:] == [
        "backend replicas",
        "    server replica1 127.0.0.1:8501 cookie replica1",
        "    server replica2 127.0.0.1:8502 cookie replica2",
    ]


@pytest.mark.skipif(local.haproxy_path() is None, reason=local.HAPROXY_MISSING)
@pytest.mark.parametrize("servers", ["local", "compose"])
def test_haproxy_accepts_the_rules_with_either_list_of_servers(tmp_path, servers):
    if servers == "local":
        server_file = tmp_path / "servers.cfg"
        server_file.write_text(local.servers_config([8501, 8502]))
    else:
        server_file = DEPLOY / "haproxy-compose-servers.cfg"
    checked = subprocess.run([local.haproxy_path(), "-c", "-f", str(local.RULES), "-f", str(server_file)],
                             capture_output=True, text=True, env={"CONVSCOPE_LISTEN": "127.0.0.1:8500"})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "WARNING" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr


def _sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    # Popen can return while the kernel is still finishing the exec: /proc/<pid>/cmdline is empty for a
    # moment (CI on a loaded machine once read it so and the stop test failed). Wait for the command line.
    deadline = time.monotonic() + 10
    while local._command_line(process.pid) != [part.encode() for part in process.args] and time.monotonic() < deadline:
        time.sleep(0.01)
    return process


def test_stop_ends_the_recorded_processes_and_leaves_a_reused_process_id_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "state_path", lambda port: tmp_path / f"state-{port}.json")
    ours, stranger = _sleeper(), _sleeper()
    try:
        # The stranger's id is recorded with another command line: as if the system had given it to
        # another program since the run was recorded.
        local.state_path(8500).write_text(json.dumps({"processes": [
            {"name": "replica1", "pid": ours.pid, "command": ours.args},
            {"name": "replica2", "pid": stranger.pid, "command": [sys.executable, "-m", "streamlit", "run", "app.py"]},
        ]}))
        assert local.stop_recorded(8500) == ["replica1"]
        assert ours.wait(timeout=15) == -signal.SIGTERM
        time.sleep(0.2)
        assert stranger.poll() is None
        assert not local.state_path(8500).exists()
        with pytest.raises(local.DeployError, match="No run of deploy.local on port 8500"):
            local.stop_recorded(8500)
    finally:
        for process in (ours, stranger):
            process.kill()
            process.wait()


@pytest.mark.parametrize(("replicas", "cores", "expected"), [
    (2, {0, 1}, [{0}, {1}]),
    (1, {0, 1}, [{0, 1}]),
    (2, {0, 1, 2, 3, 4, 5, 6, 7}, [{0, 1, 2, 3}, {4, 5, 6, 7}]),
    (3, {2, 5, 7, 9}, [{2}, {5}, {7}]),
    (3, {0, 1}, [None, None, None]),
])
def test_each_replica_gets_cores_of_its_own_while_there_are_enough(replicas, cores, expected):
    assert local.replica_cores(replicas, cores) == expected
