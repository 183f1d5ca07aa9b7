"""``python -m kernels.warm_up``: it says what it is doing before the wait, and after it the time and the CPU."""

import platform

# Not the kernels.warm_up module: importing it would make the package's name kernels.warm_up, which
# app.py calls, the module instead of the function for the rest of the test session.
from kernels import _warm as command


def test_cpu_model_reads_the_model_name_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fma avx2\n\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC\n")
    assert command.cpu_model(cpuinfo) == "AMD EPYC"


def test_cpu_model_falls_back_to_platform_then_to_a_plain_name(tmp_path, monkeypatch):
    without_name = tmp_path / "cpuinfo"
    without_name.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n")  # an ARM server's
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert command.cpu_model(without_name) == "arm"
    assert command.cpu_model(tmp_path / "missing") == "arm"  # macOS and Windows have no /proc/cpuinfo
    monkeypatch.setattr(platform, "processor", lambda: "")  # what most Linux systems return
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert command.cpu_model(tmp_path / "missing") == "an x86_64 processor"
    monkeypatch.setattr(platform, "machine", lambda: "")
    assert command.cpu_model(tmp_path / "missing") == "an unknown processor"


def test_the_command_says_what_it_does_before_the_wait_and_the_time_and_cpu_after(capsys, monkeypatch):
    printed_before_the_wait = []

    def slow_warm_up():
        printed_before_the_wait.append(capsys.readouterr().out)
        return 64.49

    monkeypatch.setattr(command, "warm_up", slow_warm_up)
    monkeypatch.setattr(command, "cpu_model", lambda: "AMD EPYC")
    monkeypatch.setattr(command.os, "cpu_count", lambda: 2)
    command.main()
    before = printed_before_the_wait[0]
    assert "convolution engine" in before and "compiles it once" in before
    assert "about a minute on a 2-core laptop" in before and "seconds" in before
    assert capsys.readouterr().out == "kernels ready in 64.49 s on AMD EPYC (2 cores)\n"
