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
