"""The engine: one background thread with its own asyncio loop, the jobs, the registry.

``_engine`` (the loop thread, submitting and driving jobs), ``_run`` (a job's mutable state,
owned by the engine), ``_job`` (the public :class:`Job`, the read-side handle), ``_fetch`` (one
file under its cross-process lock), ``_unpack`` (the extraction step), ``_registry`` (the job
history in SQLite) and ``_hooks`` (where the notebook layer plugs in). ``Job`` is built from a
``JobFeed`` and ``Controls``, so another driver of downloads (``nbmodels.cluster``) can hand
its users the same ``Job`` and widget.
"""

from ._engine import Engine, get_engine, set_engine, shutdown
from ._hooks import load_front_end, register_front_end, show
from ._job import Controls, Job, JobFeed, JobState

__all__ = [
    "Controls",
    "Engine",
    "Job",
    "JobFeed",
    "JobState",
    "get_engine",
    "load_front_end",
    "register_front_end",
    "set_engine",
    "show",
    "shutdown",
]
