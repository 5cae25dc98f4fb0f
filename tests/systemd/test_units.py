"""The unit files in systemd/: `systemd-analyze verify` says nothing about them (it exits 0
even on unknown keys, so its output is what is checked), and they say what DESIGN.md
asks of them."""
import re
import shutil
import subprocess

import pytest

from harness import REPO, UNITCORN_BIN

pytestmark = pytest.mark.unitcorn_only

UNITS = REPO / "systemd"


def _installed_copies(tmp_path):
    """The units as installed for an instance `demo`, ExecStart= pointing at the binary
    under test (verify refuses an ExecStart= that does not exist)."""
    out = []
    for unit in sorted(UNITS.iterdir()):
        text = unit.read_text().replace("/usr/bin/unitcorn", str(UNITCORN_BIN))
        name = unit.name.replace("@.", "@demo.")
        path = tmp_path / name
        path.write_text(text)
        out.append(path)
    return out


def test_systemd_analyze_verify_prints_nothing(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    units = _installed_copies(tmp_path)
    assert {u.name for u in units} >= {"unitcorn@demo.service", "unitcorn@demo.socket"}
    r = subprocess.run([analyze, "verify", "--man=no"] + [str(u) for u in units],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)


def test_verify_would_catch_a_bad_key(tmp_path):
    """The check above can fail: an unknown key makes verify print."""
    (tmp_path / "bad.service").write_text(
        "[Service]\nType=notify\nExecStart=%s\nBogusKey=1\n" % UNITCORN_BIN)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "bad.service")],
                       capture_output=True, text=True, timeout=60)
    assert "BogusKey" in r.stdout + r.stderr


def _settings(text, section):
    body = re.search(r"^\[%s\]\n(.*?)(?=^\[|\Z)" % section, text, re.S | re.M).group(1)
    return dict(line.split("=", 1) for line in body.splitlines()
                if "=" in line and not line.startswith("#"))


def test_service_unit_says_what_the_design_asks():
    svc = _settings((UNITS / "unitcorn@.service").read_text(), "Service")
    assert svc["Type"] == "notify"
    assert svc["KillSignal"] == "SIGQUIT" and svc["KillMode"] == "mixed"
    assert svc["ExecReload"] == "/usr/bin/unitcorn reload $MAINPID"
    assert svc["NotifyAccess"] == "exec"
    assert "/etc/unitcorn/%i.toml" in svc["ExecStart"]
    assert int(svc["TimeoutStopSec"]) > 30          # above graceful_timeout's default
    assert "WatchdogSec" in svc and svc["Restart"] == "on-failure"
    for key in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ProtectHome"):
        assert key in svc, key
    sock = _settings((UNITS / "unitcorn@.socket").read_text(), "Socket")
    assert sock["FileDescriptorName"] == "http" and "ListenStream" in sock
