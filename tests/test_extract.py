"""``extract_archive``: real archives (hand-made hostile ones included) unpacked on a real file
system. Every refusal must leave nothing but the archive, byte for byte as it was."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import threading
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from nbmodels import ArchiveError, CanceledError, InsufficientSpaceError
from nbmodels.archives import (
    MARKER,
    ExtractLimits,
    _folder,
    _write,
    default_dest,
    extract_archive,
    is_archive_name,
    read_marker,
)
from nbmodels.archives._write import resolves_inside
from tests.conftest import payload

TarEntry = tuple[tarfile.TarInfo, bytes | None]


# -- building archives -------------------------------------------------------------------------


def member(
    name: str,
    data: bytes = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    link: str = "",
    mode: int = 0o644,
) -> TarEntry:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.mode = mode
    ti.mtime = 1_700_000_000
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
        return ti, data
    return ti, None


def make_tar(path: Path, entries: list[TarEntry], mode: str = "w") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for ti, data in entries:
            tf.addfile(ti, None if data is None else io.BytesIO(data))
    return path


def zinfo(name: str, *, mode: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 3, 4, 6))
    info.compress_type = zipfile.ZIP_DEFLATED
    if mode is not None:
        info.create_system = 3
        info.external_attr = mode << 16
    return info


def make_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we want
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> dict[str, bytes | str]:
    """Relative path -> content (files), ``->target`` (links), ``/`` (folders); no marker."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if rel == MARKER:
            continue
        if p.is_symlink():
            out[rel] = "->" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "/"
        else:
            out[rel] = p.read_bytes()
    return out


def only_the_archive(archive: Path) -> None:
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]


FILES = {"weights/model.bin": payload(300_000), "config.json": b'{"a": 1}', "empty": b""}


def standard_tar(path: Path, mode: str) -> Path:
    entries = [member("weights/", kind=tarfile.DIRTYPE, mode=0o755)]
    entries += [member(name, data) for name, data in FILES.items()]
    return make_tar(path, entries, mode)


# -- formats and names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("model.tar", "w"),
        ("model.tar.gz", "w:gz"),
        ("model.tgz", "w:gz"),
        ("model.tar.bz2", "w:bz2"),
        ("model.tar.xz", "w:xz"),
        ("model.zip", "zip"),
    ],
)
def test_each_format_unpacks_byte_exact_into_a_folder_named_after_it(
    tmp_path: Path, name: str, mode: str
) -> None:
    archive = tmp_path / name
    if mode == "zip":
        make_zip(archive, list(FILES.items()))
    else:
        standard_tar(archive, mode)
    before = digest(archive)
    folder = extract_archive(archive)
    assert folder == tmp_path / "model"
    got = listing(folder)
    assert {k: v for k, v in got.items() if v != "/"} == FILES
    assert got["weights"] == "/"
    assert digest(archive) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "model"])
    marker = read_marker(folder)
    assert marker is not None
    assert marker["archive"] == name and marker["size"] == archive.stat().st_size
    assert marker["members"] >= len(FILES) and marker["bytes"] == sum(map(len, FILES.values()))


def test_the_format_comes_from_the_content_not_the_name(tmp_path: Path) -> None:
    disguised = standard_tar(tmp_path / "weights.zip", "w:gz")  # a .tar.gz under a .zip name
    assert listing(extract_archive(disguised))["config.json"] == FILES["config.json"]
    plain = make_zip(tmp_path / "blob.bin", [("x.txt", b"x")])
    assert extract_archive(plain) == tmp_path / "blob"
    bare = make_zip(tmp_path / "bundle", [("y.txt", b"y")])
    assert extract_archive(bare) == tmp_path / "bundle.d"
    assert default_dest(Path("/m/Model.TAR.XZ")) == Path("/m/Model")
    assert is_archive_name("w.TGZ") and is_archive_name("a.tar.bz2")
    assert not is_archive_name("model.gguf") and not is_archive_name(".zip")


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"GGUF\x03\x00\x00\x00" + bytes(600), "a GGUF model file"),
        (gzip.compress(b"just some text, no tar header" * 40), "gzip data that is not a tar"),
        (bz2.compress(b"plain" * 200), "bzip2 data that is not a tar"),
        (b"\x28\xb5\x2f\xfd" + bytes(100), "a zstd stream"),
        (b"hello world" * 100, "content starting with 68 65 6c 6c"),
        (b"", "an empty file"),
    ],
)
def test_content_that_is_no_archive_is_refused_saying_what_it_is(
    tmp_path: Path, content: bytes, said: str
) -> None:
    archive = tmp_path / "thing.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(ArchiveError, match="is not an archive nbmodels can unpack") as err:
        extract_archive(archive)
    assert said in str(err.value) and "without extract" in str(err.value)
    only_the_archive(archive)


