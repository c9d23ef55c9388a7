"""Run untrusted code (a student's notebook kernel, a submitted model) in a throw-away cage.

What a cage is depends on what this machine allows, probed by :func:`isolation`:

* ``root`` (we are uid 0 with CAP_SYS_ADMIN): new network, mount, PID, IPC and UTS namespaces;
  the command runs as uid/gid 65534 (nobody) with no-new-privileges; fresh size-capped tmpfs on
  /tmp, /var/tmp, /dev/shm, /run/lock and over the invoking user's HOME (the Python installation,
  the import path and the data stay visible read-only); a pids cgroup caps processes *and threads*.
* ``userns`` (an ordinary account with unprivileged user namespaces): the same namespaces and
  tmpfs, but the command keeps the instructor's uid, so files it can write elsewhere stay writable.
* ``rlimits`` (neither): resource limits and a throw-away working dir only.

In every mode the resource limits of :class:`Limits` apply, and the whole process tree dies when
the caller times out. The in-cage half is :mod:`grader.incage`, run by file path (also reachable as
``python -m grader.sandbox --spec JSON -- CMD ...``): it sets everything up and then runs CMD.
:meth:`Cage.wrap` builds that argv, so it can also be a kernelspec's argv. Only the standard
library is imported here.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import incage
from .incage import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    NOBODY,
    PR_SET_PDEATHSIG,
    PRIVATE_TMP,
    _check,
    _libc,
    _map_user,
)

PIDS_V1 = Path("/sys/fs/cgroup/pids")


@dataclass(frozen=True)
class Limits:
    """Resource limits for one caged command.

    The defaults fit a TensorFlow training notebook: TF 2.21 reserves much more *virtual* memory
    than it uses (measured here: ``import keras`` plus a small fit aborts at 2048 MB of address
    space and works at 2560 MB with a 690 MB peak RSS); 8192 MB leaves room for the full data set
    as float64 copies. TF's thread pools count against the process cap (pids cgroup), which is
    why it is 256 and not 20. ``cpu_seconds`` is per process (RLIMIT_CPU); ``wall_seconds`` is
    the default timeout of :func:`run_isolated`.
    """

    address_space_mb: int = 8192
    cpu_seconds: int = 3600
    max_processes: int = 256
    file_size_mb: int = 512
    wall_seconds: int = 1800

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Limits":
        return cls(**{k: int(data[k]) for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Isolation:
    """What a cage on this machine isolates and what it does not, in words a user can check."""

    method: str  # "root" | "userns" | "rlimits"
    network_isolated: bool
    network: str
    user: str
    filesystem: str
    processes: str
    missing: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the CLI: what is in force, then what is not isolated."""
        text = f"sandbox ({self.method}): network {self.network}; user {self.user}; " \
               f"writable {self.filesystem}; processes {self.processes}"
        if self.missing:
            text += "; NOT isolated: " + ", ".join(self.missing)
        return text

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["missing"] = list(self.missing)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Isolation":
        return cls(**{**data, "missing": tuple(data.get("missing", ()))})


@dataclass(frozen=True)
class Completed:
    """How a caged command ended. ``killed_by`` is the signal number that ended it, if any."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    killed_by: int | None
    isolation: Isolation
    seconds: float = 0.0
    fork_failures: int = 0  # forks refused by the process cap (pids cgroup counter)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["isolation"] = self.isolation.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Completed":
        return cls(**{**data, "isolation": Isolation.from_dict(data["isolation"])})


# --------------------------------------------------------------------------- probing

def _probe_unshare(flags: int, *, map_user: bool) -> bool:
    """Fork a child that tries unshare(flags) (and a uid map); True if it worked."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            uid, gid = os.getuid(), os.getgid()
            _check(_libc().unshare(flags), "unshare")
            if map_user:
                _map_user(uid, gid)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _pids_cgroup_usable() -> bool:
    probe = PIDS_V1 / f"grader-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


def isolation(limits: Limits | None = None) -> Isolation:
    """What a cage with ``limits`` (default :class:`Limits`) isolates on this machine."""
    return _with_limits(_probe(), limits or Limits())


