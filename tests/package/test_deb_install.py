"""The Debian package, installed for real: dpkg -i, the installed unit, binary and config, a
folder through an inbox, then dpkg -r and dpkg --purge and what each leaves behind.

Runs as root, as CI does (`make test` builds the package and sets $MEDIANALYSED_DEB). The
fixture purges the package and removes what the installation created, even on failure, so
the machine is left as it was.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.harness import DaemonProcess, write_config

DEB_ENV = "MEDIANALYSED_DEB"
PACKAGE = "medianalysed"
USER = "medianalysed"
BINARY = Path("/usr/bin/medianalysed")
UNIT = Path("/lib/systemd/system/medianalysed.service")
CONFIG = Path("/etc/medianalysed/medianalysed.toml")
STATE = Path("/var/lib/medianalysed")
SRV = Path("/srv/medianalysed")
ENABLED = Path("/etc/systemd/system/multi-user.target.wants/medianalysed.service")
MASKED = Path("/etc/systemd/system/medianalysed.service")
SHIPPED = [
    BINARY,
    Path("/usr/lib/medianalysed/medianalysed"),
    UNIT,
    Path("/usr/lib/sysusers.d/medianalysed.conf"),
    Path("/usr/lib/tmpfiles.d/medianalysed.conf"),
    CONFIG,
    Path("/usr/share/man/man1/medianalysed.1.gz"),
    Path("/usr/share/doc/medianalysed/copyright"),
    Path("/usr/share/doc/medianalysed/changelog.gz"),
]
# deb-systemd-helper's records of what the package enabled or masked.
HELPER_STATE = Path("/var/lib/systemd/deb-systemd-helper-enabled")
HELPER_MASKED = Path("/var/lib/systemd/deb-systemd-helper-masked")

pytestmark = pytest.mark.skipif(
    not os.environ.get(DEB_ENV),
    reason=f"${DEB_ENV} names no package: `make test` builds one (make deb) and sets it",
)


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout)


def ok(*args: str) -> str:
    done = run(*args)
    assert done.returncode == 0, f"{' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def package_status() -> str:
    """dpkg's status of the package: installed, config-files or not-installed."""
    done = run("dpkg-query", "-W", "-f=${db:Status-Status}", PACKAGE)
    return done.stdout if done.returncode == 0 else "not-installed"


def user_exists() -> bool:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return False
    return True


def group_exists() -> bool:
    try:
        grp.getgrnam(USER)
    except KeyError:
        return False
    return True


@pytest.fixture
def deb() -> Iterator[Path]:
    """The package to install, on a machine that has none of it; afterwards, none again."""
    package = Path(os.environ[DEB_ENV])
    assert os.geteuid() == 0, "the install test runs as root (as CI does)"
    assert package.is_file(), f"{DEB_ENV}={package}: no such file (make deb builds it)"
    assert package_status() == "not-installed", (
        f"{PACKAGE} is already installed here: the test would remove it (dpkg --purge first)"
    )
    had = {path: path.exists() for path in (STATE, SRV, CONFIG.parent)}
    had_user, had_group = user_exists(), group_exists()
    try:
        yield package
    finally:
        run("dpkg", "--purge", PACKAGE)
        for path, existed in had.items():
            if not existed:
                shutil.rmtree(path, ignore_errors=True)
        if not had_user and user_exists():
            run("userdel", USER)
        if not had_group and group_exists():
            run("groupdel", USER)
        for leftover in (MASKED, ENABLED, HELPER_STATE / "medianalysed.service.dsh-also"):
            if leftover.is_symlink() or leftover.exists():
                leftover.unlink()


def running_installed_binary() -> list[str]:
    """PIDs whose executable is the installed build (a process we may not inspect is not)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe == "/usr/lib/medianalysed/medianalysed":
            found.append(pid)
    return found


def drop_a_folder(root: Path) -> dict[str, object]:
    """The installed binary analyses a folder renamed into an inbox under `root`."""
    config = write_config(root)
    staging = root / "staging" / "holiday"
    staging.mkdir(parents=True)
    gradient = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    gradient.save(staging / "a.jpg", quality=90)
    (staging / "copy-of-a.jpg").write_bytes((staging / "a.jpg").read_bytes())
    Image.radial_gradient("L").convert("RGB").save(staging / "b.png")
    daemon = DaemonProcess(root, config, command=[str(BINARY)]).start()
    try:
        staging.rename(daemon.inbox / "holiday")
        summary = daemon.summary("holiday")
        assert (daemon.archive / "holiday" / "a.jpg").is_file()
        return summary
    finally:
        daemon.stop_quietly()


def test_install_use_remove_and_purge(deb: Path, tmp_path: Path) -> None:
    ok("dpkg", "-i", str(deb))

    assert package_status() == "installed"
    for path in SHIPPED:
        assert path.is_file(), f"{path} was not installed"
    assert BINARY.is_symlink()
    assert BINARY.resolve() == Path("/usr/lib/medianalysed/medianalysed")
    assert str(CONFIG) in ok("dpkg-query", "-W", "-f=${Conffiles}", PACKAGE)
    # The maintainer scripts: the user, the tree, the unit enabled but not started.
    assert pwd.getpwnam(USER).pw_dir == str(STATE)
    inbox = SRV / "inbox"
    assert inbox.is_dir()
    assert oct(inbox.stat().st_mode & 0o7777) == "0o2770"
    assert pwd.getpwuid(inbox.stat().st_uid).pw_name == USER
    assert STATE.is_dir()
    assert ENABLED.is_symlink()
    assert ENABLED.resolve() == UNIT.resolve()
    assert not running_installed_binary(), "the package started the daemon"

    assert ok("systemd-analyze", "verify", "--man=no", str(UNIT)) == ""
    assert ok(str(BINARY), "--version").startswith("medianalysed ")
    assert "configuration ok" in ok(str(BINARY), "config", "check", "--config", str(CONFIG))

    summary = drop_a_folder(tmp_path)
    assert summary["status"] == "completed"
    assert summary["counts"]["total"] == 3  # type: ignore[index]

    # remove: the programs go; the configuration, the state and /srv stay.
    (STATE / "kept.txt").write_text("state\n", encoding="utf-8")
    (SRV / "outbox" / "result.json").write_text("{}\n", encoding="utf-8")
    ok("dpkg", "-r", PACKAGE)

    assert package_status() == "config-files"
    for path in (BINARY, UNIT, Path("/usr/lib/medianalysed")):
        assert not path.is_symlink(), f"{path} stayed after remove"
        assert not path.exists(), f"{path} stayed after remove"
    assert CONFIG.is_file()
    assert (STATE / "kept.txt").is_file()
    assert (SRV / "outbox" / "result.json").is_file()
    assert user_exists()

    # purge: the configuration and the state go; users' files in /srv stay, empty dirs go.
    ok("dpkg", "--purge", PACKAGE)

    assert package_status() == "not-installed"
    assert not CONFIG.parent.exists()
    assert not STATE.exists()
    assert (SRV / "outbox" / "result.json").is_file()
    assert not (SRV / "inbox").exists()
    assert not (SRV / "archive").exists()
    assert not ENABLED.is_symlink()
    assert not MASKED.is_symlink()
