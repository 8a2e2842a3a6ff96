"""Small helpers shared by the compatibility tests (importable because pytest puts this dir on sys.path)."""

from __future__ import annotations

import contextlib
import uuid

import pytest


def unique(prefix: str = "t") -> str:
    """A name no other test (or earlier session on the same server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def raises_mlflow(error_code: str | tuple[str, ...], match: str | None = None):
    """Expects an MlflowException whose error_code is `error_code` (or one of a tuple of codes)."""
    from mlflow.exceptions import MlflowException

    codes = (error_code,) if isinstance(error_code, str) else error_code
    with pytest.raises(MlflowException) as info:
        yield info
    assert info.value.error_code in codes, (
        f"expected error_code {error_code}, got {info.value.error_code}: {info.value.message}"
    )
    if match is not None:
        assert match.lower() in str(info.value.message).lower(), info.value.message


def assert_error_response(resp, status: int, codes: str | tuple[str, ...]):
    """Checks a raw MLflow error response: HTTP status and JSON {error_code, message}."""
    if isinstance(codes, str):
        codes = (codes,)
    assert resp.status_code == status, f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text[:500]}"
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {resp.status_code} {resp.text[:500]!r}")
    assert body.get("error_code") in codes, f"error_code {body.get('error_code')!r} not in {codes}: {body}"
    assert isinstance(body.get("message"), str) and body["message"], f"missing message: {body}"
    return body
