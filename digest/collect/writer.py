"""The collect run's one database writer: sources' saves committed in groups.

Every write of a run goes through one thread, so writes never contend and each
source's deduplication sees every earlier source's articles. A commit is what
costs: SQLite syncs its log to disk at each one (a few milliseconds, during
which nothing else can be written), so two hundred sources saved one commit
each spent most of a run's storing time waiting for the disk.

Sources' saves that are waiting while the writer is busy are therefore
committed together, in one transaction (group commit): a source that finishes
alone is committed alone and at once, a crowd shares one commit. Each source is
still all or nothing: when one save of a group fails, the group is rolled back
and its saves are run again one transaction each, so only the failing source
loses its run. No savepoints are involved (SQLite's Python driver does not
handle them reliably).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..db import Connection, Store

__all__ = ["Writer"]

MAX_GROUP = 50
"""Saves committed together at most: a bound on the work lost and redone when one fails."""

T = TypeVar("T")


@dataclass
class _Job:
    function: Callable[..., Any]
    args: tuple[Any, ...]
    grouped: bool
    """Runs inside the group's transaction (``function(conn, *args)``), else alone."""
    done: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class Writer:
    """A thread that runs database work in order; ``close`` when the run is over.

    ``forget`` is called whenever a group's transaction is rolled back, so that
    what the grouped functions learnt from writes that did not last is dropped.
    """

    def __init__(self, store: Store, forget: Callable[[], None]) -> None:
        self._store = store
        self._forget = forget
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="digest-db", daemon=True)
        self._thread.start()

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the writer thread, on its own (it opens what it needs)."""
        return await self._submit(_Job(function, args, grouped=False))

    async def in_group(self, function: Callable[..., T], *args: Any) -> T:
        """``function(conn, *args)`` in a transaction it may share with other sources' saves.

        Whatever it writes is committed before this returns; if it raises, none of
        it is, and no other source's write is lost with it.
        """
        return await self._submit(_Job(function, args, grouped=True))

    async def _submit(self, job: _Job) -> Any:
        self._jobs.put(job)
        return await asyncio.wrap_future(job.done)

    def close(self) -> None:
        """Finish the work already asked for, then stop the thread."""
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            pending = [self._jobs.get()]
            # Whatever queued up during the last commit goes into the next one.
            while len(pending) < MAX_GROUP:
                try:
                    pending.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            group: list[_Job] = []
            for job in pending:
                if job is None:
                    stopping = True
                elif job.grouped:
                    group.append(job)
                else:
                    self._commit(group)
                    group = []
                    try:
                        job.done.set_result(job.function(*job.args))
                    except BaseException as exc:
                        job.done.set_exception(exc)
            self._commit(group)

    def _commit(self, group: list[_Job]) -> None:
        if not group:
            return
        results: list[Any] = []
        try:
            with self._store.begin() as conn:
                for job in group:
                    results.append(_call(conn, job))
        except BaseException as exc:
            self._forget()
            if len(group) == 1:
                group[0].done.set_exception(exc)
                return
            for job in group:  # one transaction each: only the failing save fails
                self._commit([job])
            return
        for job, result in zip(group, results, strict=True):
            job.done.set_result(result)


def _call(conn: Connection, job: _Job) -> Any:
    return job.function(conn, *job.args)
