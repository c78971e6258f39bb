"""A Mosquitto broker run as a child process: the embedded broker and the tests' broker.

When ``mqtt.host`` is not set, the station starts ``mosquitto`` on ``127.0.0.1:mqtt.port`` with a
generated minimal config in a temporary folder, and stops it on exit (on Linux the broker also
dies with the process that started it). Tests use the same class to start, stop and restart a
broker on one port. There is no pure-Python fallback: without the binary, :class:`MosquittoNotFound`
says how to install it.
"""

from __future__ import annotations

import atexit
import base64
import getpass
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.publish.config import MqttConfig

LOOPBACK = "127.0.0.1"
_SILENT_READY_S = 0.5  # configs that log elsewhere: accepted connections for this long mean ready
_SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin", "/snap/bin")


class MosquittoNotFound(RuntimeError):
    """The ``mosquitto`` binary is not installed."""


def find_mosquitto() -> str | None:
    """Path of the ``mosquitto`` binary (Debian installs it to /usr/sbin, often off a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for directory in _SEARCH_DIRS:
        candidate = Path(directory) / "mosquitto"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def password_line(username: str, password: str, iterations: int = 101) -> str:
    """A ``password_file`` line in Mosquitto 2's PBKDF2-SHA512 format (what ``mosquitto_passwd`` writes)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the broker when the process that started it dies, even by SIGKILL."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class MosquittoBroker:
    """``mosquitto`` on a loopback port; start/stop/restart keep the port (for outage tests)."""

    def __init__(
        self,
        port: int = 0,
        host: str = LOOPBACK,
        *,
        users: dict[str, str] | None = None,
        persistence: bool = False,
        extra_config: str = "",
        config_text: str | None = None,
        workdir: Path | None = None,
    ) -> None:
        """Args:
        port: port to listen on; 0 picks a free one (kept across restarts).
        host: listener address (loopback unless you mean to expose it).
        users: user -> password; when given, anonymous clients are refused.
        persistence: keep retained messages and persistent sessions across restarts (like a real
            deployment, so a consumer's queued results survive a broker restart).
        extra_config: more ``mosquitto.conf`` lines (e.g. ``message_size_limit 100000``).
        config_text: a whole ``mosquitto.conf`` to use instead of the generated one (it must listen
            on ``host:port``); for checking deployment configs.
        workdir: where config, password file, database and log go (default: a new temp folder).
        """
        self.host = host
        self.port = port or free_port(host)
        self.users = dict(users or {})
        self.persistence = persistence
        self.extra_config = extra_config
        self.config_text = config_text
        self._own_workdir = workdir is None
        self._workdir = Path(workdir) if workdir else None
        self._process: subprocess.Popen[bytes] | None = None
        self._log = None
        self._log_offset = 0

    @property
    def workdir(self) -> Path:
        """Folder of config, password file, database and log (a temp folder made on first use)."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="pump-mosquitto-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _write_config(self) -> None:
        if self.config_text is not None:
            self.config_path.write_text(self.config_text)
            return
        lines = [
            # Run as whoever started us: as root, mosquitto would otherwise switch to user 'mosquitto',
            # which cannot read our temp folder.
            f"user {getpass.getuser()}",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.users:
            password_file = self.workdir / "passwords"
            password_file.write_text("".join(password_line(u, p) + "\n" for u, p in self.users.items()))
            password_file.chmod(0o600)
            lines.append(f"password_file {password_file}")
        self.config_path.write_text("\n".join(lines) + "\n" + self.extra_config + "\n")

    def start(self, timeout_s: float = 5.0) -> MosquittoBroker:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return self
        binary = find_mosquitto()
        if binary is None:
            raise MosquittoNotFound(
                "mqtt.host is not set, so the station wants to start an embedded broker, but the 'mosquitto' "
                "binary is not installed. Install it (Debian/Ubuntu/JetPack: sudo apt-get install mosquitto; "
                "macOS: brew install mosquitto) or set mqtt.host (PUMP_MQTT__HOST) to an existing broker."
            )
        self._write_config()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the broker
        self._log_offset = self.log_path.stat().st_size  # a restart appends: look only at this run's lines
        self._process = subprocess.Popen(
            [binary, "-c", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        started = time.monotonic()
        while time.monotonic() < started + timeout_s:
            if self._process.poll() is not None:
                self._close_log()
                raise RuntimeError(
                    f"mosquitto exited with code {self._process.returncode} on {self.host}:{self.port} "
                    f"(port taken?); its log:\n{self.log_tail()}"
                )
            if self._accepts() and (self._says_running() or time.monotonic() - started > _SILENT_READY_S):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not accept connections on {self.host}:{self.port} within {timeout_s} s")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _says_running(self) -> bool:
        """Mosquitto logs 'running' once all listeners are bound (a connect alone may reach another listener)."""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_offset)
            return b" running" in log.read()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); it saves its database first when persistent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL by PID, like a crash: nothing is saved beyond the last autosave of the database."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5)
        self._close_log()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the broker's log (for error messages and failing tests)."""
        if self._workdir is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Stop and remove the temp folder it made."""
        self.stop()
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def ensure_broker(config: MqttConfig) -> tuple[MqttConfig, MosquittoBroker | None]:
    """The config to connect with, and the embedded broker started for it when ``host`` is unset.

    The embedded broker listens on 127.0.0.1:``config.port`` (``pump-edge watch`` with the same
    config finds it); port 0 picks a free port and the returned config names it. It is stopped
    at interpreter exit, or earlier with ``broker.close()``.
    """
    if config.host is not None:
        return config, None
    broker = MosquittoBroker(port=config.port)
    try:
        broker.start()
    except RuntimeError as error:
        broker.close()
        raise RuntimeError(
            f"{error}\nIf a broker already listens on {LOOPBACK}:{config.port} (e.g. the system's mosquitto "
            f"service), use it: mqtt.host = '{LOOPBACK}'; or pick another mqtt.port."
        ) from None
    atexit.register(broker.close)
    return config.model_copy(update={"host": LOOPBACK, "port": broker.port}), broker
