"""Where a run's feeds are parsed: worker processes and this process's own thread.

In a large run (see ``prepare.worker_count``), fetched feeds wait in one queue.
Worker processes take them a few at a time (one task per few feeds: each task
costs this process about a millisecond of handing over, whatever its size), and
this process's parsing thread takes one too while many are waiting, since it
has time to spare once the requests are out; near the end of the burst it stops,
leaving its time to storing what the workers send back. In a small run, or if
the workers die (killed, out of memory), everything is parsed in the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from .prepare import Parsed, parse_and_prepare, parse_each, parser_pool, worker_count

__all__ = ["Parsing"]

log = logging.getLogger(__name__)

BATCH = 8
"""Feeds sent to a worker in one task at most."""
TASKS_PER_WORKER = 2
"""Tasks in hand per worker: one being parsed, one ready behind it, so that the
worker is not left idle while this process, busy too, is slow to hand over more."""
HERE_FROM = 16
"""Feeds waiting from which this process's own thread parses one too. Measured on the
200-feed benchmark (two cores): never, 0.2-0.3 s slower; from 4 waiting (with one-feed
tasks), the thread took so much that the worker sat idle a third of the run."""


@dataclass(frozen=True)
class _Job:
    args: tuple[Any, ...]
    done: asyncio.Future[Parsed]


class Parsing:
    """Parses feeds for one run; create and use it on the run's event loop, then ``close``."""

    def __init__(self, sources: int) -> None:
        # One thread: parsing holds the interpreter lock, so more threads would only
        # take turns with it, and with the event loop.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "digest-parse")
        self._workers = worker_count(sources)
        # The pool starts in the background: starting its workers takes a few tenths
        # of a second that the first requests need not wait for. None: no workers.
        self._pool: asyncio.Future[concurrent.futures.Executor | None] | None = None
        if self._workers:
            self._pool = asyncio.ensure_future(asyncio.to_thread(_start_pool, sources))
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._backlog = asyncio.Event()
        self._dispatchers: list[asyncio.Task[None]] = []
        self._broken = False

    async def parse(self, *args: Any) -> Parsed:
        """``parse_and_prepare(*args)``, wherever there is room first."""
        pool = None if self._pool is None or self._broken else await self._pool
        if pool is None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, parse_and_prepare, *args)
        if not self._dispatchers:
            self._dispatchers = [
                asyncio.create_task(self._to_workers(pool))
                for _ in range(TASKS_PER_WORKER * self._workers)
            ]
            self._dispatchers.append(asyncio.create_task(self._here()))
        job = _Job(args, asyncio.get_running_loop().create_future())
        self._jobs.put_nowait(job)
        if self._jobs.qsize() >= HERE_FROM:
            self._backlog.set()
        return await job.done

    async def close(self) -> None:
        """Stop the dispatchers and the workers (the run is over: nothing is queued)."""
        for task in self._dispatchers:
            task.cancel()
        await asyncio.gather(*self._dispatchers, return_exceptions=True)
        pool = None if self._pool is None else await self._pool
        if pool is not None:  # off the event loop: a worker may be finishing a batch
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        self._thread.shutdown(wait=True, cancel_futures=True)

    async def _to_workers(self, pool: concurrent.futures.Executor) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._jobs.get()]
            while len(jobs) < BATCH and not self._jobs.empty():
                jobs.append(self._jobs.get_nowait())
            if not self._broken:
                try:
                    outcomes = await loop.run_in_executor(
                        pool, parse_each, [job.args for job in jobs]
                    )
                except BrokenProcessPool:
                    if not self._broken:
                        log.warning("feed parsing workers stopped; parsing in this process")
                    self._broken = True
                except Exception as exc:  # the batch could not cross over (a bug): it fails
                    for job in jobs:
                        _settle(job, False, exc)
                    continue
                else:
                    for job, (ok, value) in zip(jobs, outcomes, strict=True):
                        _settle(job, ok, value)
                    continue
            for job in jobs:  # the workers are gone: the thread parses what they were given
                await self._in_thread(job)

    async def _here(self) -> None:
        while True:
            await self._backlog.wait()
            if self._jobs.qsize() < HERE_FROM:
                self._backlog.clear()
                continue
            await self._in_thread(self._jobs.get_nowait())

    async def _in_thread(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        try:
            parsed = await loop.run_in_executor(self._thread, parse_and_prepare, *job.args)
        except Exception as exc:
            _settle(job, False, exc)
        else:
            _settle(job, True, parsed)


def _settle(job: _Job, ok: bool, value: Any) -> None:
    if job.done.done():  # its source was cancelled meanwhile
        return
    if ok:
        job.done.set_result(value)
    else:
        job.done.set_exception(value)


def _start_pool(sources: int) -> concurrent.futures.Executor | None:
    try:
        return parser_pool(sources)
    # No processes to be had (limits, a sandbox, a Python without process-shared
    # semaphores): the run parses in this process, as a small one does.
    except Exception as exc:
        log.warning("feed parsing workers could not start (%s); parsing in this process", exc)
        return None
