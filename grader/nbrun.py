"""The child process of :func:`grader.execute.execute_notebook`: drive nbclient on a caged kernel.

Run as ``python -m grader.nbrun SPEC`` (a JSON file the parent wrote in a folder the kernel cannot see);
writes ``executed.ipynb`` and ``status.json`` there.

The real Fashion-MNIST (found by :func:`grader.data.locate`) is linked or copied into
``$HOME/.keras/datasets/fashion-mnist/`` of the cage, under the names Keras 3's
``fashion_mnist.load_data()`` asks ``get_file`` for, so it loads offline.

``max_epochs``: before the first cell, a hidden setup cell (run with ``store_history=False``, so
it changes no execution count and is never part of the saved notebook) imports keras and wraps
``keras.Model.fit`` to add a callback that stops training after ``max_epochs`` epochs. ``epochs``
itself is left alone, so the log still says "Epoch 1/40" and reads like an early stop (Keras
prints no epoch header at all for ``epochs=1``). A model class that overrides ``fit`` itself is not
capped.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from .sandbox import Cage, Limits, die_with_parent

STARTUP_S = 120  # at most this much of the total for the kernel to start
KERAS_FILES = ("train-labels-idx1-ubyte", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte")
CAP_SOURCE = """
def __grader_cap_fit(cap):
    import functools, inspect, keras
    original = keras.Model.fit
    if getattr(original, "__grader_cap__", None) is not None:
        return
    signature = inspect.signature(original)

    class CapEpochs(keras.callbacks.Callback):
        def __init__(self, last):
            super().__init__()
            self.last = last

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 >= self.last:
                self.model.stop_training = True

    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        start = bound.arguments.get("initial_epoch") or 0
        bound.arguments["callbacks"] = list(bound.arguments.get("callbacks") or []) + [CapEpochs(start + cap)]
        return original(*bound.args, **bound.kwargs)
    fit.__grader_cap__ = cap
    keras.Model.fit = fit
__grader_cap_fit({cap})
del __grader_cap_fit
"""


def _world_readable(path: Path) -> bool:
    """Whether uid 65534 can read ``path`` (every folder above it searchable by others)."""
    real = path.resolve()
    if not real.stat().st_mode & stat.S_IROTH:
        return False
    return all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)


def stage_dataset(dataset: Path, home: Path) -> Path:
    """The four files under ``home/.keras/datasets/fashion-mnist`` as Keras names them (.gz):
    symlinks when the cage's user can read the originals, else copies (gzipped if they are not)."""
    target = home / ".keras" / "datasets" / "fashion-mnist"
    target.mkdir(parents=True, exist_ok=True)
    for stem in KERAS_FILES:
        dest = target / f"{stem}.gz"
        packed, plain = dataset / f"{stem}.gz", dataset / stem
        if packed.is_file():
            if _world_readable(packed):
                dest.symlink_to(packed.resolve())
            else:
                shutil.copyfile(packed, dest)
        else:
            with open(plain, "rb") as src, gzip.open(dest, "wb", compresslevel=1) as out:
                shutil.copyfileobj(src, out)
    return target


def _kernel_spec(cage: Cage, folder: Path) -> Path:
    """A kernelspec folder whose only kernel, ``python3``, starts ipykernel inside the cage."""
    home = cage.home
    argv = cage.wrap([sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    env = {"HOME": str(home), "TMPDIR": "/tmp", "IPYTHONDIR": str(home / ".ipython"), "PYTHONPATH": "",
           "JUPYTER_RUNTIME_DIR": str(home / ".jupyter-runtime"), "JUPYTER_DATA_DIR": str(home / ".jupyter-data"),
           "JUPYTER_CONFIG_DIR": str(home / ".jupyter"), "MPLCONFIGDIR": str(home / ".matplotlib")}
    spec_dir = folder / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3 (grader sandbox)",
                                                      "language": "python", "env": env}))
    return folder / "kernels"


class _ForkWatch:
    """Kills the cage as soon as its process cap refuses a fork: a notebook at the cap is a fork
    bomb (or about to fail anyway), and hundreds of spinning copies of a kernel should not share
    the machine until the cell timeout. Needs the pids cgroup (root mode); else does nothing."""

    def __init__(self, cage: Cage, every: float = 0.2) -> None:
        import threading

        self.fired = False
        self._stop = threading.Event()
        self._cage = cage
        self._thread = threading.Thread(target=self._watch, args=(every,), daemon=True)
        if cage.cgroup:
            self._thread.start()

    def _watch(self, every: float) -> None:
        while not self._stop.wait(every):
            if self._cage.fork_failures() > 0:
                self.fired = True
                self._cage.kill_all()
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _first_error(nb: Any) -> dict[str, Any] | None:
    """Status ``error`` at the first cell whose outputs hold an error (runs that went on past errors)."""
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else ():
            if out.get("output_type") == "error":
                return {"status": "error", "cell": index + 1,
                        "reason": _one_line(f"{out.get('ename')}: {out.get('evalue')} (later cells ran on)")}
    return None


