"""Find the submissions of a class: a folder of notebooks or the zip an LMS exports.

SOURCE is a folder (searched recursively for ``*.ipynb`` and for ``.zip`` files, which are opened
too), a zip file, or one notebook. Each notebook found becomes a :class:`Submission` with a student
id taken from the LMS naming conventions:

* Moodle: ``Full Name_12345_assignsubmission_file_<file>`` as the file name or as the name of a
  folder above it ("Download submissions in folders");
* Canvas: ``lastfirst[_late]_<user id>_<submission id>_<file>``;
* otherwise the file name (its stem) is the id.

Zips are untrusted. Nothing is ever written where an entry's name points: each notebook is copied
to ``<temp folder>/<entry number>/<sanitized base name>``, so a name with ``..``, an absolute path or
a link cannot escape (those entries are refused and listed anyway, as the sign of a hostile or
broken archive). Size limits guard against zip bombs: entries in an archive, total uncompressed
size, size of one notebook, and compression ratio. The declared sizes are not trusted either:
bytes are counted while copying.

Two notebooks with the same student id (a student who uploaded two files, two students with the
same file name) are both kept: the later ones get ``-2``, ``-3``... and the clash is reported. The
one exception is the same student's *identical* file found twice (an export unzipped next to its
zip): it is graded once and the copy is reported. Identical files of different students are
never merged.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping

from .errors import GraderError
from .files import sha256_file
from .notebook import DEFAULT_MAX_BYTES

NOTEBOOK_SUFFIX = ".ipynb"
ZIP_SUFFIX = ".zip"
LMS_KINDS = ("moodle", "canvas", "file")
ARCHIVE_SEP = "!/"  # "export.zip!/Ana_1_assignsubmission_file_/p2.ipynb": an entry inside an archive
MAX_ID_CHARS = 80
MAX_NAME_BYTES = 180  # the local copy's file name; most file systems allow 255 bytes
_SKIP_DIRS = {"__MACOSX", ".ipynb_checkpoints", ".git", "__pycache__"}

_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<rest>.*)$", re.S)
# Canvas lower-cases "lastfirst" and drops spaces; ids are database keys (several digits each).
_CANVAS = re.compile(r"^(?P<name>[^\W\d_A-Z](?:[^\W_A-Z]|-)*?)(?P<late>_late)?"
                     r"_(?P<uid>\d{3,})_(?P<sid>\d{3,})_(?P<rest>.+)$", re.S)


class IntakeError(GraderError):
    """SOURCE cannot be used at all (missing, not a folder/zip/notebook, holds no notebook)."""


@dataclass(frozen=True)
class Limits:
    """Zip-bomb guards. Per archive: entries and total uncompressed bytes of the notebooks and zips
    in it; per entry: uncompressed bytes and uncompressed/compressed ratio (checked above
    ``ratio_floor`` bytes, since small files of repeated text compress well legitimately)."""

    max_entries: int = 10_000
    max_total_bytes: int = 2 * 1024 ** 3
    max_file_bytes: int = DEFAULT_MAX_BYTES
    max_ratio: float = 200.0
    ratio_floor: int = 1024 * 1024
    max_depth: int = 2  # a zip inside a zip inside SOURCE is opened; one level deeper is refused


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Submission:
    """One notebook to grade.

    ``student_id`` is unique in the batch and safe as a file name; ``name`` is the person as the
    LMS names them (or the file stem); ``source`` is where the notebook was found, relative to
    SOURCE (``archive.zip!/inner/path.ipynb`` for entries of a zip); ``path`` is the local file to
    read (a temporary copy for zip entries), or None when the entry could not be extracted, in
    which case ``problem`` says why and the submission is graded as unreadable.
    """

    student_id: str
    name: str
    source: str
    path: Path | None
    lms: str  # one of LMS_KINDS
    lms_id: str | None = None  # Moodle participant id, Canvas user id
    late: bool = False
    problem: str | None = None
    sha256: str | None = None  # of the file at ``path``, read once at intake (None: no readable file)

    def to_dict(self) -> dict[str, Any]:
        return {"student_id": self.student_id, "name": self.name, "source": self.source,
                "path": None if self.path is None else str(self.path), "lms": self.lms,
                "lms_id": self.lms_id, "late": self.late, "problem": self.problem, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Submission":
        return cls(student_id=d["student_id"], name=d["name"], source=d["source"],
                   path=None if d.get("path") is None else Path(d["path"]), lms=d["lms"],
                   lms_id=d.get("lms_id"), late=bool(d.get("late", False)), problem=d.get("problem"),
                   sha256=d.get("sha256"))


@dataclass(frozen=True)
class Refused:
    """An archive entry (or a whole archive) that was not extracted, and why."""

    source: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Refused":
        return cls(source=d["source"], reason=d["reason"])


@dataclass(frozen=True)
class Duplicate:
    """Several notebooks that would have had the same student id; ``ids`` are the ones given."""

    base_id: str
    sources: tuple[str, ...]
    ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"base_id": self.base_id, "sources": list(self.sources), "ids": list(self.ids)}


@dataclass(frozen=True)
class Intake:
    """What SOURCE holds: submissions sorted by student id, refused entries, id clashes."""

    source: str
    submissions: tuple[Submission, ...]
    refused: tuple[Refused, ...] = ()
    duplicates: tuple[Duplicate, ...] = ()
    identical: tuple[tuple[str, str], ...] = ()  # (ignored copy, kept source): same student, same bytes

    @property
    def lms(self) -> str:
        """The naming scheme most submissions follow ("file" when none is an LMS's)."""
        counts = {k: sum(1 for s in self.submissions if s.lms == k) for k in ("moodle", "canvas")}
        best = max(counts, key=lambda k: counts[k])
        return best if counts[best] else "file"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "submissions": [s.to_dict() for s in self.submissions],
                "refused": [r.to_dict() for r in self.refused],
                "duplicates": [d.to_dict() for d in self.duplicates],
                "identical": [list(pair) for pair in self.identical]}


