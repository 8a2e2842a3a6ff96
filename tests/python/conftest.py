"""Fixtures for the MLflow-client compatibility suite.

Every test runs against a real `kiln server` child process, once per metadata store:
``sqlite`` (a file in a fresh temporary data dir) and ``postgres`` (a fresh database on
127.0.0.1:5432, dropped at the end; skipped with a notice when PostgreSQL is unreachable).
See kilnproc.py for the environment variables (KILN_BIN, KILN_PY_PG_URL, KILN_PY_REFERENCE_MLFLOW).
"""

from __future__ import annotations

import os

# Must be set before mlflow is imported anywhere: the client reads some of these at import time.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "0"
os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "30"
for _var in (
    "MLFLOW_ENABLE_ASYNC_LOGGING",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
):
    os.environ.pop(_var, None)

import pytest
import requests

from helpers import unique
from kilnproc import BACKENDS, live_servers, make_server

def backend_params():
    return [pytest.param(b, id=b) for b in BACKENDS]


@pytest.fixture(scope="session", params=backend_params())
def server(request, tmp_path_factory):
    """A running kiln server shared by the whole session for one backend; yields it."""
    srv, cleanup = make_server(request.param, tmp_path_factory.mktemp(f"kiln-{request.param}"))
    try:
        srv.start()
        yield srv
    finally:
        cleanup()


@pytest.fixture(scope="session")
def server_url(server) -> str:
    return server.url


# --------------------------------------------------------------------------- client state


def _reset_client_state() -> None:
    import mlflow
    import mlflow.tracking.fluent as fluent

    for _ in range(20):  # end_run pops the run before it calls the server, so this terminates
        if mlflow.active_run() is None:
            break
        try:
            mlflow.end_run()
        except Exception:  # the server may be gone; the run is forgotten anyway
            pass
    # The fluent API remembers the active experiment globally; never let it leak between tests.
    if hasattr(fluent, "_active_experiment_id"):
        fluent._active_experiment_id = None
    if hasattr(mlflow, "clear_active_model"):
        try:
            mlflow.clear_active_model()
        except Exception:
            pass


@pytest.fixture(autouse=True)
def tracking(server):
    """Points the MLflow client at the session's server for each test."""
    import mlflow

    _reset_client_state()
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    yield server.url
    _reset_client_state()


@pytest.fixture
def client(tracking):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking, registry_uri=tracking)


@pytest.fixture
def experiment_id(tracking) -> str:
    """A fresh experiment, made the fluent API's active experiment."""
    import mlflow

    exp = mlflow.set_experiment(unique("exp"))
    return exp.experiment_id


@pytest.fixture
def api(tracking):
    """Raw HTTP helper: api.post('runs/create', {...}) -> requests.Response."""
    return RawApi(tracking)


class RawApi:
    def __init__(self, base: str):
        self.base = base
        self.s = requests.Session()

    def url(self, path: str, prefix: str = "/api/2.0/mlflow/") -> str:
        return self.base + prefix + path.lstrip("/")

    def get(self, path, params=None, **kw):
        return self.s.get(self.url(path), params=params, timeout=30, **kw)

    def post(self, path, body=None, **kw):
        return self.s.post(self.url(path), json=body, timeout=30, **kw)

    def delete(self, path, body=None, **kw):
        return self.s.delete(self.url(path), json=body, timeout=30, **kw)

    def patch(self, path, body=None, **kw):
        return self.s.patch(self.url(path), json=body, timeout=30, **kw)


# --------------------------------------------------------------------------- failure reporting


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and live_servers:
        parts = []
        for srv in live_servers:
            if srv.log_path:
                parts.append(f"[{srv.backend}] {srv.url} log: {srv.log_path}\n{srv.log_tail(25)}")
        if parts:
            report.sections.append(("kiln server log", "\n\n".join(parts)))


def pytest_report_header(config):
    from kilnproc import KILN_BIN, REFERENCE_MLFLOW, postgres_unavailable_reason

    lines = [f"server under test: {REFERENCE_MLFLOW or KILN_BIN}"]
    reason = postgres_unavailable_reason()
    lines.append("postgres: available" if not reason else f"NOTICE: postgres tests will be SKIPPED: {reason}")
    return lines


def pytest_collection_modifyitems(config, items):
    from kilnproc import REFERENCE_MLFLOW

    if not REFERENCE_MLFLOW:
        return
    for item in items:
        if item.get_closest_marker("stricter_than_mlflow"):
            item.add_marker(pytest.mark.xfail(reason="known MLflow 3.17 divergence", strict=False))
        if "test_crash" in item.nodeid:
            item.add_marker(pytest.mark.skip(reason="crash tests target kiln only"))
