"""Throwaway PostgreSQL and Redis servers for the test suite.

Both servers are started from installed binaries, listen only on 127.0.0.1 on a
free port, keep all their state in a fresh temporary directory, and are torn
down (process terminated, directory removed) by ``stop()``.

PostgreSQL refuses to run as root; when the tests run as root the server
processes are started as the ``postgres`` system user (falling back to
``nobody``) and the temporary directory is handed over to that user.

The module has no pytest dependency: the fixtures live in ``conftest_servers``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = [
    "PostgresServer",
    "RedisServer",
    "ServerBinaryNotFound",
    "ServerStartError",
    "find_binary",
    "find_free_port",
]

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
_LOG_TAIL_CHARS = 4000

# PostgreSQL binaries: PATH first, then where Debian/Ubuntu packages put them.
_POSTGRES_BIN_GLOBS = ("/usr/lib/postgresql/*/bin",)
_MIN_SHM_BYTES = 1 << 30
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ServerBinaryNotFound(RuntimeError):
    """A binary needed to start a test server is not installed."""

    def __init__(self, binary: str, searched: Sequence[str]) -> None:
        self.binary = binary
        self.searched = tuple(searched)
        where = "PATH" + "".join(f", {s}" for s in self.searched)
        super().__init__(
            f"required binary {binary!r} not found (searched {where}); "
            f"install it, e.g. `apt-get install postgresql redis-server`"
        )


class ServerStartError(RuntimeError):
    """A test server was found but did not come up."""


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key so that /usr/lib/postgresql/16/bin sorts after .../9.6/bin."""
    numbers = re.findall(r"\d+", path)
    return tuple(int(n) for n in numbers)


def find_binary(name: str, extra_globs: Sequence[str] = ()) -> str:
    """Locate ``name`` on PATH, then in directories matching ``extra_globs``
    (newest version first). Raise :class:`ServerBinaryNotFound` otherwise."""
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_globs:
        for directory in sorted(glob.glob(pattern), key=_version_key, reverse=True):
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    raise ServerBinaryNotFound(name, extra_globs)


def _find_postgres_binary(name: str, preferred_dir: str | None = None) -> str:
    """Find a PostgreSQL binary, preferring the directory ``initdb`` lives in
    (so that initdb, postgres and the client tools come from one version)."""
    if preferred_dir is not None:
        candidate = os.path.join(preferred_dir, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return find_binary(name, _POSTGRES_BIN_GLOBS)


def _read_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-_LOG_TAIL_CHARS:]


