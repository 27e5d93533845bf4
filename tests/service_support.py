"""Real services for the API, dashboard, report and PostgreSQL tests: one shared run, a throw-away PostgreSQL
cluster, Debian's Chromium, free loopback ports.

Tests that need PostgreSQL or Chromium skip with a reason when the program is missing on a developer's
machine; with ``SHOPSEG_REQUIRE_SERVICES=1`` (set by ``.ci/run``) they fail instead, so CI cannot pass by
skipping them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]

_RUNS: dict[str, Path] = {}


def services_required() -> bool:
    return os.environ.get("SHOPSEG_REQUIRE_SERVICES", "") not in ("", "0")


def unavailable(reason: str) -> None:
    """Skip (developer machine) or fail (CI, SHOPSEG_REQUIRE_SERVICES=1) because a service is missing."""
    if services_required():
        pytest.fail(f"{reason} (SHOPSEG_REQUIRE_SERVICES is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def shared_run(factory: pytest.TempPathFactory) -> Path:
    """The pipeline on the bundled sample, built once per test session (every test file that asks shares it).
    Tests only read it."""
    if "demo" not in _RUNS:
        import shopseg

        out = factory.mktemp("shared-run") / "demo"
        shopseg.run([shopseg.sample_path()], out)
        _RUNS["demo"] = out
    return _RUNS["demo"]


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers (any HTTP status), or fail with the server's output."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"server exited with {proc.returncode} before answering {url}:\n{out[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> str:
    """Stop a server started by a test (terminate, then kill after 15 s); returns what it printed."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=15)
    return (out or b"").decode(errors="replace")


# ------------------------------------------------------------------------------------------------ Chromium


def chromium_path() -> str:
    """Debian's chromium (or SHOPSEG_CHROMIUM); unavailable() when there is none."""
    for cand in (os.environ.get("SHOPSEG_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    unavailable("Chromium not found (apt-get install chromium, or set SHOPSEG_CHROMIUM)")
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------ PostgreSQL


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextlib.contextmanager
def postgres_dsn() -> Iterator[str]:
    """A DSN to a PostgreSQL database for the tests: SHOPSEG_TEST_PG_DSN when set, else a throw-away cluster
    started with initdb/pg_ctl on a free loopback port (as the ``postgres`` user when running as root, since
    the server refuses root) and removed afterwards."""
    given = os.environ.get("SHOPSEG_TEST_PG_DSN")
    if given:
        yield given
        return
    bindir = _pg_bin()
    if bindir is None:
        unavailable("PostgreSQL server programs (initdb, pg_ctl) not found: apt-get install postgresql")
        return
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="shopseg-pg-"))
    if as_root:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            unavailable("running as root and there is no 'postgres' user to run the PostgreSQL server as")
            return
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    port = free_port()
    log = root / "server.log"
    try:
        subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "shopseg",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        opts = f"-k {root} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        text = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        if log.exists():
            text += log.read_text(errors="replace")
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start a PostgreSQL test cluster: {text[-3000:]}")
    try:
        yield f"postgresql://shopseg@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