def test_permissions_are_normalised_and_never_special(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "p.tar",
        [
            member("setuid", b"a", mode=0o4777),
            member("setgid", b"b", mode=0o2750),
            member("private", b"c", mode=0o600),
            member("tool", b"d", mode=0o700),
            member("sticky/", kind=tarfile.DIRTYPE, mode=0o1777),
            member("locked/", kind=tarfile.DIRTYPE, mode=0o500),
            member("locked/f", b"e", mode=0o400),
        ],
    )
    folder = extract_archive(archive)
    umask = os.umask(0)
    os.umask(umask)

    def mode(name: str) -> int:
        return stat.S_IMODE((folder / name).lstat().st_mode)

    assert mode("setuid") == 0o755 & ~umask
    assert mode("setgid") == 0o755 & ~umask
    assert mode("private") == 0o644 & ~umask
    assert mode("tool") == 0o755 & ~umask
    assert mode("sticky") == 0o755 & ~umask
    assert mode("locked") == 0o755 & ~umask and mode("locked/f") == 0o644 & ~umask
    assert (folder / "setuid").stat().st_uid == os.getuid()


def test_links_that_stay_inside_are_kept(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "links.tar",
        [
            member("data/real.bin", b"payload"),
            member("data/alias", kind=tarfile.SYMTYPE, link="real.bin"),
            member("top/up", kind=tarfile.SYMTYPE, link="../data/real.bin"),
            member("dirlink", kind=tarfile.SYMTYPE, link="data"),
            member("hard", kind=tarfile.LNKTYPE, link="data/real.bin"),
            member("dangling", kind=tarfile.SYMTYPE, link="data/not-there"),
        ],
    )
    folder = extract_archive(archive)
    got = listing(folder)
    assert got["data/alias"] == "->real.bin" and got["top/up"] == "->../data/real.bin"
    assert (folder / "dirlink" / "real.bin").read_bytes() == b"payload"
    assert (folder / "hard").read_bytes() == b"payload"
    assert (folder / "hard").stat().st_ino == (folder / "data/real.bin").stat().st_ino
    zipped = make_zip(
        tmp_path / "zlinks.zip",
        [("d/f.txt", b"F"), (zinfo("d/l", mode=stat.S_IFLNK | 0o777), b"f.txt")],
    )
    assert listing(extract_archive(zipped))["d/l"] == "->f.txt"


def test_a_folder_listed_twice_is_one_folder(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "dirs.tar",
        [
            member("./", kind=tarfile.DIRTYPE),
            member("a/", kind=tarfile.DIRTYPE),
            member("./a/x", b"1"),
            member("a", kind=tarfile.DIRTYPE),
        ],
    )
    assert listing(extract_archive(archive)) == {"a": "/", "a/x": b"1"}


@pytest.mark.parametrize(
    ("name", "links", "inside"),
    [
        ("a", {}, True),
        ("a/../b", {}, True),
        ("../a", {}, False),
        ("l/x", {"l": "sub"}, True),
        ("l", {"l": "../out"}, False),
        ("a", {"a": "c/../x", "c": "."}, False),  # ./../x: lexically "x", really "../x"
        ("a/y", {"a": "c/../..", "c": "."}, False),  # c/.. is the folder's parent
        ("a", {"a": "c/../x", "c": "d/e"}, True),  # d/e/../x = d/x
        ("a", {"a": "b", "b": "a"}, False),  # a loop
        ("x/a", {"x": "y", "y": "z/w", "z/w/a": "../../../q"}, False),
        ("d/l", {"d/l": "../../e"}, False),
        ("d/l", {"d/l": "../e"}, True),
    ],
)
def test_links_are_resolved_through_the_archives_own_links(
    name: str, links: dict[str, str], inside: bool
) -> None:
    assert resolves_inside(name, links) is inside


