"""Artifacts through the mlflow-artifacts proxy: upload, list, download, large files, delete."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import quote, urlparse

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException


def proxy_path(artifact_uri: str) -> str:
    """`mlflow-artifacts:/1/<run>/artifacts` -> `1/<run>/artifacts` (path under the proxy root)."""
    u = urlparse(artifact_uri)
    assert u.scheme == "mlflow-artifacts", f"server should hand out proxied artifact URIs, got {artifact_uri}"
    return u.path.lstrip("/")


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "sub/b.txt": b"bravo!\n" * 3,
        "sub/deeper/c.json": json.dumps({"k": [1, 2, 3]}).encode(),
        "sub/empty.bin": b"",
        "with space/\u00fcnicode \u00e9.txt": "h\u00e9llo".encode(),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_log_and_list_and_download(client, experiment_id, tmp_path):
    hello = tmp_path / "hello.txt"
    hello.write_text("hello world")
    src = tmp_path / "tree"
    files = make_tree(src)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(hello))
        mlflow.log_artifact(str(hello), artifact_path="copies")
        mlflow.log_artifacts(str(src), artifact_path="data")
    rid = run.info.run_id
    assert client.get_run(rid).info.artifact_uri.startswith("mlflow-artifacts:")

    root = client.list_artifacts(rid)
    assert [(f.path, f.is_dir) for f in root] == [("copies", True), ("data", True), ("hello.txt", False)]
    assert root[2].file_size == len("hello world")
    assert root[0].file_size is None, "directories carry no file_size"

    data = client.list_artifacts(rid, "data")
    assert [(f.path, f.is_dir) for f in data] == [
        ("data/a.txt", False),
        ("data/sub", True),
        ("data/with space", True),
    ]
    assert data[0].file_size == len(files["a.txt"])
    sub = client.list_artifacts(rid, "data/sub")
    # MLflow omits file_size 0 (proto3 default), which the client reads as None; 0 is fine too.
    assert [(f.path, f.is_dir, f.file_size if f.file_size != 0 else None) for f in sub] == [
        ("data/sub/b.txt", False, len(files["sub/b.txt"])),
        ("data/sub/deeper", True, None),
        ("data/sub/empty.bin", False, None),
    ]
    spaced = client.list_artifacts(rid, "data/with space")
    assert [f.path for f in spaced] == ["data/with space/\u00fcnicode \u00e9.txt"]
    # listing a file path returns nothing; listing a missing dir returns nothing
    assert client.list_artifacts(rid, "hello.txt") == []
    assert client.list_artifacts(rid, "no/such/dir") == []

    dst = tmp_path / "dl"
    local = client.download_artifacts(rid, "data", str(dst))
    assert read_tree(Path(local)) == files
    one = client.download_artifacts(rid, "copies/hello.txt", str(tmp_path / "dl2"))
    assert Path(one).read_text() == "hello world"
    whole = mlflow.artifacts.download_artifacts(run_id=rid, dst_path=str(tmp_path / "dl3"))
    got = read_tree(Path(whole))
    assert got["hello.txt"] == b"hello world"
    assert got["copies/hello.txt"] == b"hello world"
    assert {k[len("data/"):]: v for k, v in got.items() if k.startswith("data/")} == files


def test_log_text_dict_and_load(client, experiment_id):
    with mlflow.start_run() as run:
        mlflow.log_text("some text \u2603", "notes/readme.md")
        mlflow.log_dict({"a": 1, "b": [True, None]}, "cfg/config.json")
    rid = run.info.run_id
    base = client.get_run(rid).info.artifact_uri
    assert mlflow.artifacts.load_text(f"{base}/notes/readme.md") == "some text \u2603"
    assert mlflow.artifacts.load_dict(f"{base}/cfg/config.json") == {"a": 1, "b": [True, None]}
    # runs:/ URIs resolve through the tracking server too
    assert mlflow.artifacts.load_text(f"runs:/{rid}/notes/readme.md") == "some text \u2603"


def test_overwrite_artifact(client, experiment_id, tmp_path):
    f = tmp_path / "x.txt"
    with mlflow.start_run() as run:
        f.write_text("first")
        mlflow.log_artifact(str(f))
        f.write_text("second, longer")
        mlflow.log_artifact(str(f))
    (info,) = client.list_artifacts(run.info.run_id)
    assert info.file_size == len("second, longer")
    assert Path(client.download_artifacts(run.info.run_id, "x.txt", str(tmp_path / "o"))).read_text() == "second, longer"


def test_large_binary_roundtrip(client, experiment_id, tmp_path):
    size = 64 * 1024 * 1024 + 123  # not a multiple of any chunk size
    big = tmp_path / "big.bin"
    h = hashlib.sha256()
    with open(big, "wb") as fh:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 4 * 1024 * 1024))
            h.update(chunk)
            fh.write(chunk)
            remaining -= len(chunk)
    want = h.hexdigest()
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big), artifact_path="blobs")
    big.unlink()
    (info,) = client.list_artifacts(run.info.run_id, "blobs")
    assert info.path == "blobs/big.bin" and info.file_size == size
    local = Path(client.download_artifacts(run.info.run_id, "blobs/big.bin", str(tmp_path / "dl")))
    assert local.stat().st_size == size
    h2 = hashlib.sha256()
    with open(local, "rb") as fh:
        for chunk in iter(lambda: fh.read(4 * 1024 * 1024), b""):
            h2.update(chunk)
    assert h2.hexdigest() == want
    local.unlink()


def test_raw_proxy_get_list_delete(client, experiment_id, tracking, tmp_path):
    (tmp_path / "keep.txt").write_text("keep")
    (tmp_path / "gone.txt").write_text("gone")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "inner.txt").write_text("inner")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "keep.txt"))
        mlflow.log_artifact(str(tmp_path / "gone.txt"))
        mlflow.log_artifact(str(tmp_path / "d" / "inner.txt"), artifact_path="d")
    rid = run.info.run_id
    root = proxy_path(client.get_run(rid).info.artifact_uri)
    base = f"{tracking}/api/2.0/mlflow-artifacts/artifacts"

    r = requests.get(f"{base}/{root}/keep.txt", timeout=30)
    assert r.status_code == 200 and r.content == b"keep"

    r = requests.get(base, params={"path": root}, timeout=30)
    assert r.status_code == 200, r.text
    listing = {f["path"]: f for f in r.json()["files"]}
    assert set(listing) == {"keep.txt", "gone.txt", "d"}
    assert listing["d"]["is_dir"] is True
    assert listing["keep.txt"]["is_dir"] is False and int(listing["keep.txt"]["file_size"]) == 4

    # run-scoped listing used by the UI
    r = requests.get(f"{tracking}/api/2.0/mlflow/artifacts/list", params={"run_id": rid}, timeout=30)
    assert r.status_code == 200, r.text
    assert sorted(f["path"] for f in r.json()["files"]) == ["d", "gone.txt", "keep.txt"]
    r = requests.get(f"{tracking}/api/2.0/mlflow/artifacts/list", params={"run_id": rid, "path": "d"}, timeout=30)
    assert r.status_code == 200, r.text
    assert [f["path"] for f in r.json()["files"]] == ["d/inner.txt"]

    r = requests.delete(f"{base}/{root}/gone.txt", timeout=30)
    assert r.status_code == 200, r.text
    assert [f.path for f in client.list_artifacts(rid)] == ["d", "keep.txt"]
    r = requests.get(f"{base}/{root}/gone.txt", timeout=30)
    assert r.status_code == 404, (r.status_code, r.text[:200])

    # deleting a directory removes its contents
    r = requests.delete(f"{base}/{root}/d", timeout=30)
    assert r.status_code == 200, r.text
    assert [f.path for f in client.list_artifacts(rid)] == ["keep.txt"]


def test_raw_put_with_encoded_path(client, experiment_id, tracking):
    with mlflow.start_run() as run:
        pass
    root = proxy_path(client.get_run(run.info.run_id).info.artifact_uri)
    base = f"{tracking}/api/2.0/mlflow-artifacts/artifacts"
    name = "sp ace/na\u00efve (1)+%.txt"
    r = requests.put(f"{base}/{root}/{quote(name)}", data=b"payload", timeout=30)
    assert r.status_code == 200, r.text
    assert [f.path for f in client.list_artifacts(run.info.run_id, "sp ace")] == ["sp ace/na\u00efve (1)+%.txt"]
    r = requests.get(f"{base}/{root}/{quote(name)}", timeout=30)
    assert r.status_code == 200 and r.content == b"payload"


def test_path_traversal_rejected(client, experiment_id, tracking):
    base = f"{tracking}/api/2.0/mlflow-artifacts/artifacts"
    for bad in ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "a/../../../x"]:
        r = requests.get(f"{base}/{bad}", timeout=30)
        assert r.status_code in (400, 403, 404), (bad, r.status_code, r.text[:200])
        assert b"root:" not in r.content
    r = requests.get(base, params={"path": "../.."}, timeout=30)
    assert r.status_code in (400, 403, 404), (r.status_code, r.text[:200])


def test_download_missing_artifact(client, experiment_id, tmp_path):
    with mlflow.start_run() as run:
        pass
    with pytest.raises((MlflowException, requests.HTTPError, OSError)):
        client.download_artifacts(run.info.run_id, "does/not/exist.txt", str(tmp_path))
