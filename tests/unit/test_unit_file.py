"""The systemd unit, sysusers.d and tmpfiles.d files, checked by systemd's own tools."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "medianalysed.service"
SYSUSERS = ROOT / "packaging" / "sysusers.d" / "medianalysed.conf"
TMPFILES = ROOT / "packaging" / "tmpfiles.d" / "medianalysed.conf"
INSTALLED_BINARY = "/usr/bin/medianalysed"
SRV = "srv/medianalysed"

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package: systemd)"
)


def settings(text: str) -> dict[str, list[str]]:
    """Every Key=value of the unit, by key, in order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return settings(UNIT.read_text())


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """A copy of the unit whose binary exists: a stub standing in for /usr/bin/medianalysed."""
    stub = tmp_path / "bin" / "medianalysed"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    copy = tmp_path / "medianalysed.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(stub)))
    return copy


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


@needs_systemd_analyze
def test_systemd_analyze_verify_reports_nothing(verifiable_unit: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = run(SYSTEMD_ANALYZE, "verify", "--man=no", str(verifiable_unit))

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@needs_systemd_analyze
def test_verify_would_catch_a_missing_binary(tmp_path: Path) -> None:
    # Guards the test above: verify must look at ExecStart paths, or the stub proves nothing.
    copy = tmp_path / "medianalysed.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(tmp_path / "absent")))
    assert SYSTEMD_ANALYZE is not None

    result = run(SYSTEMD_ANALYZE, "verify", "--man=no", str(copy))

    assert result.returncode != 0
    assert "is not executable" in result.stderr


@needs_systemd_analyze
def test_hardening_keeps_the_exposure_level_low(verifiable_unit: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    # --threshold takes tenths: 20 = "2.0", which systemd rates OK.
    result = run(
        SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=20", str(verifiable_unit)
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_no_line_has_a_trailing_comment() -> None:
    for number, line in enumerate(UNIT.read_text().splitlines(), start=1):
        if line.startswith(("#", ";")):
            continue
        assert not re.search(r"\s[#;]", line), f"line {number} has a trailing comment: {line!r}"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "all"),
        (
            "ExecStartPre",
            f"{INSTALLED_BINARY} config check --config /etc/medianalysed/medianalysed.toml",
        ),
        ("ExecStart", f"{INSTALLED_BINARY} run --config /etc/medianalysed/medianalysed.toml"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("WatchdogSec", "30"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "74 78"),
        ("User", "medianalysed"),
        ("Group", "medianalysed"),
        ("StateDirectory", "medianalysed"),
        ("ConfigurationDirectory", "medianalysed"),
        ("ReadWritePaths", "/srv/medianalysed"),
        ("TimeoutStopSec", "90"),
        ("KillMode", "mixed"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallArchitectures", "native"),
        ("MemoryHigh", "7G"),
        ("MemoryMax", "8500M"),
        ("OOMPolicy", "continue"),
        ("WantedBy", "multi-user.target"),
    ],
)
def test_key_setting(unit: dict[str, list[str]], key: str, expected: str) -> None:
    assert unit.get(key) == [expected]


def test_system_call_filter_starts_from_the_service_set(unit: dict[str, list[str]]) -> None:
    assert unit["SystemCallFilter"][0] == "@system-service"


def test_workers_may_still_cap_their_own_memory(unit: dict[str, list[str]]) -> None:
    denied, allowed = unit["SystemCallFilter"][-2:]  # allowed again after ~@resources
    assert "@resources" in denied.split()
    assert {"setrlimit", "prlimit64"} <= set(allowed.split())


def test_sysusers_and_tmpfiles_create_the_user_and_the_drop_tree(tmp_path: Path) -> None:
    sysusers, tmpfiles = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    if sysusers is None or tmpfiles is None or os.geteuid() != 0:
        pytest.skip("needs systemd-sysusers and systemd-tmpfiles, run as root (to chown)")
    (tmp_path / "etc").mkdir()

    # With --root, a file argument is read inside the root, so feed the files on stdin.
    for tool, config in ((sysusers, SYSUSERS), (tmpfiles, TMPFILES)):
        extra = ["--create"] if tool == tmpfiles else []
        result = subprocess.run(
            [tool, f"--root={tmp_path}", *extra, "-"],
            input=config.read_text(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    passwd = (tmp_path / "etc" / "passwd").read_text()
    [entry] = [line for line in passwd.splitlines() if line.startswith("medianalysed:")]
    uid = int(entry.split(":")[2])
    modes = {
        name: (tmp_path / SRV / name).stat() for name in ("inbox", "outbox", "archive", "failed")
    }
    assert {name: st.st_uid for name, st in modes.items()} == dict.fromkeys(modes, uid)
    assert stat.S_IMODE(modes["inbox"].st_mode) == 0o2770
    assert stat.S_IMODE(modes["outbox"].st_mode) == 0o2750
    assert "system.posix_acl_default" in os.listxattr(tmp_path / SRV / "inbox")


def test_systemd_does_not_restart_the_exits_a_restart_cannot_fix(
    unit: dict[str, list[str]],
) -> None:
    from medianalysed.errors import ExitCode

    prevented = {int(code) for value in unit["RestartPreventExitStatus"] for code in value.split()}
    assert {ExitCode.CONFIG, ExitCode.STATE_UNUSABLE} <= prevented
    # A database found damaged while running is repaired by the next start: restart it.
    assert ExitCode.STATE_REPAIR not in prevented
    assert ExitCode.FAILURE not in prevented
