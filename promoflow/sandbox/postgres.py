"""A throwaway PostgreSQL cluster on 127.0.0.1, for tests and benchmarks (Debian's `postgresql` binaries)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from promoflow.errors import TerminalError
from promoflow.server import free_port


@dataclass(frozen=True)
class LocalPostgres:
    port: int
    pid: int  # the postmaster
    bindir: Path

    def url(self, driver: str, database: str = "postgres") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        command = [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name]
        subprocess.run(command, check=True, capture_output=True)


@contextmanager
def throwaway_postgres() -> Iterator[LocalPostgres]:
    """initdb in a temporary directory (trust auth, fsync off), start it on a free port, remove it afterwards."""
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdbs:
        raise TerminalError("PostgreSQL is not installed: scripts/test installs Debian's `postgresql` package.")
    bindir = Path(initdbs[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="promoflow-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        data.chmod(0o755)
        shutil.chown(data, "postgres", "postgres")
    port = free_port(0)
    pg_ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data / "db")]
    try:
        subprocess.run(
            [
                *as_postgres,
                str(bindir / "initdb"),
                "-D",
                str(data / "db"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*pg_ctl, "-o", f"-h 127.0.0.1 -p {port} -k {data} -F", "-l", str(data / "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )
        postmaster = int((data / "db" / "postmaster.pid").read_text().split()[0])
        yield LocalPostgres(port, postmaster, bindir)
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
