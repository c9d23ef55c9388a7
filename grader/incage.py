"""The in-cage half of grader.sandbox: set up a cage, then run the command in it.

Run by file path (``python -I -S .../incage.py --spec JSON -- CMD ...``, see
:meth:`grader.sandbox.Cage.wrap`), so it imports only the standard library and never the grader
package. As root: join the pids cgroup, unshare the network, mount, PID, IPC and UTS namespaces,
fork the cage's PID 1, which mounts a private /proc, fresh tmpfs over the world-writable folders
and the invoking user's HOME (re-attaching the working dir and, read-only, the paths Python
needs), sets the resource limits, drops to uid 65534 with no-new-privileges, and runs the
command as its only child, reaping orphans. PID 1 and the host half both die with their parent
(PR_SET_PDEATHSIG), and when PID 1 dies the kernel kills every process of the namespace. Without
root, a user namespace keeps the caller's uid; without namespaces only the limits apply.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

NOBODY = 65534
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
# World-writable host folders: each gets a fresh private tmpfs inside the cage.
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
USAGE = "usage: python -m grader.sandbox --spec JSON -- CMD [ARG ...]\n"


def _libc() -> Any:
    import ctypes  # lazily: grader.sandbox imports this module for its constants

    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    import ctypes

    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _map_user(uid: int, gid: int) -> None:
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    import ctypes

    enc = lambda s: s.encode() if s is not None else None
    _check(_libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def _set_limits(limits: Mapping[str, int], nproc: int) -> None:
    import resource

    mb = 1024 * 1024
    pairs = [(resource.RLIMIT_AS, limits["address_space_mb"] * mb, limits["address_space_mb"] * mb),
             (resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 5),
             (resource.RLIMIT_NPROC, nproc, nproc),
             (resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb, limits["file_size_mb"] * mb),
             (resource.RLIMIT_CORE, 0, 0)]
    for which, soft, hard in pairs:
        _, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:  # without CAP_SYS_RESOURCE we may only lower
            hard, soft = min(hard, old_hard), min(soft, old_hard)
        resource.setrlimit(which, (soft, hard))


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _build_mounts(spec: Mapping[str, Any]) -> None:
    """Private /proc and tmp dirs, the user's HOME hidden; re-attach what must stay reachable."""
    keep = [(spec["workdir"], False)] + [(p, True) for p in spec["expose"]]
    fds = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY), ro) for path, ro in keep if os.path.isdir(path)]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    size = f"size={spec['limits']['file_size_mb']}m"
    for target in spec["hide"]:
        if os.path.isdir(target):
            mode = "1777" if target in PRIVATE_TMP else "0755"
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},{size}")
    for path, fd, ro in fds:
        if not _same_file(fd, path):
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            if ro:
                _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)


def _drop_to(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _count_tasks(uid: int) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(entry / "task"))
            except OSError:
                continue
    return count


def _init(spec: Mapping[str, Any], argv: list[str], lifeline: int, report: int) -> int:
    """PID 1 of the cage: set up, drop privileges, run argv, reap orphans, report how it ended."""
    os.setsid()
    limits = spec["limits"]
    _build_mounts(spec)
    os.chdir(spec["workdir"])
    # RLIMIT_NPROC counts every thread of the uid machine-wide and is checked before the cgroup:
    # with a pids cgroup it is only a backstop, so the per-cage cap is the one hit (and counted).
    _set_limits(limits, limits["max_processes"] * (2 if spec["cgroup"] else 1))
    if spec["mode"] == "root":
        _drop_to(NOBODY, NOBODY)
    libc = _libc()
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    if select.select([lifeline], [], [], 0)[0]:  # the host half died before PDEATHSIG was armed
        return 1
    child = os.fork()
    if child == 0:  # pragma: no cover - exec'ed
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, 256)
        env = dict(os.environ)
        if "JPY_PARENT_PID" in env:  # its parent is this PID 1, which ipykernel's poller reads as "orphaned";
            env["JPY_PARENT_PID"] = "1"  # 1 turns the poller off (PDEATHSIG does that job here)
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(2, f"sandbox: cannot run {argv[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: _signal(child, s))
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            break
    code = os.waitstatus_to_exitcode(status)
    os.write(report, f"{code}\n".encode())
    return 0


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _enter(spec: Mapping[str, Any], argv: list[str]) -> int:
    """The host half: join the cgroup, unshare, fork PID 1, forward signals, mirror its ending."""
    libc = _libc()
    if spec["cgroup"]:
        Path(spec["cgroup"], "cgroup.procs").write_text(str(os.getpid()))
    if spec["mode"] == "rlimits":
        _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
        limits = spec["limits"]
        _set_limits(limits, _count_tasks(os.getuid()) + limits["max_processes"])
        os.execvpe(argv[0], argv, os.environ)
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    _check(libc.unshare(flags | (CLONE_NEWUSER if spec["mode"] == "userns" else 0)), "unshare")
    if spec["mode"] == "userns":
        _map_user(uid, gid)
    life_r, life_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - becomes PID 1 of the cage
        os.close(life_w)
        os.close(rep_r)
        code = 1
        try:
            code = _init(spec, argv, life_r, rep_w)
        except BaseException as exc:
            os.write(2, f"sandbox: setup failed: {exc}\n".encode())
        os._exit(code)
    os.close(life_r)
    os.close(rep_w)
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: _signal(pid, s))
    os.waitpid(pid, 0)
    reported = os.read(rep_r, 64).decode().strip()
    if not reported:
        return 125  # the cage's PID 1 failed or was killed before the command ended
    code = int(reported)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def main(args: Sequence[str] | None = None) -> int:
    """``--spec JSON -- CMD ...``: run CMD inside the described cage (the spec is
    :class:`grader.sandbox.CageSpec` as a dict)."""
    args = list(sys.argv[1:] if args is None else args)
    if len(args) < 4 or args[0] != "--spec" or args[2] != "--":
        sys.stderr.write(USAGE)
        return 2
    spec = json.loads(args[1])
    return _enter(spec, args[3:])


if __name__ == "__main__":
    sys.exit(main())
