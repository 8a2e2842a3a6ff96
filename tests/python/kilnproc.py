"""Server processes for the compatibility suite: kiln (or the reference MLflow server) and PostgreSQL databases.

Environment:
  KILN_BIN                 path of the kiln binary (default: <repo>/target/debug/kiln)
  KILN_PY_PG_URL           PostgreSQL admin URL (default: postgres://postgres@127.0.0.1:5432/test)
  KILN_PY_REFERENCE_MLFLOW path of a real `mlflow` executable: run the suite against the reference
                           MLflow server instead (SQLite only; used to validate the tests themselves).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
KILN_BIN = Path(os.environ.get("KILN_BIN", REPO / "target" / "debug" / "kiln"))
PG_ADMIN_URL = os.environ.get("KILN_PY_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
REFERENCE_MLFLOW = os.environ.get("KILN_PY_REFERENCE_MLFLOW")

BACKENDS = ["sqlite", "postgres"]

# --------------------------------------------------------------------------- PostgreSQL


def _pg_parts() -> tuple[str, str, str, str]:
    """(host, port, user, dbname) of the admin URL."""
    from urllib.parse import urlparse

    u = urlparse(PG_ADMIN_URL)
    return (u.hostname or "127.0.0.1", str(u.port or 5432), u.username or "postgres", u.path.lstrip("/") or "test")


def _psql(sql: str) -> subprocess.CompletedProcess:
    host, port, user, db = _pg_parts()
    return subprocess.run(
        ["psql", "-h", host, "-p", port, "-U", user, "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        timeout=30,
    )


_pg_status: str | None = None  # None = not checked yet; "" = available; else the reason it is not


def postgres_unavailable_reason() -> str:
    """Empty string when PostgreSQL is usable, else why not (checked once per session)."""
    global _pg_status
    if _pg_status is None:
        if REFERENCE_MLFLOW:
            _pg_status = "reference MLflow mode runs on SQLite only"
        elif shutil.which("psql") is None:
            _pg_status = "psql CLI not installed"
        else:
            host, port, _, _ = _pg_parts()
            try:
                with socket.create_connection((host, int(port)), timeout=2):
                    pass
                r = _psql("SELECT 1")
                _pg_status = "" if r.returncode == 0 else f"psql failed: {r.stderr.strip()}"
            except (OSError, subprocess.SubprocessError) as e:
                _pg_status = f"PostgreSQL unreachable at {host}:{port}: {e}"
    return _pg_status


def create_pg_database() -> str:
    """Creates a fresh database and returns its kiln store URL."""
    name = f"kiln_py_{uuid.uuid4().hex[:12]}"
    r = _psql(f'CREATE DATABASE "{name}"')
    if r.returncode != 0:
        raise RuntimeError(f"CREATE DATABASE {name} failed: {r.stderr}")
    host, port, user, _ = _pg_parts()
    return f"postgres://{user}@{host}:{port}/{name}"


def drop_pg_database(store_url: str) -> None:
    name = store_url.rsplit("/", 1)[1]
    # WITH (FORCE) ends leftover connections (PostgreSQL >= 13), e.g. after a kill -9.
    r = _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if r.returncode != 0:
        print(f"warning: DROP DATABASE {name} failed: {r.stderr}", file=sys.stderr)


# --------------------------------------------------------------------------- server process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class KilnServer:
    """One server process over a data dir (+ optional store URL); restartable on the same data."""

    backend: str
    data_dir: Path
    store_url: str | None = None
    extra_args: list[str] = field(default_factory=list)
    url: str = ""
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    _starts: int = 0

    def start(self, timeout: float = 60.0) -> str:
        assert self.proc is None, "already running"
        self._starts += 1
        self.log_path = self.data_dir.parent / f"server-{self.backend}-{self._starts}.log"
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("KILN_LOG", "info")  # override with e.g. KILN_LOG=debug when investigating
        env.setdefault("NO_COLOR", "1")  # plain text logs
        if REFERENCE_MLFLOW:
            port = _free_port()
            cmd = [
                REFERENCE_MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port),
                "--backend-store-uri", f"sqlite:///{self.data_dir}/mlflow.db",
                "--artifacts-destination", str(self.data_dir / "artifacts"),
                "--workers", "1",
            ]
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, start_new_session=True)
            self.url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if requests.get(self.url + "/health", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"reference mlflow server did not start; see {self.log_path}")
                time.sleep(0.2)
            return self.url

        if not KILN_BIN.exists():
            pytest.exit(f"kiln binary not found at {KILN_BIN} (build it with `cargo build -p kiln` or set KILN_BIN)", 2)
        cmd = [str(KILN_BIN), "server", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(self.data_dir)]
        if self.store_url:
            cmd += ["--store", self.store_url]
        cmd += self.extra_args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
        line_box: list[bytes] = []

        def read_first_line() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            line_box.append(self.proc.stdout.readline())
            # Keep draining stdout into the log so the server never blocks on a full pipe.
            for chunk in iter(lambda: self.proc.stdout.readline(), b""):
                log.write(chunk)
                log.flush()

        threading.Thread(target=read_first_line, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not line_box:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"kiln server did not print its Listening line; command {cmd}; log {self.log_path}:\n"
                    + self.log_tail()
                )
            time.sleep(0.02)
        line = line_box[0].decode(errors="replace").strip()
        prefix = "Listening on "
        if not line.startswith(prefix):
            self.stop()
            raise RuntimeError(f"unexpected first stdout line from kiln server: {line!r}")
        self.url = line[len(prefix):].rstrip("/")
        return self.url

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL if it does not exit in time). Returns the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"warning: server pid {proc.pid} ignored SIGTERM for {timeout}s; killing", file=sys.stderr)
                self._signal(proc, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def kill_hard(self) -> None:
        """SIGKILL: the crash that durability tests simulate."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        self._signal(proc, signal.SIGKILL)
        proc.wait()

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        """Signals the server's process group (the reference MLflow server has worker children)."""
        try:
            if REFERENCE_MLFLOW:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


live_servers: list[KilnServer] = []


def make_server(
    backend: str, tmp_root: Path, extra_args: list[str] | None = None
) -> tuple[KilnServer, callable]:
    """Builds (not starts) a server for `backend` (`extra_args` go to `kiln server`, e.g.
    ["--admin-token", T]); returns it and its cleanup function."""
    data_dir = tmp_root / "data"
    data_dir.mkdir(parents=True)
    store_url = None
    if backend == "postgres":
        reason = postgres_unavailable_reason()
        if reason:
            pytest.skip(f"PostgreSQL unavailable: {reason}")
        store_url = create_pg_database()
    srv = KilnServer(backend=backend, data_dir=data_dir, store_url=store_url, extra_args=list(extra_args or []))
    live_servers.append(srv)

    def cleanup() -> None:
        srv.stop()
        if srv in live_servers:
            live_servers.remove(srv)
        if store_url:
            drop_pg_database(store_url)
        # The data dir holds up to a few hundred MB of artifacts; the server logs sit beside it and stay.
        shutil.rmtree(data_dir, ignore_errors=True)

    return srv, cleanup


