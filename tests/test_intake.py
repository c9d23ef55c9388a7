"""Intake: folders and LMS zips, student ids from each naming scheme, hostile archives refused."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from grader.intake import (DEFAULT_LIMITS, IntakeError, Limits, collect, identify, safe_filename, scan, slug)

NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def make_zip(path: Path, entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def ids(intake) -> list[str]:
    return [s.student_id for s in intake.submissions]


# ------------------------------------------------------------------------------ naming schemes

@pytest.mark.parametrize("source, expected", [
    ("Ana García López_12345_assignsubmission_file_/Práctica 2.ipynb",
     ("ana-garcia-lopez_12345", "Ana García López", "moodle", "12345", False)),
    ("Ana García López_12345_assignsubmission_file_practica.ipynb",
     ("ana-garcia-lopez_12345", "Ana García López", "moodle", "12345", False)),
    ("export.zip!/Luis  Pérez_777_assignsubmission_file_/sub/nb.ipynb",
     ("luis-perez_777", "Luis Pérez", "moodle", "777", False)),
    ("garcialopezana_late_123456_987654_Practica 2.ipynb",
     ("garcialopezana_123456", "garcialopezana", "canvas", "123456", True)),
    ("ortiz-ruizmaria_2001_88123_p2-1.ipynb",
     ("ortiz-ruizmaria_2001", "ortiz-ruizmaria", "canvas", "2001", False)),
    ("practica_2_3_final.ipynb", ("practica_2_3_final", "practica_2_3_final", "file", None, False)),
    ("clase/José Núñez - entrega.ipynb", ("jose-nunez-entrega", "José Núñez - entrega", "file", None, False)),
])
def test_identify(source: str, expected: tuple) -> None:
    who = identify(source)
    assert (who.student_id, who.name, who.lms, who.lms_id, who.late) == expected


def test_slug_is_a_safe_file_name() -> None:
    assert slug("  ") .startswith("nb-")
    assert slug("日本語 ノート") == "日本語-ノート"
    long = slug("a" * 300)
    assert len(long) <= 80 and long != slug("a" * 299)
    assert slug("../../etc/passwd") == "etc-passwd"
    assert "/" not in safe_filename("x/../y.ipynb") and safe_filename("x/../y.ipynb").endswith(".ipynb")
    assert len(safe_filename("é" * 300 + ".ipynb").encode()) <= 180


# ------------------------------------------------------------------------------------ folders

def test_folder_recursive_with_zip_inside(tmp_path: Path) -> None:
    src = tmp_path / "class"
    (src / "Ana Gómez_11_assignsubmission_file_").mkdir(parents=True)
    (src / "Ana Gómez_11_assignsubmission_file_" / "Trabajo 2.ipynb").write_bytes(NB)
    (src / "Ana Gómez_11_assignsubmission_file_" / "notes.txt").write_text("ignored")
    (src / ".ipynb_checkpoints").mkdir()
    (src / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_bytes(NB)
    (src / "luis.ipynb").write_bytes(NB)
    make_zip(src / "Marta Ruiz_22_assignsubmission_file_entrega.zip", {"p2/mi trabajo.ipynb": NB,
                                                                       "__MACOSX/p2/._mi trabajo.ipynb": b"x"})
    with collect(src) as found:
        assert ids(found) == ["ana-gomez_11", "luis", "marta-ruiz_22"]
        by_id = {s.student_id: s for s in found.submissions}
        assert by_id["marta-ruiz_22"].source == "Marta Ruiz_22_assignsubmission_file_entrega.zip!/p2/mi trabajo.ipynb"
        assert by_id["marta-ruiz_22"].path.read_bytes() == NB
        assert by_id["ana-gomez_11"].path == src / "Ana Gómez_11_assignsubmission_file_" / "Trabajo 2.ipynb"
        assert found.lms == "moodle" and not found.refused and not found.duplicates
        tmp = by_id["marta-ruiz_22"].path.parent.parent
        assert tmp.exists()
    assert not tmp.exists()  # the extracted copies are removed on exit


def test_folder_per_student_with_the_same_file_name(tmp_path: Path) -> None:
    for who in ("ana", "luis"):
        (tmp_path / who).mkdir()
        (tmp_path / who / "practica.ipynb").write_bytes(NB)
    with collect(tmp_path) as found:
        assert ids(found) == ["ana", "luis"]
        assert not found.duplicates


def test_duplicates_are_kept_apart_and_reported(tmp_path: Path) -> None:
    folder = tmp_path / "Ana Gómez_11_assignsubmission_file_"
    folder.mkdir()
    (folder / "v1.ipynb").write_bytes(NB)
    (folder / "v2.ipynb").write_bytes(NB + b" ")
    (tmp_path / "Ana Gómez_11_assignsubmission_file_v3.ipynb").write_bytes(NB + b"  ")
    with collect(tmp_path) as found:
        assert ids(found) == ["ana-gomez_11", "ana-gomez_11-2", "ana-gomez_11-3"]
        [dup] = found.duplicates
        assert dup.base_id == "ana-gomez_11" and dup.ids == ("ana-gomez_11", "ana-gomez_11-2", "ana-gomez_11-3")
        assert dup.sources[0] == "Ana Gómez_11_assignsubmission_file_/v1.ipynb"


def test_symlink_in_folder_pointing_outside_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.ipynb"
    secret.write_bytes(NB)
    src = tmp_path / "class"
    src.mkdir()
    (src / "ok.ipynb").write_bytes(NB)
    (src / "evil.ipynb").symlink_to(secret)
    (src / "alias.ipynb").symlink_to(src / "ok.ipynb")
    with collect(src) as found:
        assert ids(found) == ["alias", "ok"]
        assert [(r.source, r.reason) for r in found.refused] == [
            ("evil.ipynb", "refused: a symbolic link pointing outside SOURCE")]


def test_empty_or_missing_source_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(IntakeError, match="no such file or folder"):
        with collect(tmp_path / "nope"):
            pass
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(IntakeError, match=r"no \.ipynb notebook found"):
        with collect(tmp_path):
            pass
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(IntakeError, match="not a folder, a .zip file or a .ipynb notebook"):
        with collect(tmp_path / "notes.txt"):
            pass


def test_single_notebook(tmp_path: Path) -> None:
    (tmp_path / "Ana López.ipynb").write_bytes(NB)
    with collect(tmp_path / "Ana López.ipynb") as found:
        assert ids(found) == ["ana-lopez"] and found.submissions[0].name == "Ana López"


# --------------------------------------------------------------------------------------- zips

def test_moodle_zip_folders_and_flat(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "export.zip", {
        "Ana García López_12345_assignsubmission_file_/Práctica 2.ipynb": NB,
        "Bea Soto_12346_assignsubmission_file_Trabajo.ipynb": NB,
        "Carlos Díaz_12347_assignsubmission_onlinetext_onlinetext.html": b"<p>hola</p>",
        "Carlos Díaz_12347_assignsubmission_file_/": b"",
    })
    with collect(z) as found:
        assert ids(found) == ["ana-garcia-lopez_12345", "bea-soto_12346"]
        assert [s.lms_id for s in found.submissions] == ["12345", "12346"]
        assert all(s.path.read_bytes() == NB for s in found.submissions)
        assert found.lms == "moodle"


def test_canvas_zip(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "submissions.zip", {
        "garcialopezana_late_123456_987654_Practica 2.ipynb": NB,
        "ruizluis_123457_987655_trabajo2-1.ipynb": NB,
    })
    with collect(z) as found:
        assert ids(found) == ["garcialopezana_123456", "ruizluis_123457"]
        assert [s.late for s in found.submissions] == [True, False]
        assert found.lms == "canvas"


def test_odd_names_in_a_zip(tmp_path: Path) -> None:
    long_name = "Estudiante con un nombre larguísimo " * 8 + ".ipynb"
    z = make_zip(tmp_path / "odd.zip", {
        "carpeta con espacios/Iñaki Ñúñez Çelik.ipynb": NB,
        long_name: NB,
        "tab\tand:colon?.ipynb": NB,
    })
    with collect(z) as found:
        assert len(found.submissions) == 3 and not found.refused
        for s in found.submissions:
            assert s.path.read_bytes() == NB and len(s.path.name.encode()) <= 180
            assert len(s.student_id) <= 80
        assert "inaki-nunez-celik" in ids(found)


def test_zip_inside_zip_and_depth_limit(tmp_path: Path) -> None:
    inner2 = io.BytesIO()
    with zipfile.ZipFile(inner2, "w") as zf:
        zf.writestr("deep.ipynb", NB)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("ana.ipynb", NB)
        zf.writestr("deeper.zip", inner2.getvalue())
    z = make_zip(tmp_path / "outer.zip", {"Ana Gómez_11_assignsubmission_file_/entrega.zip": inner.getvalue()})
    with collect(z) as found:
        assert ids(found) == ["ana-gomez_11"]
        assert found.submissions[0].source == "outer.zip!/Ana Gómez_11_assignsubmission_file_/entrega.zip!/ana.ipynb"
        [refused] = found.refused
        assert refused.source.endswith("entrega.zip!/deeper.zip") and "levels" in refused.reason


def test_zip_slip_entries_are_refused_and_nothing_escapes(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../escaped.ipynb", NB)
        zf.writestr("ok/../../escaped2.ipynb", NB)
        zf.writestr("/tmp/absolute.ipynb", NB)
        zf.writestr("C:/Windows/absolute.ipynb", NB)
        zf.writestr("..\\backslash.ipynb", NB)
        link = zipfile.ZipInfo("link.ipynb")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("good.ipynb", NB)
    with collect(z, workdir=work) as found:
        assert ids(found) == ["good"]
        reasons = {r.source.split("!/", 1)[1]: r.reason for r in found.refused}
        assert reasons == {
            "../../escaped.ipynb": "refused: the path climbs out of the archive (..)",
            "ok/../../escaped2.ipynb": "refused: the path climbs out of the archive (..)",
            "/tmp/absolute.ipynb": "refused: an absolute path",
            "C:/Windows/absolute.ipynb": "refused: an absolute path",
            "..\\backslash.ipynb": "refused: the path climbs out of the archive (..)",
            "link.ipynb": "refused: a symbolic link",
        }
        written = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())
        assert len(written) == 1 and written[0].endswith("/good.ipynb")
    assert not (tmp_path / "escaped.ipynb").exists() and not Path("/tmp/absolute.ipynb").exists()
    assert list(work.iterdir()) == []


def test_zip_bomb_by_ratio_is_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "bomb.zip", {"bomb.ipynb": b"\0" * (20 * 1024 * 1024), "fine.ipynb": NB})
    with collect(z) as found:
        by_id = {s.student_id: s for s in found.submissions}
        assert by_id["fine"].path is not None
        bomb = by_id["bomb"]
        assert bomb.path is None and bomb.problem.startswith("refused as a zip bomb: compression ratio")


def test_zip_bomb_by_total_size_is_refused(tmp_path: Path) -> None:
    data = {f"nb{i}.ipynb": bytes(range(256)) * 4096 for i in range(5)}  # 1 MB each, incompressible-ish
    z = make_zip(tmp_path / "big.zip", data, compression=zipfile.ZIP_STORED)
    limits = Limits(max_total_bytes=3 * 1024 * 1024)
    with collect(z, limits=limits) as found:
        assert found.submissions == ()
        assert [(r.source, r.reason) for r in found.refused] == [
            ("big.zip", "zip refused: 5.0 MB of notebooks and zips uncompressed (the limit is 3.0 MB)")]


def test_too_many_entries_and_too_large_file(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "many.zip", {f"n{i}.txt": b"" for i in range(30)})
    with collect(z, limits=Limits(max_entries=20)) as found:
        assert [r.reason for r in found.refused] == ["zip refused: 30 entries (the limit is 20)"]
    z = make_zip(tmp_path / "large.zip", {"large.ipynb": bytes(range(256)) * 8192}, compression=zipfile.ZIP_STORED)
    with collect(z, limits=Limits(max_file_bytes=1024 * 1024)) as found:
        [sub] = found.submissions
        assert sub.path is None and sub.problem == "too large: 2.0 MB uncompressed (the limit is 1.0 MB)"


def test_not_a_zip_and_encrypted_entries(tmp_path: Path) -> None:
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    with collect(bad) as found:
        assert found.submissions == ()
        assert found.refused[0].reason.startswith("not a readable zip file")
    z = make_zip(tmp_path / "enc.zip", {"secret.ipynb": NB})
    raw = bytearray(z.read_bytes())
    raw[6] |= 0x1  # local header: encrypted flag
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 8] |= 0x1  # central directory: encrypted flag
    z.write_bytes(bytes(raw))
    with collect(z) as found:
        [sub] = found.submissions
        assert sub.path is None and sub.problem.startswith("encrypted")


def test_scan_is_deterministic(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "e.zip", {f"Alumno {i}_{100 + i}_assignsubmission_file_/nb.ipynb": NB for i in (3, 1, 2)})
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    first, second = scan(z, a, DEFAULT_LIMITS), scan(z, b, DEFAULT_LIMITS)
    strip = lambda i: [(s.student_id, s.source, s.path.name) for s in i.submissions]  # noqa: E731
    assert strip(first) == strip(second) == [("alumno-1_101", "e.zip!/Alumno 1_101_assignsubmission_file_/nb.ipynb",
                                              "nb.ipynb"),
                                             ("alumno-2_102", "e.zip!/Alumno 2_102_assignsubmission_file_/nb.ipynb",
                                              "nb.ipynb"),
                                             ("alumno-3_103", "e.zip!/Alumno 3_103_assignsubmission_file_/nb.ipynb",
                                              "nb.ipynb")]


def test_an_export_unzipped_next_to_its_zip_is_graded_once(tmp_path: Path) -> None:
    other = b'{"cells": [1], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    folder = tmp_path / "Ana Gómez_11_assignsubmission_file_"
    folder.mkdir()
    (folder / "p2.ipynb").write_bytes(NB)
    (tmp_path / "luis.ipynb").write_bytes(NB)  # same bytes, another student: kept
    make_zip(tmp_path / "export.zip", {"Ana Gómez_11_assignsubmission_file_/p2.ipynb": NB,
                                       "Ana Gómez_11_assignsubmission_file_/p2 (v2).ipynb": other})
    with collect(tmp_path) as found:
        assert ids(found) == ["ana-gomez_11", "ana-gomez_11-2", "luis"]
        assert found.identical == (("export.zip!/Ana Gómez_11_assignsubmission_file_/p2.ipynb",
                                    "Ana Gómez_11_assignsubmission_file_/p2.ipynb"),)
        [dup] = found.duplicates
        assert dup.sources == ("Ana Gómez_11_assignsubmission_file_/p2.ipynb",
                               "export.zip!/Ana Gómez_11_assignsubmission_file_/p2 (v2).ipynb")


def test_utf8_names_without_the_utf8_flag(tmp_path: Path) -> None:
    """Windows Explorer and macOS write UTF-8 names but leave the UTF-8 flag clear."""
    real = "Práctica.ipynb".encode("utf-8")
    placeholder = b"Pr__ctica.ipynb"
    assert len(real) == len(placeholder)
    z = make_zip(tmp_path / "windows.zip", {placeholder.decode(): NB})
    z.write_bytes(z.read_bytes().replace(placeholder, real))
    with zipfile.ZipFile(z) as zf:
        assert zf.infolist()[0].filename == real.decode("cp437")  # what zipfile alone reads: mojibake
    with collect(z) as found:
        assert ids(found) == ["practica"] and found.submissions[0].source == "windows.zip!/Práctica.ipynb"
        assert found.submissions[0].path.name == "Práctica.ipynb"
