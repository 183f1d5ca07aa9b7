"""Reruns the small engine tests with NUMBA_DISABLE_JIT=1, so the jitted loops run as plain Python.

That lets coverage.py (and a debugger) see inside kernels/_jit.py and checks that the loops are
correct Python, not only correct Numba.  Only tests with "small" in their name run: plain-Python
loops are about a thousand times slower.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_small_engine_tests_pass_with_jit_disabled():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "small",
         "tests/test_kernels.py", "tests/test_kernels_trace.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