@functools.lru_cache(maxsize=1)
def _probe() -> Isolation:
    """Probe (once per process) which isolation this machine allows, and say what is missing."""
    ns = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    tmp = ", ".join(PRIVATE_TMP)
    if os.geteuid() == 0 and _probe_unshare(ns, map_user=False):
        cgroup = _pids_cgroup_usable()
        processes = ("at most {n} processes+threads (pids cgroup), PID namespace" if cgroup else
                     "at most {n} per uid 65534 (RLIMIT_NPROC), PID namespace")
        missing = ["reading world-readable host files (system, repository, data)",
                   "system calls (no seccomp filter)", "CPU share (only per-process CPU time is limited)"]
        if not cgroup:
            missing.append("per-cage process cap (no pids cgroup; RLIMIT_NPROC is shared by all uid-65534 processes)")
        return Isolation("root", True, "isolated (new network namespace, no interfaces)",
                         "uid 65534 (nobody), no new privileges",
                         f"only its working dir and private {tmp} (uid 65534 cannot write elsewhere unless a host "
                         "path is world-writable); the invoking user's HOME is hidden", processes, tuple(missing))
    if _probe_unshare(ns | CLONE_NEWUSER, map_user=True):
        return Isolation("userns", True, "isolated (new network namespace in a user namespace, no interfaces)",
                         f"your own uid {os.getuid()} (not dropped: needs root)",
                         f"its working dir, private {tmp}; your HOME is hidden", "at most {n} (RLIMIT_NPROC), PID namespace",
                         ("writing anywhere else your account can write", "reading world-readable host files",
                          "per-cage process cap (no pids cgroup)", "system calls (no seccomp filter)"))
    return Isolation("rlimits", False, "NOT isolated (no namespaces available)", f"your own uid {os.getuid()}",
                     "everything your account can write", "at most {n} for your whole account (RLIMIT_NPROC)",
                     ("network", "filesystem (reads and writes as your account)", "other processes of your account"))


def _with_limits(iso: Isolation, limits: Limits) -> Isolation:
    return Isolation(**{**iso.to_dict(), "missing": iso.missing,
                        "processes": iso.processes.replace("{n}", str(limits.max_processes))})


# --------------------------------------------------------------------------- the host half

@dataclass(frozen=True)
class CageSpec:
    """Everything the in-cage half needs, passed as JSON on its command line."""

    mode: str
    workdir: str
    home: str
    limits: dict[str, int]
    cgroup: str | None
    hide: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hide": list(self.hide), "expose": list(self.expose)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CageSpec":
        return cls(**{**data, "hide": tuple(data["hide"]), "expose": tuple(data["expose"])})


def _exposed_paths(hidden: Sequence[str], extra: Sequence[str | Path] = ()) -> tuple[str, ...]:
    """Host paths the caged Python needs to read: its installation, import path, grader, data."""
    grader_root = Path(__file__).resolve().parent.parent
    # sys.path[0] is the script's folder or the cwd: never exposed (it may be /tmp or a HOME).
    candidates = [sys.base_prefix, sys.prefix, sys.exec_prefix, str(grader_root), *sys.path[1:], *map(str, extra)]
    seen: list[str] = []
    for item in candidates:
        real = os.path.realpath(item) if item else ""
        if not os.path.isdir(real) or real in seen or any(_within(h, real) for h in hidden):
            continue  # a hidden folder (or "/") itself is never exposed, only things below it
        seen.append(real)
    return tuple(seen)


def _within(path: str, folder: str) -> bool:
    """True if ``path`` is ``folder`` or lies below it."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A small clean environment for caged commands (no credentials, no proxies leak in)."""
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    env.update(extra or {})
    return env


