"""The engine: one background thread with its own asyncio loop, the jobs, the registry.

``_engine`` (the loop thread, submitting and driving jobs), ``_run`` (a job's mutable state,
owned by the engine), ``_job`` (the public :class:`Job`, the read-side handle), ``_fetch`` (one
file under its cross-process lock), ``_unpack`` (the extraction step), ``_registry`` (the job
history in SQLite), ``_hooks`` (where the notebook layer plugs in), ``_submission`` (a reference
checked once, and its job key) and ``_wire`` (a job as the native HTTP API's JSON, and back).
``Job`` is built from a ``JobFeed`` and ``Controls``, so another driver of downloads (the
server's engine seen from a kernel, ``nbmodels.cluster``) can hand its users the same ``Job``
and widget.
"""

from ._engine import Engine, get_engine, set_engine, shutdown
from ._fetch import discard_file, file_lock
from ._hooks import load_front_end, register_front_end, show
from ._job import Controls, Job, JobEngine, JobFeed, JobState
from ._submission import Submission
from ._wire import job_payload, options_from_payload, state_from_payload

__all__ = [
    "Controls",
    "Engine",
    "Job",
    "JobEngine",
    "JobFeed",
    "JobState",
    "Submission",
    "discard_file",
    "file_lock",
    "get_engine",
    "job_payload",
    "load_front_end",
    "options_from_payload",
    "register_front_end",
    "set_engine",
    "show",
    "shutdown",
    "state_from_payload",
]
