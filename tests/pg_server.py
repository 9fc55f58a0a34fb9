"""A throwaway PostgreSQL server on a free loopback port, for tests and benchmarks.

Needs ``initdb`` and ``pg_ctl`` on the PATH (Debian's ``postgresql``; ``.ci/run``
installs it). ``initdb`` refuses to run as root: the server then runs as the
``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from digest.capture import free_port

__all__ = ["available", "throwaway_postgres"]


def available() -> bool:
    """Whether the server binaries are installed."""
    return bool(shutil.which("initdb") and shutil.which("pg_ctl"))


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def throwaway_postgres(*settings: str) -> Iterator[str]:
    """A fresh server for the block; yields its SQLAlchemy URL (no database name).

    ``settings``: extra server settings, ``name=value`` each (``fsync=off``…).
    """
    folder = Path(tempfile.mkdtemp(prefix="digest-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    subprocess.run(
        _as_postgres(["initdb", "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    options = " ".join(
        [f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", *(f"-c {s}" for s in settings)]
    )
    subprocess.run(
        _as_postgres(
            ["pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres(["pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)