class Cage:
    """A throw-away working dir + HOME, the cgroup, and the argv wrapper for one caged command.

    Use as a context manager; on exit every process still in the cage is killed and the cgroup
    is removed. ``workdir`` is created if missing and is *not* deleted (the caller owns it).
    """

    def __init__(self, workdir: str | Path, limits: Limits, *, expose: Sequence[str | Path] = ()) -> None:
        self.limits = limits
        self.isolation = isolation(limits)
        self.workdir = Path(workdir).resolve()
        self.home = self.workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.cgroup: Path | None = None
        if self.isolation.method == "root":
            _chown_tree(self.workdir, NOBODY, NOBODY)
            self.workdir.chmod(0o755)
            if _pids_cgroup_usable():
                self.cgroup = PIDS_V1 / f"grader-{uuid.uuid4().hex[:12]}"
                self.cgroup.mkdir()
                (self.cgroup / "pids.max").write_text(str(limits.max_processes))
        hide = PRIVATE_TMP if self.isolation.method != "rlimits" else ()
        real_home = os.path.realpath(os.path.expanduser("~"))
        if self.isolation.method != "rlimits" and real_home not in ("/", str(self.workdir)):
            hide = (*hide, real_home)
        self.spec = CageSpec(self.isolation.method, str(self.workdir), str(self.home), limits.to_dict(),
                             str(self.cgroup) if self.cgroup else None, hide, _exposed_paths(hide, expose))

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` inside this cage (usable as a kernelspec argv)."""
        # By file, isolated (-I -S): the in-cage half needs only the standard library, so it runs
        # even where the grader package is not importable, and no PYTHON* variable can steer it.
        return [sys.executable, "-I", "-S", os.path.abspath(incage.__file__), "--spec",
                json.dumps(self.spec.to_dict()), "--", *argv]

    def fork_failures(self) -> int:
        """How many forks the process cap refused (0 without a pids cgroup)."""
        if not self.cgroup:
            return 0
        try:
            for line in (self.cgroup / "pids.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max":
                    return int(value)
        except OSError:
            pass
        return 0

    @property
    def uid(self) -> int | None:
        """The uid the caged command runs as when it differs from ours (root mode), else None."""
        return NOBODY if self.isolation.method == "root" else None

    def own(self, path: str | Path) -> None:
        """Give ``path`` (and what is below it) to the cage's user, for files added after creation."""
        if self.uid is not None:
            _chown_tree(Path(path), self.uid, self.uid)

    def kill_all(self) -> None:
        """SIGKILL every process in the cage's cgroup until it is empty (no-op without one)."""
        if self.cgroup:
            kill_cgroup(self.cgroup)

    def close(self) -> None:
        if self.cgroup:
            kill_cgroup(self.cgroup, remove=True)
            self.cgroup = None

    def __enter__(self) -> "Cage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kill_cgroup(path: str | Path, *, remove: bool = False) -> None:
    """SIGKILL every process of a cage's cgroup until it is empty; then remove it if asked.

    For a caller that lost its :class:`Cage` (a parent killing a stuck child that owned one)."""
    folder = Path(path)
    for _ in range(200):
        try:
            pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        except OSError:
            break
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    for _ in range(50 if remove else 0):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def die_with_parent(parent: int) -> None:
    """Have this process SIGKILLed when the thread that started it exits; exit now if ``parent``
    (the pid that started it) is already gone. For helper processes that own a cage."""
    _check(_libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    if os.getppid() != parent:
        os._exit(1)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.lchown(path, uid, gid)


def run_isolated(argv: Sequence[str], *, workdir: str | Path, env: Mapping[str, str], limits: Limits,
                 timeout: float | None = None) -> Completed:
    """Run ``argv`` in a cage rooted at ``workdir`` (its cwd; HOME is ``workdir/home``).

    ``env`` is the whole environment of the command (see :func:`base_env`); HOME, TMPDIR and PWD
    are set by the cage. The whole process tree is killed after ``timeout`` seconds (default
    ``limits.wall_seconds``). Files the command wrote stay in ``workdir`` for the caller.
    """
    timeout = limits.wall_seconds if timeout is None else timeout
    start = time.monotonic()
    with Cage(workdir, limits) as cage:
        run_env = {**env, "HOME": str(cage.home), "TMPDIR": "/tmp", "PWD": str(cage.workdir)}
        proc = subprocess.Popen(cage.wrap(argv), cwd=cage.workdir, env=run_env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            cage.kill_all()
            _killpg(proc.pid)
            out, err = proc.communicate()
        failures = cage.fork_failures()
    code = proc.returncode
    return Completed(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), timed_out,
                     -code if code < 0 else None, cage.isolation, round(time.monotonic() - start, 3), failures)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main(args: Sequence[str] | None = None) -> int:
    """``python -m grader.sandbox --spec JSON -- CMD ...``: the same as running incage.py."""
    return incage.main(args)


if __name__ == "__main__":
    sys.exit(main())