# -- hostile archives ----------------------------------------------------------------------------

Builder = Callable[[Path], Path]


def _tar(*entries: TarEntry) -> Builder:
    return lambda d: make_tar(d / "evil.tar", list(entries))


def _zip(*entries: tuple[str | zipfile.ZipInfo, bytes]) -> Builder:
    return lambda d: make_zip(d / "evil.zip", list(entries))


SYM, HARD = tarfile.SYMTYPE, tarfile.LNKTYPE

HOSTILE: dict[str, tuple[Builder, str]] = {
    "tar dot-dot": (_tar(member("ok", b"1"), member("../outside", b"x")), "'..' component"),
    "tar deep dot-dot": (_tar(member("a/b/../../../outside", b"x")), "'..' component"),
    "tar absolute": (_tar(member("/tmp/outside", b"x")), "absolute path"),
    "tar backslash": (_tar(member("..\\outside", b"x")), "backslash"),
    "zip dot-dot": (_zip(("ok", b"1"), ("../outside", b"x")), "'..' component"),
    "zip absolute": (_zip(("/tmp/outside", b"x")), "absolute path"),
    "zip windows dot-dot": (_zip(("..\\..\\outside", b"x")), "'..' component"),
    "zip drive letter": (_zip(("C:\\outside", b"x")), "drive letter"),
    "zip drive letter slash": (_zip(("c:/outside", b"x")), "drive letter"),
    "control character": (_tar(member("bad\nname", b"x")), "control characters"),
    "bidi override": (_tar(member("cod\u202etxt.exe", b"x")), "control characters"),
    "name too long": (_tar(member("d/" * 520 + "f", b"x")), "longer than 1024 bytes"),
    "component too long": (_tar(member("x" * 256, b"x")), "longer than 255 bytes"),
    "reserved marker name": (_tar(member(MARKER, b"{}")), "reserves"),
    "absolute symlink": (_tar(member("l", kind=SYM, link="/etc/passwd")), "absolute path"),
    "symlink out": (_tar(member("a/l", kind=SYM, link="../../outside")), "points outside"),
    "symlink escape through a link": (
        _tar(member("c", kind=SYM, link="."), member("a", kind=SYM, link="c/../outside")),
        "resolves outside",
    ),
    "symlink loop": (
        _tar(member("a", kind=SYM, link="b"), member("b", kind=SYM, link="a")),
        "resolves outside the folder (or through a loop)",
    ),
    "write through a symlink": (
        _tar(
            member("sub/", kind=tarfile.DIRTYPE),
            member("l", kind=SYM, link="sub"),
            member("l/f", b"x"),
        ),
        "lies under 'l', which is a symlink",
    ),
    "hardlink out": (_tar(member("h", kind=HARD, link="../outside")), "'..' component"),
    "hardlink absolute": (_tar(member("h", kind=HARD, link="/etc/passwd")), "absolute path"),
    "hardlink to nothing": (_tar(member("h", kind=HARD, link="ghost")), "not a regular file"),
    "hardlink to a link": (
        _tar(member("s", kind=SYM, link="x"), member("h", kind=HARD, link="s")),
        "not a regular file",
    ),
    "zip symlink out": (
        _zip((zinfo("l", mode=stat.S_IFLNK | 0o777), b"../../outside")),
        "points outside",
    ),
    "char device": (_tar(member("dev", kind=tarfile.CHRTYPE)), "device file, fifo or socket"),
    "block device": (_tar(member("blk", kind=tarfile.BLKTYPE)), "device file, fifo or socket"),
    "fifo": (_tar(member("pipe", kind=tarfile.FIFOTYPE)), "device file, fifo or socket"),
    "zip char device": (_zip((zinfo("dev", mode=stat.S_IFCHR | 0o644), b"")), "device file"),
    "zip socket": (_zip((zinfo("sock", mode=stat.S_IFSOCK | 0o644), b"")), "device file"),
    "duplicate file": (_tar(member("f", b"1"), member("f", b"2")), "appears more than once"),
    "zip duplicate": (_zip(("f", b"1"), ("f", b"2")), "appears more than once"),
    "file then folder": (
        _tar(member("f", b"1"), member("f/", kind=tarfile.DIRTYPE)),
        "more than once",
    ),
    "file under a file": (_tar(member("f", b"1"), member("f/g", b"2")), "lies under 'f'"),
    "symlink over a folder": (
        _tar(member("d/x", b"1"), member("d", kind=SYM, link=".")),
        "more than once",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_member_is_refused_and_nothing_is_left(tmp_path: Path, case: str) -> None:
    build, fragment = HOSTILE[case]
    base = tmp_path / "dl"
    base.mkdir()
    archive = build(base)
    before = digest(archive)
    with pytest.raises(ArchiveError) as err:
        extract_archive(archive)
    text = str(err.value)
    assert fragment in text, text
    assert "\n" not in text and "\u202e" not in text  # names are shown escaped
    assert "nothing was unpacked" in text.lower() or "Nothing was unpacked" in text
    only_the_archive(archive)
    assert digest(archive) == before
    assert not (tmp_path / "outside").exists()


def test_the_error_names_the_member(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "e.tar", [member("fine", b"1"), member("../x\tz", b"2")])
    with pytest.raises(ArchiveError) as err:
        extract_archive(archive)
    assert err.value.member == "'../x\\tz'"


def test_encrypted_and_bzip2_zip_members_are_refused(tmp_path: Path) -> None:
    enc = make_zip(tmp_path / "enc.zip", [("secret", b"data")])
    raw = bytearray(enc.read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # set the "encrypted" flag in both headers
        at = raw.index(sig)
        flag_at = at + (6 if sig == b"PK\x03\x04" else 8)
        raw[flag_at] |= 1
    enc.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="is encrypted"):
        extract_archive(enc)
    method = tmp_path / "m" / "bz.zip"
    method.parent.mkdir()
    with zipfile.ZipFile(method, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("x", b"y" * 1000)
    with pytest.raises(ArchiveError, match="compression method 12"):
        extract_archive(method)
    only_the_archive(method)


# -- limits --------------------------------------------------------------------------------------


def test_member_count_is_bounded_before_anything_is_written(tmp_path: Path) -> None:
    limits = ExtractLimits(max_members=10)
    z = make_zip(tmp_path / "z" / "many.zip", [(f"f{i}", b"x") for i in range(11)])
    with pytest.raises(ArchiveError, match="11 members, more than 10"):
        extract_archive(z, limits=limits)
    only_the_archive(z)
    t = make_tar(tmp_path / "t" / "many.tar.gz", [member(f"f{i}", b"x") for i in range(11)], "w:gz")
    with pytest.raises(ArchiveError, match="more than 10 members"):
        extract_archive(t, limits=limits)
    only_the_archive(t)
    assert extract_archive(t, limits=ExtractLimits(max_members=11)).is_dir()


@pytest.mark.parametrize("mode", ["w", "w:gz", "zip"])
def test_total_size_is_bounded(tmp_path: Path, mode: str) -> None:
    chunks = [(f"part{i}", payload(600_000, seed=i)) for i in range(3)]
    archive = tmp_path / ("big.zip" if mode == "zip" else "big.tar")
    if mode == "zip":
        make_zip(archive, list(chunks))
    else:
        make_tar(archive, [member(n, d) for n, d in chunks], mode)
    with pytest.raises(ArchiveError, match=r"more than 1\.0 MB \(the limit\)") as err:
        extract_archive(archive, limits=ExtractLimits(max_total_bytes=1_000_000))
    assert err.value.member == "'part1'"
    only_the_archive(archive)


def _forged_tar_header(path: Path, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> Path:
    """A tar whose one header claims ``size`` bytes that are not there."""
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = kind
    path.write_bytes(ti.tobuf(format=tarfile.GNU_FORMAT) + bytes(1024))
    return path


def test_free_space_is_checked_from_the_headers_first(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    archive = _forged_tar_header(tmp_path / "huge.tar", "huge.bin", free + (1 << 30))
    with pytest.raises(InsufficientSpaceError, match="Not enough free space") as err:
        extract_archive(archive, limits=ExtractLimits(max_total_bytes=1 << 60))
    assert err.value.needed > err.value.available
    only_the_archive(archive)


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_a_negative_size_cannot_offset_the_others(tmp_path: Path, mode: str) -> None:
    ti = tarfile.TarInfo("minus")
    ti.size = -(1 << 40)
    header = ti.tobuf(format=tarfile.GNU_FORMAT)  # base-256 fields can be negative
    honest = member("plus", b"x" * 2000)[0].tobuf(format=tarfile.GNU_FORMAT)
    raw = header + honest + b"x" * 2000 + bytes(48) + bytes(1024)
    archive = tmp_path / ("neg.tar" if mode == "w" else "neg.tar.gz")
    archive.write_bytes(raw if mode == "w" else gzip.compress(raw))
    with pytest.raises(ArchiveError, match="has a negative size"):
        extract_archive(archive)
    only_the_archive(archive)


def test_a_header_that_promises_more_than_the_archive_holds_is_damage(tmp_path: Path) -> None:
    archive = _forged_tar_header(tmp_path / "short.tar", "f.bin", 5_000_000)
    with pytest.raises(ArchiveError, match="damaged"):
        extract_archive(archive)
    only_the_archive(archive)


def test_a_forged_pax_header_cannot_fill_the_memory(tmp_path: Path) -> None:
    archive = _forged_tar_header(tmp_path / "pax.tar", "././@PaxHeader", 100 << 20, tarfile.XHDTYPE)
    with pytest.raises(ArchiveError, match="asks to read 104857600 bytes at once"):
        extract_archive(archive)
    only_the_archive(archive)


def _bomb(path: Path, size: int = 64 << 20) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("readme.txt", b"hello")
        with zf.open("zeros.bin", "w") as f:
            block = bytes(1 << 20)
            for _ in range(size >> 20):
                f.write(block)
    return path


def test_a_zip_bomb_is_refused_from_its_headers(tmp_path: Path) -> None:
    archive = _bomb(tmp_path / "bomb.zip")
    assert archive.stat().st_size < 200_000
    with pytest.raises(ArchiveError, match="expands more than 200 times") as err:
        extract_archive(archive)
    assert "zip bomb" in str(err.value) and err.value.member == "'zeros.bin'"
    only_the_archive(archive)


def test_a_zip_bomb_with_lying_headers_never_writes_more_than_it_declared(
    tmp_path: Path,
) -> None:
    archive = _bomb(tmp_path / "liar.zip")
    raw = bytearray(archive.read_bytes())
    # The central directory claims 1 MiB (a harmless ratio); the stream inflates to 64 MiB.
    at = raw.rindex(b"PK\x01\x02")
    assert raw[at + 46 : at + 46 + 9] == b"zeros.bin"
    struct.pack_into("<I", raw, at + 24, 1 << 20)
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="damaged"):
        extract_archive(archive, limits=ExtractLimits(max_total_bytes=2 << 20))
    only_the_archive(archive)


def test_a_corrupted_member_fails_its_checksum_and_leaves_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "crc.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.bin", b"A" * 4000)
        zf.writestr("b.bin", b"B" * 4000)
    raw = bytearray(archive.read_bytes())
    raw[raw.index(b"B" * 100) + 50] ^= 0xFF
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="damaged"):
        extract_archive(archive)
    only_the_archive(archive)


# -- the destination -----------------------------------------------------------------------------


def test_a_rerun_on_the_same_archive_does_no_work(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", list(FILES.items()))
    folder = extract_archive(archive)
    (folder / "sentinel").write_text("added after unpacking")
    assert extract_archive(archive) == folder
    assert (folder / "sentinel").exists()  # the folder was not rebuilt
    assert extract_archive(archive, sha256=digest(archive)) == folder  # digest unknown before
    assert (folder / "sentinel").exists()


@pytest.fixture(params=["linux calls", "portable fallbacks"])
def renames(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of publishing: renameat2 (no-replace, exchange) and syncfs, and the plain
    renames and per-file fsyncs used where the system or file system has neither."""
    if request.param == "portable fallbacks":
        monkeypatch.setattr(_folder, "_libc_renameat2", lambda: None)
        monkeypatch.setattr(_write, "_libc_syncfs", lambda: None)
    else:
        assert _folder._libc_renameat2() is not None and _write._libc_syncfs() is not None
    return str(request.param)


def test_an_existing_folder_is_replaced_only_with_force(tmp_path: Path, renames: str) -> None:
    archive = make_zip(tmp_path / "m.zip", list(FILES.items()))
    theirs = tmp_path / "m"
    theirs.mkdir()
    (theirs / "mine.txt").write_text("user data")
    with pytest.raises(ArchiveError, match="already exists and is a folder nbmodels did not") as e:
        extract_archive(archive)
    assert "force=True" in str(e.value)
    assert listing(theirs) == {"mine.txt": b"user data"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.zip"]
    folder = extract_archive(archive, force=True)
    assert {k for k, v in listing(folder).items() if v != "/"} == set(FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.zip"]  # old one gone too


def test_a_folder_from_another_archive_is_not_overwritten(tmp_path: Path, renames: str) -> None:
    first = make_zip(tmp_path / "m.zip", [("v1.txt", b"1")])
    extract_archive(first)
    second = make_zip(tmp_path / "m2.zip", [("v2.txt", b"2")])
    with pytest.raises(ArchiveError, match=r"unpacked from another archive \('m\.zip'\)"):
        extract_archive(second, tmp_path / "m")
    assert listing(tmp_path / "m") == {"v1.txt": b"1"}
    extract_archive(second, tmp_path / "m", force=True)
    assert listing(tmp_path / "m") == {"v2.txt": b"2"}


def test_a_link_at_the_destination_is_never_followed(tmp_path: Path, renames: str) -> None:
    archive = make_zip(tmp_path / "dl" / "m.zip", [("x", b"1")])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "dl" / "m").symlink_to(elsewhere)
    with pytest.raises(ArchiveError, match="taken by a file or link"):
        extract_archive(archive)
    folder = extract_archive(archive, force=True)
    assert not folder.is_symlink() and listing(folder) == {"x": b"1"}
    assert list(elsewhere.iterdir()) == []


def test_a_stop_request_midway_leaves_nothing(tmp_path: Path) -> None:
    class StopAfter(threading.Event):
        """Reports "set" from the n-th look on: a stop landing between two chunks."""

        def __init__(self, n: int) -> None:
            super().__init__()
            self.looks = n

        def is_set(self) -> bool:
            self.looks -= 1
            return self.looks < 0

    archive = make_tar(
        tmp_path / "s.tar.gz", [member(f"f{i}", payload(3 << 20, seed=i)) for i in range(3)], "w:gz"
    )
    with pytest.raises(CanceledError, match="was stopped; nothing was left behind"):
        extract_archive(archive, stop=StopAfter(6))
    only_the_archive(archive)


def test_leftovers_of_a_killed_process_are_swept(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(done.stdout)
    archive = make_zip(tmp_path / "m.zip", [("x", b"1")])
    stale = tmp_path / f".m.{dead}.0123abcd.extracting"
    (stale / "half").mkdir(parents=True)
    mine = tmp_path / f".m.{os.getpid()}.0123abcd.extracting"  # this process: may be working
    mine.mkdir()
    other = tmp_path / f".m.{dead}.{os.getpid()}.0123abcd.extracting"  # folder "m.<dead>"'s
    other.mkdir()
    extract_archive(archive)
    assert not stale.exists() and mine.exists() and other.exists()


def test_two_threads_unpacking_one_archive_agree(tmp_path: Path, renames: str) -> None:
    archive = make_tar(
        tmp_path / "c.tar", [member(f"f{i}", payload(200_000, seed=i)) for i in range(20)]
    )
    results: list[Path | BaseException] = []

    def work() -> None:
        try:
            results.append(extract_archive(archive))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [tmp_path / "c"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "c.tar"]
    assert len(listing(tmp_path / "c")) == 20


def test_the_marker_records_the_archive_and_origin(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", [("x", b"1")])
    sha = digest(archive)
    folder = extract_archive(archive, sha256=sha, origin="url:http://127.0.0.1/m.zip")
    data = json.loads((folder / MARKER).read_text())
    assert data == {
        "version": 1,
        "archive": "m.zip",
        "size": archive.stat().st_size,
        "mtime_ns": archive.stat().st_mtime_ns,
        "sha256": sha,
        "origin": "url:http://127.0.0.1/m.zip",
        "format": "zip",
        "members": 1,
        "bytes": 1,
    }