def _run_hidden(client: Any, source: str) -> None:
    """Run setup code in the kernel without a trace in the notebook or its execution counts."""
    from nbformat import v4

    cell = v4.new_code_cell(source)
    client.nb.cells.append(cell)
    try:
        client.execute_cell(cell, len(client.nb.cells) - 1, store_history=False)
    finally:
        client.nb.cells.pop()


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _drive(spec: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """Execute the notebook; return the status JSON (the executed notebook is saved to ``out``)."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import (
        CellExecutionError,
        CellTimeoutError,
        DeadKernelError,
    )

    limits = Limits.from_dict(spec["limits"])
    deadline = time.monotonic() + float(spec["timeout"])
    cell_timeout = spec.get("cell_timeout")
    nb = nbformat.reads(Path(spec["notebook"]).read_text(encoding="utf-8-sig", errors="replace"), as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    state: dict[str, Any] = {"status": "ok", "cell": None, "reason": ""}
    with Cage(spec["workdir"], limits) as cage:
        if cage.cgroup:
            (out / "cgroup.txt").write_text(str(cage.cgroup))
        stage_dataset(Path(spec["dataset"]), cage.home)
        cage.own(cage.home)
        ksm = KernelSpecManager(kernel_dirs=[str(_kernel_spec(cage, out))], ensure_native_kernel=False)
        uid = cage.uid

        class CagedKernelManager(AsyncKernelManager):  # type: ignore[misc]
            def write_connection_file(self, **kwargs: Any) -> None:
                super().write_connection_file(**kwargs)
                if uid is not None:
                    os.chown(self.connection_file, uid, uid)

        km = CagedKernelManager(kernel_name="python3", kernel_spec_manager=ksm, transport="ipc",
                                connection_file=str(Path(spec["workdir"], "kernel.json")))

        def left() -> float:
            return deadline - time.monotonic()

        def per_cell(_cell: Any) -> float:
            return max(1.0, min(float(cell_timeout or left()), left()))

        # Capped runs go on past errors: plots sized for the full epochs are expected to fail,
        # and the trainings after them are what is being confirmed.
        capped = bool(spec.get("max_epochs"))
        client = NotebookClient(nb, km=km, timeout_func=per_cell, startup_timeout=int(max(1, min(STARTUP_S, left()))),
                                allow_errors=capped, record_timing=False, shutdown_kernel="immediate",
                                resources={"metadata": {"path": spec["workdir"]}})
        index = None
        watchdog = _ForkWatch(cage)
        try:
            with client.setup_kernel():
                if spec.get("max_epochs"):
                    _run_hidden(client, CAP_SOURCE.format(cap=int(spec["max_epochs"])))
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type == "code":
                        client.execute_cell(cell, index)
        except CellTimeoutError:
            total = left() <= 1.0
            state = {"status": "timeout", "cell": None if index is None else index + 1,
                     "reason": f"total timeout ({float(spec['timeout']):g} s)" if total or not cell_timeout
                     else f"cell timeout ({float(cell_timeout):g} s)"}
        except DeadKernelError as exc:
            why = (f"stopped at the process limit ({limits.max_processes} processes and threads)" if watchdog.fired
                   else "the kernel died (a resource limit was hit)" + (f": {_one_line(exc)}" if str(exc) else ""))
            state = {"status": "killed", "cell": None if index is None else index + 1, "reason": why}
        except CellExecutionError as exc:
            state = {"status": "error", "cell": index + 1 if index is not None else None,
                     "reason": _one_line(f"{exc.ename}: {exc.evalue}")}
        except (RuntimeError, TimeoutError) as exc:  # the kernel never started
            state = {"status": "killed" if left() > 0 else "timeout", "cell": None,
                     "reason": _one_line(f"the kernel did not start: {exc}")}
        if state["status"] == "ok" and capped:
            state = _first_error(nb) or state
        watchdog.stop()
        cage.kill_all()
        state["fork_failures"] = cage.fork_failures()
        state["isolation"] = cage.isolation.to_dict()
    if state["fork_failures"] and not watchdog.fired:
        state["reason"] = _one_line(f"{state['reason']} (the process limit refused {state['fork_failures']} forks)")
    (out / "executed.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
    return state


def _child_main(spec_path: str) -> int:
    spec_file = Path(spec_path)
    spec = json.loads(spec_file.read_text())
    die_with_parent(int(spec["parent"]))  # a killed grader (or pool worker) takes its execution along
    out = Path(spec["out"])
    state = _drive(spec, out)
    (out / "status.json").write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
