"""A bounded soak (issue 6): 50 jobs over plain URLs and Hub repos with seeded random faults and
random pause / resume / cancel, then every outcome checked against docs/public-api.md
and docs/download-contract.md.

Decisions are seeded; when they land depends on the machine, so every assertion holds for any
timing: completed files are byte-exact (one version of a file that changed, never a mix),
canceled jobs leave no partial data, only the jobs built to fail fail, and the registry that a
new session reads back agrees with every job's final status.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

import nbmodels
from nbmodels.engine import _engine
from nbmodels.testing import Fault as HubFault
from nbmodels.testing import GeneratedFile, HubEmulator
from tests.conftest import FAST, payload
from tests.faultserver import Fault, FaultServer
from tests.test_hostile import custom_engine

MIB = 1 << 20
URL_JOBS = 38
HUB_REPOS = ("soak/a", "soak/b", "soak/c")
FILES_PER_REPO = 4
TERMINAL = {"completed", "already_downloaded", "failed", "canceled"}


def _partials(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.endswith((".nbmodels.part", ".nbmodels.json"))
    )


def _url_plan(rnd: random.Random, server: FaultServer, i: int) -> dict[str, Any]:
    """One URL job: its file, its faults and what it may end as."""
    name = f"u{i:02d}.bin"
    size = rnd.choice([60_000, 400_000, 1_500_000, 1_500_000, 5 * MIB + 123])
    data = payload(size, seed=1000 + i)
    server.add_file(name, data)
    plan: dict[str, Any] = {"name": name, "versions": [data], "fails": None, "opts": {}}
    kind = rnd.choice(
        ["none", "drop", "drops", "503", "429", "stall", "slow", "range", "update", "no-range",
         "drop", "drops", "slow", "update", "digest-ok",
         "missing", "gzip", "digest-bad"]
    )  # fmt: skip
    if kind == "drop":
        server.add_fault(name, Fault.drop(after=rnd.randrange(0, size), rst=rnd.random() < 0.5))
    elif kind == "drops":
        for _ in range(3):
            server.add_fault(name, Fault.drop(after=rnd.randrange(1, size)))
    elif kind == "503":
        server.add_fault(name, Fault.error(503, retry_after=0), times=2)
    elif kind == "429":
        server.add_fault(name, Fault.error(429, retry_after=1))
    elif kind == "stall":
        server.add_fault(name, Fault.stall(3.0, at=size // 2, then="close"))
    elif kind == "range":
        server.add_fault(name, Fault.drop(after=size // 3))
        server.add_fault(name, Fault.bad_content_range(start=1))
    elif kind == "update":
        new = payload(size + rnd.choice([0, 999]), seed=2000 + i)
        server.add_fault(name, Fault.drop(after=size // 2))
        server.add_fault(name, Fault.update(new))
        plan["versions"].append(new)
    elif kind == "no-range":
        server.add_fault(name, Fault.drop(after=size // 2))
        server.add_fault(name, Fault.no_range())
    elif kind == "missing":
        server.add_fault(name, Fault.error(404), times=-1)
        plan["fails"] = nbmodels.NotFoundError
    elif kind == "gzip":
        server.add_fault(name, Fault.gzipped(), times=-1)
        plan["fails"] = nbmodels.NetworkError
    elif kind == "digest-ok":
        plan["opts"]["sha256"] = hashlib.sha256(data).hexdigest()
    elif kind == "digest-bad":
        plan["opts"]["sha256"] = hashlib.sha256(data + b"!").hexdigest()
        plan["fails"] = nbmodels.IntegrityError
    if kind in ("slow", "none", "drop", "503") or rnd.random() < 0.4:
        # Slow enough that pauses and cancels land mid-transfer.
        server.add_fault(name, Fault.trickle(rnd.choice([600_000, 1_200_000])), times=-1)
    if size > 4 * MIB and rnd.random() < 0.5:
        plan["opts"]["connections"] = 4
    plan["kind"] = kind
    return plan


@pytest.mark.slow
def test_soak_fifty_jobs_with_faults_pauses_and_cancels(
    server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rnd = random.Random(4242)
    out = tmp_path / "out"
    started = time.monotonic()
    home = Path(os.environ["NBMODELS_HOME"])
    with HubEmulator() as hub, custom_engine(max_concurrent_jobs=6):
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        expected_hub: dict[str, bytes] = {}
        for r, repo_id in enumerate(HUB_REPOS):
            files = {
                f"f{k}.bin": GeneratedFile(rnd.choice([100_000, 700_000, 2 * MIB]), f"{r}-{k}")
                for k in range(FILES_PER_REPO)
            }
            repo = hub.add_repo(repo_id, files)
            for path in files:
                expected_hub[f"hf:{repo_id}/{path}"] = repo.file(path).read()
        hub.throttle = 1_500_000
        hub.faults.add(HubFault("drop", after_bytes=150_000, times=3, origin="cdn"))
        hub.faults.add(HubFault("reset", times=2, origin="cdn"))
        hub.faults.add(HubFault("status", status=503, retry_after=0, times=2, path_glob="/api/*"))
        hub.faults.add(HubFault("stall", seconds=1.0, times=2, origin="cdn"))

        plans = [_url_plan(rnd, server, i) for i in range(URL_JOBS)]
        jobs: list[tuple[nbmodels.Job, dict[str, Any]]] = []
        refs = [("url", p) for p in plans] + [("hub", {"ref": ref}) for ref in expected_hub]
        rnd.shuffle(refs)
        for kind, plan in refs:
            if kind == "url":
                job = nbmodels.download(server.url(plan["name"]), dir=out, **plan["opts"])
            else:
                job = nbmodels.download(plan["ref"])
            plan["source"] = kind
            jobs.append((job, plan))
        assert len(jobs) == 50

        # Random pauses, resumes and cancels while they run.
        canceled: set[str] = set()
        paused: set[str] = set()
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not all(j.done for j, _p in jobs):
            time.sleep(0.05)
            running = [j for j, _p in jobs if not j.done]
            job = running[rnd.randrange(len(running))] if running else jobs[0][0]
            action = rnd.random()
            if action < 0.1 and len(canceled) < 8:
                if job.cancel():
                    canceled.add(job.id)
            elif action < 0.35 and len(paused) < 15:
                if job.pause():
                    paused.add(job.id)
            elif action < 0.5:
                job.resume()
        for job, _plan in jobs:  # nothing stays paused
            job.resume()
        for job, _plan in jobs:
            with contextlib.suppress(nbmodels.NbmodelsError):
                job.wait(max(1.0, 60 - (time.monotonic() - started)))

        # A finished file asked for again costs nothing.
        again = [
            (j, p) for j, p in jobs
            if p["source"] == "url" and j.status == "completed" and "sha256" not in p["opts"]
        ][:5]  # fmt: skip
        server.clear_log()
        for _job, plan in again:
            repeat = nbmodels.download(server.url(plan["name"]), dir=out)
            repeat.wait(30)
            assert repeat.status == "already_downloaded"
            jobs.append((repeat, plan))
        assert [r for r in server.log if r.name in {p["name"] for _j, p in again}] == []

        final = {job.id: job.status for job, _plan in jobs}
        if os.environ.get("NBM_SOAK_REPORT"):
            from collections import Counter

            print(Counter(final.values()), len(paused), "paused", len(canceled), "canceled",
                  Counter(p.get("kind", "hub") for _j, p in jobs))  # fmt: skip
        for job, plan in jobs:
            status = job.status
            assert status in TERMINAL, (job.ref, status)
            if status in ("completed", "already_downloaded"):
                got = Path(job.path).read_bytes()  # type: ignore[arg-type]
                if plan["source"] == "url":
                    assert plan["fails"] is None, (job.ref, plan["kind"])
                    assert any(got == v for v in plan["versions"]), (job.ref, plan["kind"])
                else:
                    assert got == expected_hub[plan["ref"]], job.ref
            elif status == "canceled":
                assert job.id in canceled
                assert isinstance(job.error, nbmodels.CanceledError)
                target = out / plan["name"] if plan["source"] == "url" else None
                if target is not None and target.exists():  # finished just before the cancel
                    assert any(target.read_bytes() == v for v in plan["versions"])
            else:
                assert plan.get("fails") is not None, (job.ref, plan.get("kind"), job.error)
                assert isinstance(job.error, plan["fails"]), (job.ref, job.error)
                assert not (out / plan["name"]).exists()
        assert _partials(out) == []
        assert _partials(Path(os.environ["HF_HOME"])) == []
        assert hub.server_errors == []
        assert time.monotonic() - started < 90

    # A new session reads the same outcome back from the registry.
    later = _engine.Engine(FAST, home=home)
    try:
        recorded = {job.id: job.status for job in later.history()}
    finally:
        later.close()
    assert recorded == final
