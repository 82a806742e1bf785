"""Shared fixtures: a private copy of a bundled spec folder that a test may edit; the TEST ONLY
signing key and trusted keys (tests/keys/) for every build and command the tests run."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# the per-installation masking key (runtime/masking.py) of this test session, never the user's
os.environ.setdefault("AIOPS_STATE_DIR", tempfile.mkdtemp(prefix="aiops-test-state-"))
# the ONNX-probe cache (compiler/estimators.py) of this session, not the user's ~/.cache/aiops
os.environ.setdefault("AIOPS_CACHE_DIR", tempfile.mkdtemp(prefix="aiops-test-cache-"))

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
TEST_KEYS = REPO / "tests" / "keys"

# CI's builds are signed with the committed throwaway key and run where only it is trusted
# (tests/keys/README.md); subprocesses inherit both. Tests of other set-ups change them locally.
os.environ["AIOPS_SIGNING_KEY"] = str(TEST_KEYS / "TEST_ONLY_signing.key")
os.environ["AIOPS_TRUSTED_KEYS"] = str(TEST_KEYS / "TEST_ONLY_trusted.keys")
os.environ.pop("AIOPS_TRUSTED_KEY", None)

# The audit log's keys, as a deployment provides them: a server of a spec with
# security.audit_log enabled refuses to start without them (tests/test_audit_log.py).
TEST_LOG_KEY = "11" * 32
TEST_LOG_SIGNING_KEY = "22" * 32
os.environ.setdefault("AIOPS_LOG_KEY", TEST_LOG_KEY)
os.environ.setdefault("AIOPS_LOG_SIGNING_KEY", TEST_LOG_SIGNING_KEY)


class SpecCopy:
    """A copy of specs/<name> (data included) under tmp_path/specs/<name>.

    The test runs with tmp_path as its working directory, so diagnostics name files
    as they would in the repository: ``specs/credit_risk/spec.yaml:42:13``.
    """

    def __init__(self, root: Path, name: str):
        self.name = name
        self.dir = root / "specs" / name
        shutil.copytree(SPECS / name, self.dir)

    @property
    def rel(self) -> str:
        """The folder as given on the command line: specs/<name>."""
        return f"specs/{self.name}"

    def text(self, file: str) -> str:
        return (self.dir / file).read_text(encoding="utf-8")

    def replace(self, file: str, old: str, new: str) -> None:
        """Replace the one occurrence of `old` in `file` (it must occur exactly once)."""
        text = self.text(file)
        count = text.count(old)
        assert count == 1, f"{old!r} occurs {count} times in {self.name}/{file}, expected once"
        (self.dir / file).write_text(text.replace(old, new), encoding="utf-8")

    def where(self, file: str, line_part: str, token: str | None = None) -> str:
        """'specs/<name>/<file>:LINE:COL' of the one line containing `line_part`, COL being
        where `token` (default: the first non-blank character) starts on that line."""
        hits = [(i, ln) for i, ln in enumerate(self.text(file).splitlines(), 1) if line_part in ln]
        assert len(hits) == 1, f"{line_part!r} is on {len(hits)} lines of {self.name}/{file}, expected one"
        line_no, line = hits[0]
        col = (line.index(token) if token is not None else len(line) - len(line.lstrip())) + 1
        return f"{self.rel}/{file}:{line_no}:{col}"


@pytest.fixture
def spec_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Factory: ``spec_copy("credit_risk")`` copies the bundled spec and chdirs to tmp_path.
    Asking again for the same name in the same test gives the same copy."""
    monkeypatch.chdir(tmp_path)
    copies: dict[str, SpecCopy] = {}

    def make(name: str = "credit_risk") -> SpecCopy:
        if name not in copies:
            copies[name] = SpecCopy(tmp_path, name)
        return copies[name]

    return make


from genai_fixtures import llm_base_url  # noqa: E402,F401  (the session's one local LLM server)


# ---------------------------------------------------------------- guards
HANG_LIMIT_S = 180  # default of hang_guard: a test's own work, plus the session's first compile of an example


@pytest.fixture
def hang_guard(request: pytest.FixtureRequest):
    """Fail a test that runs longer than its module's HANG_LIMIT_S (default above) instead of
    letting a hang eat CI's time: SIGALRM raises in the test (its finally blocks run); should that
    not come through, faulthandler dumps every thread's stack and ends the process 30 s later.
    Use with `pytestmark = pytest.mark.usefixtures("hang_guard")`."""
    import faulthandler
    import signal

    limit = int(getattr(request.module, "HANG_LIMIT_S", HANG_LIMIT_S))

    def expired(signum, frame):
        pytest.fail(f"{request.node.nodeid} ran longer than {limit} s (hang_guard): a hang, or raise "
                    "HANG_LIMIT_S in its module", pytrace=True)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    faulthandler.dump_traceback_later(limit + 30, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


_AIOPS_DIR = REPO / ".aiops"


def _aiops_dir_state() -> dict[str, int]:
    # .aiops/bench/ is the benchmarks' (bench/_common.py), which may run beside the tests
    return {p.relative_to(REPO).as_posix(): p.stat().st_mtime_ns for p in _AIOPS_DIR.rglob("*")
            if p.relative_to(_AIOPS_DIR).parts[0] != "bench"} if _AIOPS_DIR.is_dir() else {}


_AIOPS_BASELINE = [_aiops_dir_state()]


@pytest.fixture(autouse=True)
def _nothing_written_into_the_repository(request: pytest.FixtureRequest):
    """Tests keep their registry, quarantine and logs in temporary folders: one that writes into
    the repository's .aiops/ (in a test or in a fixture it set up) fails, naming what changed."""
    def changed(before: dict[str, int], after: dict[str, int]) -> list[str]:
        return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))

    before = _aiops_dir_state()
    if before != _AIOPS_BASELINE[0]:
        diff, _AIOPS_BASELINE[0] = changed(_AIOPS_BASELINE[0], before), before
        pytest.fail(f"written into the repository during the set-up of {request.node.nodeid}'s fixtures (or by a "
                    f"test before): {', '.join(diff)}; use tmp_path, or AIOPS_REGISTRY for a build's registry")
    yield
    after = _aiops_dir_state()
    if after != before:
        _AIOPS_BASELINE[0] = after
        pytest.fail(f"{request.node.nodeid} wrote into the repository: {', '.join(changed(before, after))}; use "
                    "tmp_path, or AIOPS_REGISTRY for a build's registry")
