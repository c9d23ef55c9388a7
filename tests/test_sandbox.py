"""grader.sandbox: what a cage isolates on this machine, proven by commands that try to escape.

These tests run Python (not TensorFlow) in cages; each takes well under a second. They expect
the machine the suite runs on (root with CAP_SYS_ADMIN, a pids cgroup: the "root" mode); the
degraded modes are checked through an unprivileged uid in test_an_ordinary_account_*.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from grader import sandbox
from grader.sandbox import (
    Completed,
    Isolation,
    Limits,
    base_env,
    isolation,
    run_isolated,
)

SMALL = Limits(address_space_mb=1024, cpu_seconds=20, max_processes=32, file_size_mb=4, wall_seconds=30)


def py(tmp_path: Path, code: str, limits: Limits = SMALL, timeout: float | None = 20) -> Completed:
    work = tmp_path / "cage"
    return run_isolated([sys.executable, "-c", textwrap.dedent(code)], workdir=work, env=base_env(), limits=limits,
                        timeout=timeout)


def test_this_machine_gives_the_root_mode() -> None:
    iso = isolation()
    assert iso.method == "root"
    assert iso.network_isolated is True
    assert "65534" in iso.user
    assert "pids cgroup" in iso.processes
    assert iso.missing == ("reading world-readable host files (system, repository, data)",
                           "system calls (no seccomp filter)", "CPU share (only per-process CPU time is limited)")
    assert "NOT isolated: reading world-readable host files" in iso.describe()


def test_values_round_trip_through_dicts() -> None:
    limits = Limits(address_space_mb=1, cpu_seconds=2, max_processes=3, file_size_mb=4, wall_seconds=5)
    assert Limits.from_dict(limits.to_dict()) == limits
    iso = isolation(limits)
    assert Isolation.from_dict(iso.to_dict()) == iso
    assert "at most 3 processes" in iso.processes
    done = Completed(0, "out", "err", False, None, iso, 1.5, 2)
    assert Completed.from_dict(done.to_dict()) == done


REPO = Path(__file__).resolve().parent.parent


def _under_tmp() -> set[str]:
    """First components of the code paths the cage re-mounts read-only when they are under /tmp
    (a checkout in /tmp, as CI may make)."""
    paths = [REPO, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    return {p.relative_to("/tmp").parts[0] for p in paths if p.is_relative_to("/tmp")}


def repo_denial() -> str:
    """How a write into the checkout fails in the cage: a dropped uid (PermissionError), or, for a
    checkout under /tmp that the cage mounts read-only, a read-only filesystem (OSError)."""
    return "OSError" if REPO.is_relative_to("/tmp") else "PermissionError"


def test_runs_as_nobody_in_its_own_folder_with_a_private_home_and_tmp(tmp_path: Path) -> None:
    done = py(tmp_path, """
        import os
        print(os.getuid(), os.getgid(), os.getcwd(), os.environ["HOME"], os.getpid())
        print(sorted(os.listdir("/tmp")))
        open(os.path.join(os.environ["HOME"], "note.txt"), "w").write("mine")
    """)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    work = tmp_path / "cage"
    assert first.split() == ["65534", "65534", str(work), str(work / "home"), "2"]  # PID 2: the cage's init is 1
    # the host's /tmp is not visible: a fresh one holds only the path down to the cage's folder
    # (and, when the checkout or Python lives under /tmp, the read-only path down to it)
    assert sorted(eval(second)) == sorted({work.relative_to("/tmp").parts[0]} | _under_tmp())
    assert (work / "home" / "note.txt").read_text() == "mine"
    assert done.isolation.method == "root"


def test_writes_outside_its_folder_do_not_reach_the_host(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)  # even a world-writable host folder: the cage does not see it
    home_target = Path.home() / "grader-sandbox-escape.txt"
    repo_target = Path(__file__).resolve().parent.parent / "grader-sandbox-escape.txt"
    targets = [outside / "x.txt", home_target, repo_target, Path("/var/tmp/grader-sandbox-escape.txt")]
    done = py(tmp_path, f"""
        for target in {[str(t) for t in targets]!r}:
            try:
                open(target, "w").write("escaped")
                print("wrote", target)
            except OSError as exc:
                print("blocked", type(exc).__name__)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["blocked FileNotFoundError", "blocked PermissionError",
                                        f"blocked {repo_denial()}", f"wrote {targets[3]}"]  # its private /var/tmp
    assert not any(t.exists() for t in targets)
    assert list(outside.iterdir()) == []


