"""Per-job network options (``timeout``, ``retries``, ``verify_tls``), ``metadata`` kept with a
job, and looking a job up by id: what the HTTP service maps its requests onto (issue 14)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbmodels
from nbmodels._config import Settings
from nbmodels._options import MAX_METADATA_BYTES, Options
from nbmodels.engine import _engine
from tests.conftest import FAST, payload
from tests.faultserver import Fault, FaultServer
from tests.test_hostile import Answer, Scripted, Seen, file_answer, tls_files

__all__ = ["tls_files"]  # the fixture, imported for this module


def _download(server: FaultServer, name: str, tmp_path: Path, **options: object) -> nbmodels.Job:
    return nbmodels.download(server.url(name), dir=tmp_path / "out", display=False, **options)


# -- timeout and retries ---------------------------------------------------------------------


@pytest.fixture
def patient_engine(tmp_path: Path) -> Iterator[_engine.Engine]:
    """An engine whose own waits are long: a job that ends soon did so by its own options."""
    settings = dataclasses.replace(FAST, read_timeout=600.0, max_attempts=50)
    eng = _engine.Engine(settings, home=Path(os.environ["NBMODELS_HOME"]))
    previous = _engine.set_engine(eng)
    try:
        yield eng
    finally:
        eng.close(timeout=5)
        _engine.set_engine(previous)


def test_timeout_is_the_jobs_read_idle_limit(
    patient_engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(200_000))
    server.add_fault("m.bin", Fault.stall(3600, at=0), times=-1)
    job = _download(server, "m.bin", tmp_path, timeout=0.3, retries=0)
    with pytest.raises(nbmodels.NetworkError):
        job.wait(60)  # the engine's own read timeout is 600 s
    assert len(server.requests_for("m.bin")) == 1


@pytest.mark.parametrize("retries", [0, 2])
def test_retries_is_the_number_of_attempts_after_the_first(
    patient_engine: _engine.Engine, server: FaultServer, tmp_path: Path, retries: int
) -> None:
    server.add_file("m.bin", b"data")
    server.add_fault("m.bin", Fault.error(503), times=-1)
    job = _download(server, "m.bin", tmp_path, retries=retries)
    with pytest.raises(nbmodels.NetworkError, match=f"after {retries + 1} attempts"):
        job.wait(60)
    assert len(server.requests_for("m.bin")) == retries + 1


def test_retries_and_timeout_survive_the_registry_and_retry(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", b"data")
    job = _download(server, "m.bin", tmp_path, retries=0, timeout=12)
    job.wait(30)
    assert job.options.record()["retries"] == 0
    assert job.options.record()["timeout"] == 12.0
    (row,) = [j for j in engine.history() if j.id == job.id]
    assert row.options.retries == 0 and row.options.timeout == 12.0
    assert job.retry().options.retries == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be more than 0"),
        ({"timeout": True}, "timeout must be a number"),
        ({"timeout": 10_000}, "at most 3600"),
        ({"retries": -1}, "retries must be between 0"),
        ({"retries": 1.5}, "retries must be a whole number"),
        ({"verify_tls": "no"}, "verify_tls must be True or False"),
    ],
)
def test_bad_network_options_are_refused_with_the_reason(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Options.create(**options)


# -- verify_tls ------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path]) -> Iterator[tuple[Scripted, bytes]]:
    """An https server whose self-signed certificate nobody trusts."""
    data = payload(300_000)

    def app(seen: Seen) -> Answer:
        return file_answer(seen, data)

    with Scripted(app, tls=tls_files) as srv:
        yield srv, data


def test_verify_tls_false_skips_certificate_checks_for_that_job_only(
    engine: _engine.Engine, tls_server: tuple[Scripted, bytes], tmp_path: Path
) -> None:
    srv, data = tls_server
    url = f"{srv.url}/m.bin"
    digest = hashlib.sha256(data).hexdigest()
    checked = nbmodels.download(url, dir=tmp_path / "a", sha256=digest, display=False)
    with pytest.raises(nbmodels.NetworkError):
        checked.wait(60)
    insecure = nbmodels.download(
        url, dir=tmp_path / "b", sha256=digest, verify_tls=False, display=False
    )
    assert insecure.wait(60).read_bytes() == data
    after = nbmodels.download(url, dir=tmp_path / "c", sha256=digest, display=False)
    with pytest.raises(nbmodels.NetworkError):
        after.wait(60)  # the next job checks certificates again
    assert not (tmp_path / "c" / "m.bin").exists()


def test_verify_tls_false_with_a_wrong_digest_publishes_nothing(
    engine: _engine.Engine, tls_server: tuple[Scripted, bytes], tmp_path: Path
) -> None:
    srv, _data = tls_server
    job = nbmodels.download(
        f"{srv.url}/m.bin", dir=tmp_path / "o", sha256="0" * 64, verify_tls=False, display=False
    )
    with pytest.raises(nbmodels.IntegrityError):
        job.wait(60)
    assert not (tmp_path / "o" / "m.bin").exists()


@pytest.mark.parametrize(
    ("ref", "options", "message"),
    [
        ("https://127.0.0.1:9/m.bin", {}, "needs sha256"),
        ("hf:owner/repo/config.json", {"sha256": "a" * 64}, "only for plain http"),
        ("https://u:p@127.0.0.1:9/m.bin", {"sha256": "a" * 64}, "credentials"),
    ],
)
def test_verify_tls_false_is_refused_where_it_is_not_safe(
    engine: _engine.Engine, ref: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        nbmodels.download(ref, verify_tls=False, display=False, **options)
    assert engine.jobs() == []


# -- metadata --------------------------------------------------------------------------------


def test_metadata_is_kept_with_the_job_and_in_the_registry(
    server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", b"data")
    meta = {"description": "BERT", "tags": ["nlp", "large"], "author": "Org", "n": 3}
    home = Path(os.environ["NBMODELS_HOME"])
    eng = _engine.Engine(FAST, home=home)
    previous = _engine.set_engine(eng)
    try:
        job = _download(server, "m.bin", tmp_path, metadata=meta)
        job.wait(30)
        assert job.metadata == meta
        assert job.to_dict()["metadata"] == meta
        job.metadata["tags"].append("changed")  # type: ignore[index]
        assert job.metadata == meta  # a copy each time
    finally:
        eng.close()
        _engine.set_engine(previous)
    later = _engine.Engine(FAST, home=home)
    try:
        found = later.job(job.id)
        assert found is not None and found.read_only
        assert found.metadata == meta and found.to_dict()["metadata"] == meta
    finally:
        later.close()


def test_jobs_without_metadata_say_none(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", b"data")
    job = _download(server, "m.bin", tmp_path)
    job.wait(30)
    assert job.metadata is None and "metadata" not in job.to_dict()
    assert "metadata" not in job.options.record()


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (["a"], "must be a JSON object"),
        ("not json", "not JSON"),
        ({"api_token": "x"}, r"metadata\.api_token looks like a secret"),
        ({"Password": "x"}, "looks like a secret"),
        ({"notes": ["ok", "Bearer abcdefghijk"]}, r"metadata\.notes\[1\] holds a token"),
        ({"src": "https://cdn/x?X-Amz-Signature=abc"}, "signed URL"),
        ({"hf": "hf_abcdefghijklmnopqrstuvwxyz0123456789"}, "holds a token"),
        ({"x": "y" * MAX_METADATA_BYTES}, f"at most {MAX_METADATA_BYTES}"),
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}, "nested more than"),
        ({"f": float("nan")}, "only JSON values"),
        ({1: "x"}, "not a string"),
    ],
)
def test_bad_metadata_is_refused_naming_the_place(metadata: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Options.create(metadata=metadata)


# -- looking a job up ------------------------------------------------------------------------


def test_engine_finds_a_job_by_id_live_or_from_the_registry(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", b"data")
    job = _download(server, "m.bin", tmp_path)
    assert engine.job(job.id) is job
    job.wait(30)
    assert engine.job("0" * 12) is None
    other = _engine.Engine(Settings(), home=Path(os.environ["NBMODELS_HOME"]))
    try:
        found = other.job(job.id)
        assert found is not None and found.status == "completed" and found.read_only
    finally:
        other.close()


def test_every_option_has_one_check() -> None:
    from nbmodels._options import _CHECKS, OPTION_NAMES

    assert set(_CHECKS) == set(OPTION_NAMES)
