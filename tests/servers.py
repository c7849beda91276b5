"""Real PostgreSQL and Redis servers for the tests, from Debian's packages.

Each pytest session starts its own throw-away servers on free ports (listening on all
addresses so pods of the test cluster can reach them) with a generated password, and
stops them at the end. `make test` installs the packages; see scripts/install-deps.sh.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


@dataclass
class Postgres:
    port: int
    password: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    user: str = "tickrun"
    command: list[str] = field(default_factory=list)

    def url(self, host: str = "127.0.0.1", database: str = "tickrun") -> str:
        return f"postgresql://{self.user}:{self.password}@{host}:{self.port}/{database}"

    def shut_down(self) -> None:
        """A fast shutdown: clients are cut off at once, the data stays. (pg_ctl, as the
        server's own user: runuser does not pass a signal on to its child.)"""
        prefix, _ = _as_postgres_user()
        subprocess.run([*prefix, str(PG_BIN_DIRS[0] / "pg_ctl"), "stop", "-m", "fast", "-D",
                        str(self.data_dir / "data")], check=True, capture_output=True)
        self.process.wait(30)

    def start_again(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _as_postgres_user() -> tuple[list[str], int | None]:
    """PostgreSQL refuses to run as root: drop to the `postgres` user when root."""
    if os.geteuid() != 0:
        return [], None
    uid = pwd.getpwnam("postgres").pw_uid
    return ["runuser", "-u", "postgres", "--"], uid


def start_postgres() -> Postgres:
    bin_dir = PG_BIN_DIRS[0]
    prefix, uid = _as_postgres_user()
    data_dir = Path(tempfile.mkdtemp(prefix="tickrun-pg-"))
    password = secrets.token_urlsafe(18)
    pwfile = data_dir / "pw"
    pwfile.write_text(password)
    if uid is not None:
        os.chown(data_dir, uid, -1)
        os.chown(pwfile, uid, -1)
    pgdata = data_dir / "data"
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "tickrun",
                    "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    pwfile.unlink()
    port = free_port()
    command = [*prefix, str(bin_dir / "postgres"), "-D", str(pgdata), "-p", str(port),
               "-c", "listen_addresses=*", "-c", f"unix_socket_directories={data_dir}",
               "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
               "-c", "max_connections=300"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (pgdata / "pg_hba.conf").write_text(
        "local all all scram-sha-256\nhost all all 0.0.0.0/0 scram-sha-256\n"
        "host all all ::/0 scram-sha-256\n")
    _wait_port(port)
    pg = Postgres(port=port, password=password, data_dir=data_dir, process=proc,
                  command=command)
    _wait_ready(pg)
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "reload", "-D", str(pgdata)],
                   check=True, capture_output=True)
    return pg


def _wait_ready(pg: Postgres) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(pg.url(database="postgres"), autocommit=True) as conn:
                conn.execute("CREATE DATABASE tickrun")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass
class Redis:
    port: int
    password: str
    process: subprocess.Popen[bytes]

    def url(self, host: str = "127.0.0.1", db: int = 0) -> str:
        return f"redis://:{self.password}@{host}:{self.port}/{db}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_redis(port: int | None = None, password: str | None = None) -> Redis:
    port = port or free_port()
    password = password or secrets.token_urlsafe(18)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "0.0.0.0", "--protected-mode", "no",
         "--save", "", "--appendonly", "no", "--requirepass", password,
         "--maxclients", "4000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_port(port)
    return Redis(port=port, password=password, process=proc)
