"""The test suite's own guards (tests/conftest.py) do their job: a hung test fails within its
hang_guard limit, and a test that writes into the repository's .aiops/ fails, naming the file."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

HUNG = '''
import threading, pytest
pytestmark = pytest.mark.usefixtures("hang_guard")
HANG_LIMIT_S = 1
def test_hangs():
    threading.Event().wait()  # forever, without a timeout
def test_quick():
    pass
'''
WRITES = '''
from pathlib import Path
def test_writes_a_registry():
    Path(__file__).resolve().parent.parent.joinpath(".aiops").mkdir()
    Path(__file__).resolve().parent.parent.joinpath(".aiops", "registry.db").write_bytes(b"x")
def test_after():
    pass
'''


def test_a_hung_test_fails_at_its_limit_and_a_write_into_aiops_fails(tmp_path):
    """One pytest session (under a copy of tests/conftest.py, in a repository of its own) runs both."""
    (tmp_path / "tests").mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "tests" / "conftest.py")
    shutil.copy(Path(__file__).with_name("genai_fixtures.py"), tmp_path / "tests" / "genai_fixtures.py")
    (tmp_path / "tools").mkdir()  # which conftest.py imports (the session's local LLM, started only when asked)
    shutil.copy(Path(__file__).parent.parent / "tools" / "local_llm.py", tmp_path / "tools" / "local_llm.py")
    (tmp_path / "tests" / "test_hung.py").write_text(HUNG)
    (tmp_path / "tests" / "test_writes.py").write_text(WRITES)
    t = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "tests/test_hung.py::test_hangs ran longer than 1 s (hang_guard)" in res.stdout
    assert ("tests/test_writes.py::test_writes_a_registry wrote into the repository: .aiops/registry.db; use "
            "tmp_path, or AIOPS_REGISTRY for a build's registry") in res.stdout
    # the session goes on; the write is reported once (at the test's teardown), not by every later test
    assert res.stdout.rstrip().splitlines()[-1].startswith("1 failed, 3 passed, 1 error in "), res.stdout
    assert time.monotonic() - t < 60