# ------------------------------------------------------------------------------- student ids

@dataclass(frozen=True)
class Identity:
    """Who a path names, before duplicate ids are resolved."""

    student_id: str
    name: str
    lms: str
    lms_id: str | None = None
    late: bool = False


def identify(source: str) -> Identity:
    """The student a submission path names, from its components (file first, then the folders
    above it, archives included): Moodle, then Canvas, then the file stem."""
    parts = [p for p in re.split(r"[/\\]|!/", source) if p]
    for part in reversed(parts):
        m = _MOODLE.match(part)
        if m and m.group("name").strip():
            name = _display(m.group("name"))
            return Identity(slug(f"{name}_{m.group('id')}"), name, "moodle", m.group("id"))
    leaf = parts[-1] if parts else source
    for part in reversed(parts):
        m = _CANVAS.match(part)
        if m:
            return Identity(slug(f"{m.group('name')}_{m.group('uid')}"), m.group("name"), "canvas",
                            m.group("uid"), late=bool(m.group("late")))
    stem = _strip_suffix(leaf)
    sid = slug(stem)
    return Identity(sid, _display(stem) or sid, "file")


def _display(text: str) -> str:
    return " ".join(text.split())[:120]


def slug(text: str) -> str:
    """A student id safe as a file name on every OS: accents folded, spaces and punctuation as
    ``-``, letters of other scripts kept, at most MAX_ID_CHARS characters; never empty."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    folded = unicodedata.normalize("NFC", folded)
    cleaned = re.sub(r"[^\w.\-]+", "-", folded, flags=re.UNICODE).strip("-._").lower()
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    if len(cleaned) > MAX_ID_CHARS:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = cleaned[:MAX_ID_CHARS - 9].rstrip("-._") + "-" + digest
    if not cleaned or cleaned in {"con", "prn", "aux", "nul"}:
        cleaned = "nb-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return cleaned


def _strip_suffix(name: str) -> str:
    return name[: -len(NOTEBOOK_SUFFIX)] if name.lower().endswith(NOTEBOOK_SUFFIX) else name


# ----------------------------------------------------------------------------------- collect

@contextmanager
def collect(source: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS,
            workdir: str | os.PathLike[str] | None = None) -> Iterator[Intake]:
    """The submissions in SOURCE; zip entries live in a temporary folder that is removed on exit."""
    root = Path(source)
    if not root.exists():
        raise IntakeError(f"{source}: no such file or folder")
    tmp = Path(tempfile.mkdtemp(prefix="grader-intake-", dir=workdir))
    try:
        yield scan(root, tmp, limits)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def scan(root: Path, tmp: Path, limits: Limits = DEFAULT_LIMITS) -> Intake:
    """Like :func:`collect`, extracting into ``tmp`` (which the caller owns and removes)."""
    found = _Found(tmp, limits)
    if root.is_dir():
        _walk(root, found)
    elif root.is_file() and _is_zip_name(root.name):
        found.archive(root, root.name, depth=1)
    elif root.is_file() and root.name.lower().endswith(NOTEBOOK_SUFFIX):
        found.entries.append((root.name, root, None))
    elif root.is_file() and zipfile.is_zipfile(root):
        found.archive(root, root.name, depth=1)
    else:
        raise IntakeError(f"{root}: not a folder, a .zip file or a .ipynb notebook")
    if not found.entries and not found.refused:
        raise IntakeError(f"{root}: no .ipynb notebook found (searched folders and zips inside)")
    return _assemble(str(root), found)


def _is_zip_name(name: str) -> bool:
    return name.lower().endswith(ZIP_SUFFIX)


class _Found:
    """What the walk finds: (source, local path or None, problem) entries and refusals."""

    def __init__(self, tmp: Path, limits: Limits) -> None:
        self.tmp = tmp
        self.limits = limits
        self.entries: list[tuple[str, Path | None, str | None]] = []
        self.refused: list[Refused] = []
        self.extracted = 0  # bytes written to the temp folder so far, over every archive
        self._n = 0

    def slot(self, base_name: str) -> Path:
        """A fresh folder in the temp folder for one extracted file, with a safe local name."""
        self._n += 1
        folder = self.tmp / f"{self._n:05d}"
        folder.mkdir()
        return folder / safe_filename(base_name)

    def archive(self, path: Path, source: str, depth: int) -> None:
        try:
            with open(path, "rb") as fh:
                self._archive(fh, source, depth)
        except OSError as exc:
            self.refused.append(Refused(source, f"cannot read the file ({exc.strerror or exc})"))

    def _archive(self, fh: Any, source: str, depth: int) -> None:
        lim = self.limits
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
            self.refused.append(Refused(source, f"not a readable zip file ({_short(exc)})"))
            return
        with zf:
            infos = zf.infolist()
            if len(infos) > lim.max_entries:
                self.refused.append(Refused(source, f"zip refused: {len(infos)} entries (the limit is "
                                                    f"{lim.max_entries})"))
                return
            wanted = []
            for info in infos:
                name = entry_name(info)
                inner = f"{source}{ARCHIVE_SEP}{name}"
                reason = unsafe_entry(info)
                if reason:
                    self.refused.append(Refused(inner, reason))
                    continue
                if info.is_dir() or _skipped(name):
                    continue
                lower = name.lower()
                if lower.endswith(NOTEBOOK_SUFFIX) or _is_zip_name(lower):
                    wanted.append(info)
            total = sum(i.file_size for i in wanted)
            if total > lim.max_total_bytes:
                self.refused.append(Refused(source, f"zip refused: {_mb(total)} of notebooks and zips "
                                                    f"uncompressed (the limit is {_mb(lim.max_total_bytes)})"))
                return
            for info in wanted:
                self._entry(zf, info, source, depth)

    def _entry(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, depth: int) -> None:
        lim = self.limits
        name = entry_name(info)
        inner = f"{source}{ARCHIVE_SEP}{name}"
        is_zip = _is_zip_name(name)
        problem = entry_size_problem(info, lim)
        if is_zip and depth >= lim.max_depth:
            problem = problem or f"zip inside a zip inside a zip (only {lim.max_depth} levels are opened)"
        if problem:
            if is_zip:
                self.refused.append(Refused(inner, problem))
            else:
                self.entries.append((inner, None, problem))
            return
        budget = lim.max_total_bytes - self.extracted
        if info.file_size > budget:
            self._fail(inner, is_zip, f"refused: extracting it would pass {_mb(lim.max_total_bytes)} in all "
                                      "(the limit for one batch)")
            return
        base = PurePosixPath(name.replace("\\", "/")).name
        target = self.slot(base)
        try:
            self.extracted += _copy_limited(zf, info, target, budget if is_zip else min(budget, lim.max_file_bytes))
        except _TooLarge as exc:
            target.unlink(missing_ok=True)
            self._fail(inner, is_zip, str(exc))
            return
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError,
                EOFError, ValueError) as exc:  # CRC errors, unknown compression, passwords
            target.unlink(missing_ok=True)
            self._fail(inner, is_zip, f"cannot extract it ({_short(exc)})")
            return
        if is_zip:
            self.archive(target, inner, depth + 1)
        else:
            self.entries.append((inner, target, None))

    def _fail(self, inner: str, is_zip: bool, reason: str) -> None:
        if is_zip:
            self.refused.append(Refused(inner, reason))
        else:
            self.entries.append((inner, None, reason))


class _TooLarge(Exception):
    pass


def entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its author wrote it. Zips made by Windows Explorer or macOS often hold
    UTF-8 names without the UTF-8 flag, which zipfile then reads as cp437 ("PrÃ¡ctica")."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            return name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return name
    return name


def unsafe_entry(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry's name or type makes it unsafe to extract (None when it is fine)."""
    name = info.filename
    unix_mode = (info.external_attr >> 16) & 0xFFFF
    if stat.S_ISLNK(unix_mode):
        return "refused: a symbolic link"
    if "\x00" in name:
        return "refused: a NUL byte in the name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or norm.startswith("//"):
        return "refused: an absolute path"
    if any(part == ".." for part in norm.split("/")):
        return "refused: the path climbs out of the archive (..)"
    if stat.S_IFMT(unix_mode) and not (stat.S_ISREG(unix_mode) or stat.S_ISDIR(unix_mode)):
        return "refused: not a regular file (device, pipe or socket)"
    return None


