#!/usr/bin/env bash
# Runs every Kiln test: the Rust suites (store and API on SQLite and, when reachable,
# PostgreSQL) and the compatibility suite that drives the real `mlflow-skinny` client
# against a real `kiln server`. Creates the Python environment it needs on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${KILN_VENV:-.venv}
REQ=tests/python/requirements.txt
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQ" "$VENV/.requirements"; then
  echo "==> creating the Python test environment in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/.requirements"
fi

echo "==> cargo build"
cargo build --locked --workspace --all-targets

echo "==> cargo test"
cargo test --locked --workspace

echo "==> mlflow client compatibility tests"
KILN_BIN="${CARGO_TARGET_DIR:-target}/debug/kiln" \
  "$VENV/bin/python" -m pytest tests/python -q -p no:cacheprovider
