"""The `aiops` entry point is the runtime's (runtime/cli.py): its commands work without the
compile extra, the compiler adds its commands through the `aiops.commands` entry point, a
compiler command without its extra says which extra to install, and a broken plug-in does not
take the runtime's commands down."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests._build import ROOT

# What a plain install lacks: an import of these fails, as it would without the compile extra
# (PyYAML is there: uvicorn[standard] brings it).
BLOCKED = ("hydra", "omegaconf", "jinja2", "pandera", "pandas", "sklearn", "skl2onnx", "matplotlib",
           "croniter")
PRELUDE = f"""
import sys
class _Plain:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Plain())
# Only the test's distribution declares commands: the checkout's own editable install declares the
# compiler's entry point too, which a plain install of the runtime does not have.
import importlib.metadata as _md, os as _os
_all = _md.entry_points
def _ours(**kw):
    site = _os.environ["AIOPS_TEST_SITE"]
    return [e for e in _all(**kw) if str(getattr(e.dist, "_path", "")).startswith(site)]
_md.entry_points = _ours
from aiops.runtime.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
assert not heavy, heavy
sys.exit(rc)
"""


def _dist(tmp_path: Path, **providers: str) -> Path:
    """A site folder whose only distribution declares `providers` in the aiops.commands group."""
    info = tmp_path / "site" / "plugin_dist-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[aiops.commands]\n" + "".join(f"{k} = {v}\n" for k, v in providers.items()))
    return tmp_path / "site"


def _aiops(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "AIOPS_TEST_SITE": str(site)}
    return subprocess.run([sys.executable, "-c", PRELUDE, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)


def _commands(site: Path) -> list[str]:
    """The command names the parser offers, from argparse's own 'invalid choice' message."""
    res = _aiops(site, "no-such-command")
    assert res.returncode == 2 and "(choose from " in res.stderr, res.stderr
    return [c.strip(" '") for c in res.stderr.split("(choose from ")[1].rstrip(")\n").split(",")]


def test_runtime_commands_on_a_plain_install_and_the_compiler_added_by_entry_point(tmp_path):
    site = _dist(tmp_path, compiler="aiops.compiler.cli:register")
    res = _aiops(site, "verify", "generated/flight_delays", "--insecure-dev")
    assert res.returncode == 0 and "ok: generated/flight_delays" in res.stderr + res.stdout, res.stderr
    assert {"verify", "serve", "check", "compile", "approve"} <= set(_commands(site))
    res = _aiops(site, "check", "specs/flight_delays")
    assert res.returncode == 2, res.stderr
    assert res.stderr == ("error: 'aiops check' needs the 'compile' extra, which is not installed (no module named "
                          "'hydra'): pip install 'aiops[compile]'\n")


def test_without_the_compiler_entry_point_the_runtime_stands_alone(tmp_path):
    site = _dist(tmp_path)
    assert _commands(site) == ["verify", "keys", "serve", "audit", "decrypt", "score", "monitor"]


def test_a_broken_plugin_leaves_the_runtime_commands_working(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "broken_plugin.py").write_text("import sklearn\ndef register(sub):\n    pass\n")
    site = _dist(tmp_path, broken="broken_plugin:register")
    res = _aiops(site, "verify", "generated/flight_delays", "--insecure-dev")
    assert res.returncode == 0, res.stderr
    assert ("warning: the commands of broken_plugin:register (aiops.commands entry point 'broken') are left out: "
            "ModuleNotFoundError: No module named 'sklearn'") in res.stderr


def test_python_m_compiler_cli_has_every_command():
    res = subprocess.run([sys.executable, "-m", "aiops.compiler.cli", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    for cmd in ("verify", "serve", "score", "monitor", "audit", "decrypt", "check", "compile", "retrain", "approve"):
        assert f" {cmd} " in res.stdout, cmd