def entry_size_problem(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    """Why an entry's declared sizes look like a zip bomb (None when they do not)."""
    if info.flag_bits & 0x1:
        return "encrypted (password-protected) entry; submit it without a password"
    is_zip = _is_zip_name(info.filename)
    if not is_zip and info.file_size > limits.max_file_bytes:
        return f"too large: {_mb(info.file_size)} uncompressed (the limit is {_mb(limits.max_file_bytes)})"
    if info.file_size > limits.ratio_floor:
        ratio = info.file_size / max(1, info.compress_size)
        if ratio > limits.max_ratio:
            return (f"refused as a zip bomb: compression ratio {ratio:.0f}:1 "
                    f"(the limit is {limits.max_ratio:.0f}:1)")
    return None


def _copy_limited(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, max_bytes: int) -> int:
    """Copy an entry, counting bytes: a header that lies about the size changes nothing."""
    written = 0
    with zf.open(info) as src, open(target, "xb") as dst:
        while True:
            chunk = src.read(1024 * 1024)
            if not chunk:
                break
            written += len(chunk)
            if written > max_bytes:
                raise _TooLarge(f"too large: over {_mb(max_bytes)} uncompressed")
            dst.write(chunk)
    return written


def safe_filename(name: str) -> str:
    """A base name that is one path component everywhere and fits in MAX_NAME_BYTES."""
    name = unicodedata.normalize("NFC", name)
    cleaned = "".join("_" if (ch in '/\\:*?"<>|' or ord(ch) < 32 or ch == "\x7f") else ch for ch in name)
    cleaned = cleaned.strip(" .") or "notebook.ipynb"
    suffix = NOTEBOOK_SUFFIX if cleaned.lower().endswith(NOTEBOOK_SUFFIX) else (
        ZIP_SUFFIX if cleaned.lower().endswith(ZIP_SUFFIX) else "")
    stem = cleaned[: len(cleaned) - len(suffix)] if suffix else cleaned
    budget = MAX_NAME_BYTES - len(suffix.encode())
    encoded = stem.encode("utf-8", "surrogatepass")
    if len(encoded) > budget:
        stem = encoded[:budget].decode("utf-8", "ignore").rstrip(" .") or "notebook"
    return stem + suffix


def _skipped(name: str) -> bool:
    """macOS resource forks, Jupyter checkpoints and hidden files are not submissions."""
    parts = name.replace("\\", "/").split("/")
    return any(p in _SKIP_DIRS for p in parts[:-1]) or parts[-1].startswith(("._", "."))


def _walk(root: Path, found: _Found) -> None:
    """Folders recursively, in sorted order; symlinks are not followed out of SOURCE."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            rel = path.relative_to(root).as_posix()
            lower = fname.lower()
            if fname.startswith(("._", ".")) or not (lower.endswith(NOTEBOOK_SUFFIX) or _is_zip_name(lower)):
                continue
            if path.is_symlink() and not _inside(path, root):
                found.refused.append(Refused(rel, "refused: a symbolic link pointing outside SOURCE"))
                continue
            if _is_zip_name(lower):
                found.archive(path, rel, depth=1)
            else:
                found.entries.append((rel, path, None))


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return path.resolve().is_file()


def _assemble(source: str, found: _Found) -> Intake:
    """Ids from names, duplicates suffixed in source order; submissions sorted by id."""
    # Files on disk before archive entries: of two identical copies, the plain file is the one kept.
    named = [(src, path, problem, identify(src))
             for src, path, problem in sorted(found.entries, key=lambda e: (e[0].count(ARCHIVE_SEP),
                                                                            e[0].casefold(), e[0]))]
    named = _by_folder(named)
    by_base: dict[str, list[tuple[str, Path | None, str | None, Identity]]] = {}
    identical: list[tuple[str, str]] = []
    seen: dict[tuple[str, str], str] = {}
    digests: dict[str, str | None] = {}
    for item in named:
        digest = digests[item[0]] = _digest(item[1])
        if digest is not None and (item[3].student_id, digest) in seen:
            identical.append((item[0], seen[(item[3].student_id, digest)]))
            continue
        if digest is not None:
            seen[(item[3].student_id, digest)] = item[0]
        by_base.setdefault(item[3].student_id, []).append(item)
    taken = set(by_base)
    submissions: list[Submission] = []
    duplicates: list[Duplicate] = []
    for base, group in sorted(by_base.items()):
        ids = []
        for n, (src, path, problem, who) in enumerate(group, start=1):
            sid = base
            if n > 1:
                k = n
                while f"{base}-{k}" in taken:
                    k += 1
                sid = f"{base}-{k}"
                taken.add(sid)
            ids.append(sid)
            submissions.append(Submission(sid, who.name, src, path, who.lms, who.lms_id, who.late, problem,
                                          digests[src]))
        if len(group) > 1:
            duplicates.append(Duplicate(base, tuple(g[0] for g in group), tuple(ids)))
    submissions.sort(key=lambda s: s.student_id)
    refused = sorted(found.refused, key=lambda r: (r.source.casefold(), r.source))
    return Intake(source, tuple(submissions), tuple(refused), tuple(duplicates), tuple(identical))


def _digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return sha256_file(path)
    except OSError:
        return None


def _by_folder(named: list[tuple[str, Path | None, str | None, Identity]]
               ) -> list[tuple[str, Path | None, str | None, Identity]]:
    """One folder (or zip) per student with the same file name in each ("ana/practica.ipynb",
    "luis/practica.ipynb"): when file-named notebooks share an id but not their folder, the
    folder names them instead."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(named):
        if item[3].lms == "file":
            groups.setdefault(item[3].student_id, []).append(i)
    out = list(named)
    for indices in groups.values():
        if len(indices) < 2:
            continue
        parents = [_parent(named[i][0]) for i in indices]
        if any(p is None for p in parents) or len(set(parents)) < len(parents):
            continue
        for i, parent in zip(indices, parents):
            src, path, problem, _ = named[i]
            assert parent is not None
            out[i] = (src, path, problem, Identity(slug(parent), _display(parent) or slug(parent), "file"))
    return out


def _parent(source: str) -> str | None:
    parts = [p for p in re.split(r"[/\\]|!/", source) if p]
    if len(parts) < 2:
        return None
    parent = parts[-2]
    return parent[: -len(ZIP_SUFFIX)] if _is_zip_name(parent) else parent


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
