"""Files: atomic writes (a crash or ``kill -9`` leaves the old file or the new one, never half)
and content digests.

One implementation for every file grader writes (reference records, grades exports, reports):
the bytes go to a temporary file in the target's folder, which is then renamed over the target.
The new file gets the permissions any new file would get under the umask (``mkstemp``'s 0600
would hide ``grades.csv`` or a report from the TA who shares the folder).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, durable: bool = True) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically. ``durable`` also fsyncs the file
    before the rename, so the new content survives a power cut, not only a crash of the process.
    Raises OSError; callers turn it into their own one-line error."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~umask())
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's bytes, read in 1 MB blocks. Raises OSError."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