def _terminate(
    proc: subprocess.Popen[bytes], signals: Sequence[int], timeout: float = STOP_TIMEOUT
) -> None:
    """Send each of ``signals`` in turn until ``proc`` exits, waiting ``timeout``
    seconds after each; SIGKILL as the last resort. Always reaps the process."""
    for sig in (*signals, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def _scratch_root() -> str | None:
    """Where to put the PostgreSQL cluster: /dev/shm when it is a roomy tmpfs
    (initdb and CREATE DATABASE are about twice as fast in RAM), else the
    default temp dir. Docker's default 64 MB /dev/shm is too small and is
    skipped. ``DIGITALME_TEST_TMPDIR`` overrides the choice."""
    override = os.environ.get("DIGITALME_TEST_TMPDIR")
    if override:
        return override
    shm = "/dev/shm"  # noqa: S108 - only a parent for mkdtemp(), which is safe
    try:
        st = os.statvfs(shm)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize >= _MIN_SHM_BYTES and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def _clean_env() -> dict[str, str]:
    """The current environment without PG* variables that could redirect the
    tools at another cluster, and with a C locale for predictable output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


class PostgresServer:
    """A private PostgreSQL cluster in a temp dir, for tests.

    Usage::

        with PostgresServer() as pg:
            pg.create_database("scratch")
            url = pg.async_url("scratch")  # postgresql+asyncpg://...

    ``url`` is the async URL of the database created at start-up
    (``default_database``). ``halt()`` stops the server but keeps its data and
    port, ``restart()`` brings it back, for tests of a database outage.
    """

    user = "digitalme"
    password = "digitalme-test-password"
    host = "127.0.0.1"

    def __init__(
        self,
        *,
        default_database: str = "digitalme_test",
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        _check_db_name(default_database)
        self.default_database = default_database
        self.startup_timeout = startup_timeout
        self.initdb = find_binary("initdb", _POSTGRES_BIN_GLOBS)
        bindir = os.path.dirname(os.path.realpath(self.initdb))
        self.postgres = _find_postgres_binary("postgres", bindir)
        self.pg_isready = _find_postgres_binary("pg_isready", bindir)
        self.psql = _find_postgres_binary("psql", bindir)
        self.port: int = 0
        self.base_dir: Path | None = None
        self.startup_seconds: float = 0.0
        self.server_version_num: int = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._run_as: pwd.struct_passwd | None = _postgres_os_user()

    # -- public API -----------------------------------------------------

    @property
    def url(self) -> str:
        return self.async_url(self.default_database)

    @property
    def data_dir(self) -> Path:
        return self._base().joinpath("data")

    @property
    def log_path(self) -> Path:
        return self._base().joinpath("postgres.log")

    def async_url(self, dbname: str) -> str:
        """SQLAlchemy URL for asyncpg: ``postgresql+asyncpg://user:pw@127.0.0.1:port/db``."""
        _check_db_name(dbname)
        return f"postgresql+asyncpg://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str) -> str:
        """Plain libpq/asyncpg DSN (``postgresql://...``), for asyncpg.connect()."""
        _check_db_name(dbname)
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def start(self) -> Self:
        if self._proc is not None:
            raise ServerStartError("PostgreSQL server already started")
        started = time.monotonic()
        self.base_dir = Path(tempfile.mkdtemp(prefix="digitalme-pg-", dir=_scratch_root()))
        try:
            self._initdb()
            self._start_postgres()
            self.server_version_num = int(self._psql("SHOW server_version_num"))
            self.create_database(self.default_database)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def create_database(self, name: str) -> None:
        """CREATE DATABASE ``name`` (lowercase identifier) on this server."""
        _check_db_name(name)
        # FILE_COPY (PG 15+) copies the tiny template's files directly: about
        # twice as fast as the default WAL_LOG strategy here (fsync is off).
        strategy = " STRATEGY = FILE_COPY" if self.server_version_num >= 150000 else ""
        self._psql(f'CREATE DATABASE "{name}"{strategy}')

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def halt(self) -> None:
        """Stop the server (fast shutdown: sessions are cut) and keep its data and port."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, (signal.SIGINT, signal.SIGQUIT))
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Start the server again on the same port with the same data; halts it first."""
        if self.base_dir is None or not self.port:
            raise ServerStartError("restart() needs a server that was started once")
        self.halt()
        self._log = self.log_path.open("ab")
        self._spawn(self.port)
        if not self._wait_ready(time.monotonic() + self.startup_timeout):
            self.halt()
            raise ServerStartError(
                f"PostgreSQL did not come back on port {self.port}; "
                f"log tail:\n{_read_tail(self.log_path)}"
            )

    def stop(self) -> None:
        """Stop the server (fast shutdown, escalating) and remove its directory."""
        proc, self._proc = self._proc, None
        if proc is not None:
            # SIGINT = "fast" shutdown (disconnects sessions; the shutdown
            # checkpoint is cheap with fsync=off), then SIGQUIT = "immediate".
            _terminate(proc, (signal.SIGINT, signal.SIGQUIT))
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<PostgresServer 127.0.0.1:{self.port} {state}>"

    # -- internals ------------------------------------------------------

    def _base(self) -> Path:
        if self.base_dir is None:
            raise ServerStartError("PostgreSQL server not started")
        return self.base_dir

    def _child_kwargs(self) -> dict[str, Any]:
        """Popen kwargs: drop root to the postgres OS user when needed."""
        kwargs: dict[str, Any] = {"env": _clean_env(), "cwd": str(self._base())}
        if self._run_as is not None:
            env: dict[str, str] = kwargs["env"]
            env["HOME"] = str(self._base())
            env["USER"] = env["LOGNAME"] = self._run_as.pw_name
            kwargs.update(
                user=self._run_as.pw_uid,
                group=self._run_as.pw_gid,
                extra_groups=[],
            )
        return kwargs

    def _initdb(self) -> None:
        base = self._base()
        pwfile = base / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._run_as is not None:
            for path in (base, pwfile):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        cmd = [
            self.initdb,
            "--pgdata",
            str(self.data_dir),
            "--username",
            self.user,
            "--pwfile",
            str(pwfile),
            "--auth-local",
            "trust",
            "--auth-host",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
            "--no-instructions",
        ]
        result = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=self.startup_timeout,
            check=False,
            **self._child_kwargs(),
        )
        pwfile.unlink()
        if result.returncode != 0:
            output = result.stdout.decode(errors="replace")[-_LOG_TAIL_CHARS:]
            raise ServerStartError(f"initdb failed (exit {result.returncode}):\n{output}")

    def _start_postgres(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        # The free port can be grabbed by someone else between find_free_port()
        # and postgres binding it: retry a few times with a new port.
        last_error = ""
        for _attempt in range(3):
            self.port = find_free_port()
            self._log = self.log_path.open("ab")
            self._spawn(self.port)
            if self._wait_ready(deadline):
                return
            last_error = _read_tail(self.log_path)
            proc, self._proc = self._proc, None
            _terminate(proc, (signal.SIGQUIT,))
            self._log.close()
            self._log = None
            if time.monotonic() >= deadline or "could not bind" not in last_error:
                break
        raise ServerStartError(
            f"PostgreSQL did not become ready within {self.startup_timeout:.0f}s; "
            f"log tail:\n{last_error}"
        )

    def _spawn(self, port: int) -> None:
        """Start ``postgres`` on ``port`` over the existing data directory."""
        base = self._base()
        cmd = [
            self.postgres,
            "-D",
            str(self.data_dir),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            f"unix_socket_directories={base}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "logging_collector=off",
            "-c",
            "log_min_messages=warning",
            "-c",
            "max_connections=200",
        ]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal is pytest's, not ours
            **self._child_kwargs(),
        )

    def _wait_ready(self, deadline: float) -> bool:
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            result = subprocess.run(
                [self.pg_isready, "-q", "-h", self.host, "-p", str(self.port), "-t", "1"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=_clean_env(),
                check=False,
            )
            if result.returncode == 0:
                return True
            time.sleep(_POLL_INTERVAL)
        return False

    def _psql(self, sql: str) -> str:
        """Run one SQL command as the superuser; return its unaligned output."""
        env = _clean_env()
        env["PGPASSWORD"] = self.password
        result = subprocess.run(
            [
                self.psql,
                "--no-psqlrc",
                "--quiet",
                "--no-align",
                "--tuples-only",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-c",
                sql,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=self.startup_timeout,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stderr + result.stdout).decode(errors="replace")
            raise RuntimeError(f"psql {sql!r} failed (exit {result.returncode}): {output}")
        return result.stdout.decode(errors="replace").strip()


def _check_db_name(name: str) -> None:
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"database name must match {_DB_NAME_RE.pattern}: {name!r}")


def _postgres_os_user() -> pwd.struct_passwd | None:
    """The OS account to run PostgreSQL as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServerStartError(
        "running as root, and neither a 'postgres' nor a 'nobody' user exists "
        "to run PostgreSQL as (PostgreSQL refuses to run as root)"
    )


class RedisServer:
    """A private, non-persistent redis-server on 127.0.0.1, for tests.

    ``kill()`` SIGKILLs it (simulating a crash), ``restart()`` brings it back on
    the same port with an empty dataset, so clients configured with ``url``
    can reconnect.
    """

    host = "127.0.0.1"

    def __init__(self, *, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.redis_server = find_binary("redis-server")
        self.startup_timeout = startup_timeout
        self.port: int = 0
        self.base_dir: Path | None = None
        self.startup_seconds: float = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        if self.base_dir is None:
            raise ServerStartError("Redis server not started")
        return self.base_dir / "redis.log"

    def start(self) -> Self:
        if self._proc is not None:
            raise ServerStartError("Redis server already started")
        self.base_dir = Path(tempfile.mkdtemp(prefix="digitalme-redis-"))
        try:
            last_error = ""
            for _attempt in range(3):
                self.port = find_free_port()
                try:
                    self._spawn()
                    return self
                except ServerStartError as exc:
                    last_error = str(exc)
                    if "Address already in use" not in last_error:
                        raise
            raise ServerStartError(last_error)
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown, connections reset)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, ())
        self._close_log()

    def restart(self) -> None:
        """(Re)start the server on the same port; kills it first if running."""
        if self.base_dir is None or not self.port:
            raise ServerStartError("restart() needs a server that was started once")
        if self._proc is not None:
            self.kill()
        self._spawn()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Terminate the server and remove its directory."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, (signal.SIGTERM,))
        self._close_log()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def ping(self, timeout: float = 1.0) -> bool:
        """True if the server answers PING (raw RESP, no client library)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RedisServer 127.0.0.1:{self.port} {state}>"

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _spawn(self) -> None:
        assert self.base_dir is not None
        started = time.monotonic()
        deadline = started + self.startup_timeout
        self._log = self.log_path.open("ab")
        cmd = [
            self.redis_server,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.base_dir),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(self.base_dir),
            start_new_session=True,
        )
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self.ping(timeout=0.5):
                self.startup_seconds = time.monotonic() - started
                return
            time.sleep(_POLL_INTERVAL)
        proc, self._proc = self._proc, None
        _terminate(proc, ())
        self._close_log()
        raise ServerStartError(
            f"redis-server on port {self.port} did not answer PING within "
            f"{self.startup_timeout:.0f}s; log tail:\n{_read_tail(self.log_path)}"
        )
