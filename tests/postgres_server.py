"""A throwaway PostgreSQL server for tests: its own cluster in a temp folder, on a free loopback port.

The store's PostgreSQL tests need a real server, and CI has only Debian's server binaries
(``scripts/bootstrap.sh`` installs them, without a default cluster). :func:`running_server`
runs ``initdb`` into a fresh temp folder, starts the server with ``pg_ctl`` on 127.0.0.1 and a
free port (its unix socket in the same folder, so nothing under ``/var/run`` is needed),
creates the test database, and at the end stops the server (``pg_ctl stop -m fast``) and
removes the folder. Authentication is scram-sha-256 with a random password, so other users
of the machine cannot use the server while it runs.

PostgreSQL refuses to run as root. As root (CI), the server runs as the unprivileged system
user ``pumptest``, created with ``useradd`` when missing; the temp folder is handed to it.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVER_BINARIES = ("initdb", "pg_ctl")
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
TEST_USER = "pumptest"  # runs the server when the tests run as root
SUPERUSER = "postgres"  # the cluster's superuser (a database role, not an OS user)
DATABASE = "pump_test"
START_ATTEMPTS = 3  # a free port can be taken by someone else between choosing it and binding it


class PostgresServerError(RuntimeError):
    """The throwaway server could not be created, started or stopped; the message quotes its log."""


def find_server_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: from PATH, else Debian's newest ``/usr/lib/postgresql/*/bin``."""
    found = [shutil.which(name) for name in SERVER_BINARIES]
    if all(found):
        folders = {Path(path).resolve().parent for path in found if path}
        if len(folders) == 1:  # e.g. /usr/local/bin links into /usr/lib/postgresql/15/bin
            return folders.pop()
    candidates = [path for path in Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")) if _has_binaries(path)]
    if not candidates:
        return None
    return max(candidates, key=lambda path: _major(path.parent.name))


def _has_binaries(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in SERVER_BINARIES)


def _major(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """The OS user to run the server as: None (this one) unless this is root, then ``pumptest``."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PostgresServerError(f"running as root and there is no user {TEST_USER!r} nor useradd to create one")
    command = [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"]
    done = subprocess.run([*command, TEST_USER], capture_output=True, text=True, check=False)
    if done.returncode not in (0, 9):  # 9: created meanwhile by a parallel test run
        raise PostgresServerError(f"useradd {TEST_USER} failed ({done.returncode}): {done.stderr.strip()}")
    return pwd.getpwnam(TEST_USER)


@dataclass
class PostgresServer:
    """A running throwaway server; :attr:`url` names its test database."""

    bin_dir: Path
    root: Path
    port: int
    password: str
    user: pwd.struct_passwd | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = DATABASE) -> str:
        """SQLAlchemy URL (psycopg 3) of ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def run(self, tool: str, args: Sequence[str], timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run one of the server's tools as the server's OS user."""
        as_user = {}
        if self.user is not None:
            as_user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bin_dir / tool), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            **as_user,
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """``pg_ctl stop -m fast``; if that fails, SIGKILL the postmaster this module started."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        done = self.run("pg_ctl", ["-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"], timeout_s=60)
        if done.returncode != 0 and (self.data_dir / "postmaster.pid").exists():
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)


def _make_root(user: pwd.struct_passwd | None) -> Path:
    root = Path(tempfile.mkdtemp(prefix="pump-pg-"))  # short: the unix socket path must stay < 108 bytes
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    return root


def _initdb(server: PostgresServer) -> None:
    password_file = server.root / "pwfile"
    password_file.write_text(server.password + "\n")
    if server.user is not None:
        os.chown(password_file, server.user.pw_uid, server.user.pw_gid)
    args = ["-D", str(server.data_dir), "-U", SUPERUSER, "--pwfile", str(password_file)]
    args += ["--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C", "--no-sync"]
    done = server.run("initdb", args)
    password_file.unlink()
    if done.returncode != 0:
        raise PostgresServerError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _start(server: PostgresServer) -> None:
    options = [
        "-c listen_addresses=127.0.0.1",
        f"-c port={server.port}",
        f"-c unix_socket_directories={server.root}",
        # a throwaway cluster: durability buys nothing, small memory leaves room for the other tests
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        "-c shared_buffers=32MB -c max_connections=60",
    ]
    args = ["-D", str(server.data_dir), "-l", str(server.log_file), "-w", "-t", "60", "-o", " ".join(options), "start"]
    done = server.run("pg_ctl", args)
    if done.returncode != 0:
        raise PostgresServerError(
            f"pg_ctl start on port {server.port} failed ({done.returncode}): {done.stderr.strip()}\n"
            f"server log:\n{server.log_tail()}"
        )


def _create_database(server: PostgresServer, name: str) -> None:
    try:
        import psycopg
    except ImportError:
        raise PostgresServerError(
            "psycopg is not installed: run scripts/bootstrap.sh, or pip install '.[postgres]'"
        ) from None
    conninfo = f"host=127.0.0.1 port={server.port} user={SUPERUSER} password={server.password} dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')


@contextmanager
def running_server(bin_dir: Path, database: str = DATABASE) -> Iterator[PostgresServer]:
    """Create, start and finally stop and remove a server whose database ``database`` exists."""
    user = _server_user()
    root = _make_root(user)
    server = PostgresServer(bin_dir, root, free_port(), secrets.token_hex(16), user)
    try:
        _initdb(server)
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                _start(server)
                break
            except PostgresServerError:
                if attempt == START_ATTEMPTS or "could not bind" not in server.log_tail():
                    raise
                server.port = free_port()
                time.sleep(0.2)
        _create_database(server, database)
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
