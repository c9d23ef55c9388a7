"""`grader check` speed: notebooks/s over the test fixtures, against nbformat in the same run.

The baseline is what any notebook tool does first: ``nbformat.read(path, as_version=4)`` and
``nbformat.validate(nb)`` on the same files. `grader check` does all of that's work (reading,
normalizing) and then parses every output, interprets every code cell and runs the rubric, so a
ratio near or above 1 means the grading itself costs less than a schema validation.

Also measured, each in a fresh process (what a student or the batch grader pays): one
`grader check --json` of a 5 MB notebook (the good fixture padded with raw Keras 2 ``verbose=1``
progress bars and base64 plots), wall time and peak RSS, against the 1 s / 200 MB goal.

    python benchmarks/check.py              # 5 rounds
    python benchmarks/check.py --rounds 20
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOTEBOOKS = ROOT / "tests" / "fixtures" / "notebooks"
GOAL_SECONDS, GOAL_MB = 1.0, 200.0


def fixtures() -> list[Path]:
    manifest = tomllib.loads((NOTEBOOKS / "MANIFEST.toml").read_text(encoding="utf-8"))
    return [NOTEBOOKS / e["file"] for e in manifest["notebook"] if e["readable"] and (NOTEBOOKS / e["file"]).exists()]


def ours(paths: list[Path]) -> None:
    from grader.submission import check_notebook

    for p in paths:
        check_notebook(p, lang="es")


def baseline(paths: list[Path]) -> None:
    import nbformat

    for p in paths:
        nb = nbformat.read(str(p), as_version=4)
        nbformat.validate(nb)


def rate(fn, paths: list[Path], rounds: int) -> float:
    """Notebooks per second, best of ``rounds`` passes over all of them (after one warm-up pass)."""
    fn(paths)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn(paths)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


# ---------------------------------------------------------------------------- the 5 MB notebook

def big_notebook(folder: Path, target_mb: float = 5.0) -> Path:
    """The good fixture plus a raw Keras 2 verbose=1 training log and plots, about ``target_mb``."""
    doc = json.loads((NOTEBOOKS / "good_complete.ipynb").read_text(encoding="utf-8"))
    rng = random.Random(0)
    log = ["Train on 48000 samples, validate on 12000 samples\n"]
    for epoch in range(1, 41):
        log.append(f"Epoch {epoch}/40\n")
        for seen in range(64, 48000, 64 * 4):
            bar = "=" * (29 * seen // 48000) + ">"
            log.append(f"\r{seen:5d}/48000 [{bar:<30}] - ETA: {rng.randint(1, 9)}s - loss: {rng.random():.4f}"
                       f" - acc: {rng.random():.4f}" + "\b" * 10)
        acc = 0.80 + epoch / 400
        log.append(f"\r48000/48000 [==============================] - 4s 83us/step - loss: 0.3000 - acc: "
                   f"{acc:.4f} - val_loss: 0.3100 - val_acc: {acc - 0.01:.4f}\n")
    text = "".join(log)
    png = base64.b64encode(rng.randbytes(200_000)).decode()
    cell = {"cell_type": "code", "execution_count": 99, "metadata": {}, "source": "model.fit(x, y, epochs=40)",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}
    doc["cells"].append(cell)
    while len(json.dumps(doc)) < target_mb * 1024 * 1024:
        doc["cells"].append({"cell_type": "code", "execution_count": 100, "metadata": {}, "source": "plt.show()",
                             "outputs": [{"output_type": "display_data", "metadata": {},
                                          "data": {"image/png": png, "text/plain": "<Figure size 640x480>"}}]})
    path = folder / "big.ipynb"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def fresh_process(args: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one command in a new process.

    Bytecode caching is left on (as in an installed package) whatever this shell says; CPU time is
    printed too because wall time on a busy machine measures the machine, not the program.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    paths, skipped = [], []
    for p in fixtures():  # the baseline's files: the ones nbformat itself can read (not cp1252)
        try:
            baseline([p])
            paths.append(p)
        except Exception as exc:  # noqa: BLE001 - nbformat's error classes vary by version
            skipped.append(f"{p.name} ({type(exc).__name__})")
    size = sum(p.stat().st_size for p in paths) / 1024
    print(f"{len(paths)} fixture notebooks, {size:.0f} KB in all"
          + (f"; left out, nbformat cannot read them: {', '.join(skipped)}" if skipped else ""))
    grader_rate = rate(ours, paths, args.rounds)
    base_rate = rate(baseline, paths, args.rounds)
    print(f"grader check            {grader_rate:8.1f} notebooks/s")
    print(f"nbformat read+validate  {base_rate:8.1f} notebooks/s")
    print(f"peak RSS (this process) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.1f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        big = big_notebook(Path(tmp))
        mb = big.stat().st_size / 1024 / 1024
        command = [sys.executable, "-m", "grader.cli", "check", str(big), "--json"]
        fresh_process(command)  # warm-up: bytecode written, files in the page cache
        runs = [fresh_process(command) for _ in range(3)]
        code = "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))"
        fresh_process([sys.executable, "-c", code, str(big)])
        base = [fresh_process([sys.executable, "-c", code, str(big)]) for _ in range(3)]
    wall, cpu, rss = min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs)
    verdict = "ok" if wall < GOAL_SECONDS and rss < GOAL_MB else "over the goal on this machine"
    print(f"{mb:.1f} MB notebook, fresh process: grader check --json {wall:.2f} s wall, {cpu:.2f} s CPU, "
          f"peak RSS {rss:.0f} MB; nbformat read+validate {min(b[0] for b in base):.2f} s wall, "
          f"{min(b[1] for b in base):.2f} s CPU  [goal < {GOAL_SECONDS:g} s, < {GOAL_MB:g} MB: {verdict}]")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"ratio: {grader_rate / base_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