def test_no_network_not_even_the_hosts_loopback(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    done = py(tmp_path, f"""
        import socket
        for address in [("127.0.0.1", {port}), ("1.1.1.1", 53)]:
            try:
                socket.create_connection(address, timeout=2)
                print("connected")
            except OSError as exc:
                print(exc.errno)
    """)
    assert done.stdout.split() == ["101", "101"]  # ENETUNREACH: the namespace has no usable interface
    with pytest.raises(socket.timeout):
        server.accept()
    server.close()


def test_a_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    start = time.monotonic()
    done = py(tmp_path, """
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time\\nwhile True:\\n    open('beat', 'a').write('.')\\n    time.sleep(0.05)"])
        time.sleep(60)
    """, timeout=2)
    assert done.timed_out is True
    assert done.killed_by == signal.SIGKILL
    assert time.monotonic() - start < 6
    beat = tmp_path / "cage" / "beat"
    size = beat.stat().st_size
    time.sleep(0.4)
    assert beat.stat().st_size == size  # the grandchild died with the cage


def test_a_fork_bomb_is_stopped_at_the_process_cap(tmp_path: Path) -> None:
    done = py(tmp_path, """
        import os, time
        count = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                count += 1
        except OSError as exc:
            print(count, exc.errno)
    """, timeout=20)
    count, errno = map(int, done.stdout.split())
    assert errno == 11  # EAGAIN
    assert count < SMALL.max_processes
    assert done.fork_failures >= 1
    assert done.timed_out is False  # the sleeping children died with the cage when the parent ended


@pytest.mark.parametrize("code, expected", [
    ("b = bytearray(1500 * 1024 * 1024)", "MemoryError"),
    ("open('big', 'wb').write(b'x' * (8 * 1024 * 1024))", "OSError 27"),  # EFBIG
])
def test_memory_and_file_size_limits(tmp_path: Path, code: str, expected: str) -> None:
    done = py(tmp_path, f"""
        try:
            {code}
            print("no limit")
        except MemoryError:
            print("MemoryError")
        except OSError as exc:
            print("OSError", exc.errno)
    """)
    assert done.stdout.strip() == expected


def test_the_cpu_limit_kills_a_busy_loop(tmp_path: Path) -> None:
    done = py(tmp_path, "while True:\n    pass", limits=Limits(cpu_seconds=1, max_processes=32, file_size_mb=4))
    assert done.timed_out is False
    assert done.killed_by in (signal.SIGXCPU, signal.SIGKILL)


def test_the_cgroup_is_removed_afterwards(tmp_path: Path) -> None:
    before = {p.name for p in sandbox.PIDS_V1.iterdir() if p.name.startswith("grader-")}
    py(tmp_path, "print('hi')")
    after = {p.name for p in sandbox.PIDS_V1.iterdir() if p.name.startswith("grader-")}
    assert after == before


def test_the_wrapper_refuses_a_bad_command_line() -> None:
    done = subprocess.run([sys.executable, "-m", "grader.sandbox", "--oops"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m grader.sandbox --spec JSON -- CMD")


@pytest.fixture
def open_folder():
    """A folder under /tmp that uid 1000 can reach (pytest's own tmp folders are root-only)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="grader-uid1000-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_an_ordinary_account_gets_a_user_namespace_and_is_told_what_is_missing(open_folder: Path) -> None:
    """uid 1000 (no passwd entry needed; util-linux setpriv) runs the probe and a cage with the
    system Python; the grader package is found by path."""
    home = open_folder / "home"
    home.mkdir()
    os.chown(home, 1000, 1000)
    script = open_folder / "probe.py"
    script.write_text(textwrap.dedent(f"""
        import sys, tempfile
        sys.path.insert(0, {str(Path(sandbox.__file__).parent.parent)!r})
        from grader.sandbox import isolation, run_isolated, Limits, base_env
        iso = isolation()
        print(iso.method, iso.network_isolated)
        print(iso.describe())
        done = run_isolated([sys.executable, "-c", "import os, socket\\n"
                             "try:\\n    socket.create_connection(('127.0.0.1', 1), timeout=1)\\n"
                             "except OSError as e:\\n    print(os.getuid(), e.errno)"],
                            workdir=tempfile.mkdtemp(dir={str(home)!r}), env=base_env(), limits=Limits())
        print(done.stdout.strip())
    """))
    python = shutil.which("python3", path="/usr/bin") or sys.executable
    done = subprocess.run(["setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups", python, str(script)],
                          capture_output=True, text=True, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, timeout=60)
    lines = done.stdout.splitlines()
    assert lines[0] == "userns True", done.stderr
    assert "your own uid 1000 (not dropped: needs root)" in lines[1]
    assert "NOT isolated: writing anywhere else your account can write" in lines[1]
    assert lines[2] == "1000 101"
