"""`kiln export k8s` against the real schemas and the real servers.

- Every Kubernetes object validates strictly (unknown fields are errors) against the API's own
  JSON schemas for the oldest and newest Kubernetes versions Kiln supports (kubernetes-validate).
- ServiceMonitor and PrometheusRule validate against the prometheus-operator CRD models
  (cloudcoil-models-prometheus-operator, generated from the CRDs), with unknown fields caught
  by a round trip.
- Every PromQL expression parses (promql-parser, Prometheus' grammar), and every metric and
  `le` bucket it reads is one `kiln serve` really exports on /metrics.
- The containers' command lines start the real `kiln serve` / `kiln server`, and their probe
  paths answer 200 there.
- References hold together: selectors match pod labels, HPAs name rendered Deployments, the
  ConfigMap is mounted where KILN_CONFIG points, secrets are referenced and never inlined.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from kilnproc import KILN_BIN, REFERENCE_MLFLOW, REPO

pytestmark = pytest.mark.skipif(bool(REFERENCE_MLFLOW), reason="kiln export tests target kiln only")

# Oldest supported (the preStop sleep action is on by default from 1.30) and newest bundled.
K8S_VERSIONS = ["1.30.0", "1.37.0"]
ONNX_PATH = REPO / "tests" / "fixtures" / "onnx" / "gb_classifier.onnx"
DATA_PATH = REPO / "tests" / "fixtures" / "onnx" / "data" / "breast_cancer.json"

@pytest.fixture(autouse=True)
def tracking():
    """Overrides conftest's: these tests need no MLflow tracking server (and run once, not per store)."""


PROJECT = """
[project]
name = "flight-delays"

[deploy.delay]
model = "delay@champion"
slo = { p99_ms = 25, availability = 99.9 }
canary = { percent = 10, rollback_when = ["error_rate > 0.01"] }

[deploy.fraud_v2]
model = "fraud/3"
slo = { p99_ms = 1500 }

[monitor.delay]
interval = "15s"
window = "5m"
alerts = [
  { name = "HighLatency", when = "p99_ms > 25 and request_rate > 0.5", for = "5m", severity = "page", runbook = "runbooks/high-latency.md", summary = "p99 is {{ $value }} ms on {{ $labels.deployment }}" },
  { name = "HighErrorRate", when = "error_rate{version=~\\"[0-9]+\\"} > 0.01", for = "2m", severity = "page", runbook = "runbooks/errors.md", labels = { team = "ml" } },
  { name = "QuietOrSlow", when = "not (requests >= 10 and p90_ms < 50)", for = "10m", severity = "ticket" },
  { name = "FastBurn", when = "burn_rate_1h{slo=\\"delay-availability\\"} > 10", severity = "ticket" },
  { name = "InputDrift", when = "drift_share >= 0.3", for = "15m", severity = "page", runbook = "runbooks/drift.md" },
  { name = "RealisedAucLow", when = "auc < 0.65 and labelled >= 500", for = "1h", severity = "ticket" },
]
"""


def run_export(tmp_path: Path, project: str | None, *flags: str) -> tuple[list[dict | None], str, str]:
    if not KILN_BIN.exists():
        pytest.exit(f"kiln binary not found at {KILN_BIN} (set KILN_BIN)", 2)
    if project is None:
        config = REPO / "kiln.toml"
    else:
        config = tmp_path / "kiln.toml"
        config.write_text(project)
    r = subprocess.run(
        [str(KILN_BIN), "export", "k8s", "--config", str(config), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, f"kiln export k8s failed ({r.returncode}):\n{r.stderr}"
    return list(yaml.safe_load_all(r.stdout)), r.stdout, r.stderr


FLAGS = ("--namespace", "ml", "--rule-label", "release=prom", "--monitor", "--prediction-log", "s3://kiln/predictions",
         "--runbook-base-url", "https://git.example/ml/blob/main")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return run_export(tmp_path_factory.mktemp("k8s"), PROJECT, *FLAGS)


@pytest.fixture(scope="module")
def docs(exported) -> list[dict]:
    return [d for d in exported[0] if d is not None]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {[d['metadata']['name'] for d in of_kind(docs, kind)]}"
    return found[0]


# --------------------------------------------------------------------------- schemas


def test_kubernetes_objects_validate_strictly_against_the_api_schemas(docs):
    import kubernetes_validate

    core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {d["kind"] for d in core} == {
        "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for version in K8S_VERSIONS:
        for d in core:
            kubernetes_validate.validate(d, version, strict=True)


def test_a_wrong_field_fails_validation(docs):
    """The check has teeth: a misspelt field, a wrong type and a bad probe all fail."""
    import copy

    import kubernetes_validate

    dep = named(docs, "Deployment", "kiln-serve-delay")
    for breaks in (
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(readinesProbe={}),
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="8000x"),
        lambda d: d["spec"].update(replicas="two"),
    ):
        bad = copy.deepcopy(dep)
        breaks(bad)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def _crd_validate(doc: dict) -> None:
    """Validates against the prometheus-operator CRD model; unknown fields are errors."""
    from cloudcoil.models.prometheus_operator import v1

    model = getattr(v1, doc["kind"])
    parsed = model.model_validate(doc)
    again = json.loads(parsed.model_dump_json(by_alias=True, exclude_unset=True))
    assert again == doc, f"{doc['kind']}: fields the CRD does not know were dropped"


def test_prometheus_operator_objects_validate_against_the_crds(docs):
    ops = [d for d in docs if d["apiVersion"] == "monitoring.coreos.com/v1"]
    assert sorted(d["kind"] for d in ops) == ["PrometheusRule", "ServiceMonitor"]
    for d in ops:
        _crd_validate(d)
        assert d["metadata"]["labels"]["release"] == "prom"


def test_a_wrong_rule_fails_crd_validation(docs):
    import copy

    import pydantic

    rule = named(docs, "PrometheusRule", "kiln-rules")
    bad = copy.deepcopy(rule)
    bad["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    with pytest.raises(pydantic.ValidationError):
        _crd_validate(bad)
    bad = copy.deepcopy(rule)
    bad["spec"]["groups"][0]["rules"][0]["fore"] = "5m"
    with pytest.raises(AssertionError):
        _crd_validate(bad)


# --------------------------------------------------------------------------- rules


def rules(docs) -> dict[str, list[dict]]:
    rule = named(docs, "PrometheusRule", "kiln-rules")
    return {g["name"]: g["rules"] for g in rule["spec"]["groups"]}


def test_every_expression_parses_as_promql(docs):
    import promql_parser

    groups = rules(docs)
    n = 0
    for group in groups.values():
        for r in group:
            promql_parser.parse(r["expr"])
            if "for" in r:
                promql_parser.parse_duration(r["for"])
            n += 1
    # 4 translatable [monitor.delay] rules, 3 burn-rate rules per SLO (3 SLOs).
    assert n == 4 + 9
    with pytest.raises(ValueError):
        promql_parser.parse(groups["kiln.delay.alerts"][0]["expr"] + " >")


def test_rules_keep_for_severity_labels_and_runbooks(docs):
    groups = rules(docs)
    assert set(groups) == {"kiln.delay.alerts", "kiln.delay.slo", "kiln.fraud_v2.slo"}
    alerts = {r["alert"]: r for r in groups["kiln.delay.alerts"]}
    assert set(alerts) == {"HighLatency", "HighErrorRate", "QuietOrSlow", "FastBurn"}
    hl = alerts["HighLatency"]
    assert hl["for"] == "5m"
    assert hl["labels"]["severity"] == "page"
    assert hl["annotations"]["runbook_url"] == "https://git.example/ml/blob/main/runbooks/high-latency.md"
    assert hl["annotations"]["summary"] == "p99 is {{ $value }} ms on {{ $labels.deployment }}"
    assert "histogram_quantile(0.99" in hl["expr"] and "[5m]" in hl["expr"]
    assert alerts["HighErrorRate"]["labels"]["team"] == "ml"
    assert "version=~" in alerts["HighErrorRate"]["expr"]
    slo = groups["kiln.delay.slo"]
    windows = [(r["labels"]["slo"], r["labels"]["long_window"], r["labels"]["short_window"], r["labels"]["severity"]) for r in slo]
    assert windows == [
        ("delay-latency-p99", "1h", "5m", "page"),
        ("delay-latency-p99", "6h", "30m", "page"),
        ("delay-latency-p99", "3d", "6h", "ticket"),
        ("delay-availability", "1h", "5m", "page"),
        ("delay-availability", "6h", "30m", "page"),
        ("delay-availability", "3d", "6h", "ticket"),
    ]
    thresholds = [re.findall(r"> ([0-9.]+)", r["expr"]) for r in slo]
    assert thresholds[:3] == [["14.4", "14.4"], ["6", "6"], ["1", "1"]]


def test_left_out_rules_are_named_on_stderr_and_in_a_comment(exported):
    _, text, stderr = exported
    for name, why in (("InputDrift", "prediction log"), ("RealisedAucLow", "not exported on /metrics")):
        assert re.search(rf"warning: \[monitor\.delay\] alert {name} .*left out.*{why}", stderr), stderr
        assert re.search(rf"^# - \[monitor\.delay\] alert {name} ", text, re.M), text
    assert "[deploy.delay].canary" not in stderr  # rendered with --monitor, so it still runs


# --------------------------------------------------------------------------- references


def test_references_hold_together(docs):
    secret_keys = set()
    for dep in of_kind(docs, "Deployment"):
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]
        labels = pod["metadata"]["labels"]
        sel = dep["spec"]["selector"]["matchLabels"]
        assert sel.items() <= labels.items(), name
        svc = named(docs, "Service", name)
        assert svc["spec"]["selector"] == sel
        assert named(docs, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"] == sel
        hpa = named(docs, "HorizontalPodAutoscaler", name)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert "replicas" not in dep["spec"], "the autoscaler owns the replica count"
        (c,) = pod["spec"]["containers"]
        ports = {p["name"] for p in c["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["port"] in ports
        assert svc["spec"]["ports"][0]["targetPort"] in ports
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert set(mounts) == set(volumes)
        for e in c["env"]:
            if "valueFrom" in e:
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "kiln-store"
                secret_keys.add(ref["key"])
            else:
                assert e["name"] in {"KILN_DATA_DIR", "KILN_CONFIG"}, e
        env = {e["name"]: e for e in c["env"]}
        for required in ("KILN_STORE", "KILN_ARTIFACTS"):
            assert env[required]["valueFrom"]["secretKeyRef"]["optional"] is False
        if "config" in volumes:
            cm = named(docs, "ConfigMap", volumes["config"]["configMap"]["name"])
            path = env["KILN_CONFIG"]["value"]
            assert path == f"{mounts['config']}/kiln.toml" and "kiln.toml" in cm["data"]
            assert "--config" in c["args"] and path in c["args"]
    assert {"KILN_STORE", "KILN_ARTIFACTS", "AWS_SECRET_ACCESS_KEY"} <= secret_keys
    sm = named(docs, "ServiceMonitor", "kiln-serve")
    serve_svcs = [s for s in of_kind(docs, "Service") if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert sorted(s["metadata"]["name"] for s in serve_svcs) == ["kiln-serve-delay", "kiln-serve-fraud-v2"]
    assert all(d["metadata"]["namespace"] == "ml" for d in docs)


def test_the_config_map_holds_the_file_byte_for_byte(docs):
    assert named(docs, "ConfigMap", "kiln-config")["data"]["kiln.toml"] == PROJECT


def test_the_repository_kiln_toml_exports_and_validates(tmp_path):
    import kubernetes_validate
    import promql_parser

    docs, _, _ = run_export(tmp_path, None)
    docs = [d for d in docs if d is not None]
    for d in docs:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            _crd_validate(d)
            for g in d["spec"].get("groups", []):
                for r in g["rules"]:
                    promql_parser.parse(r["expr"])
        else:
            kubernetes_validate.validate(d, K8S_VERSIONS[-1], strict=True)


def test_out_dir_writes_one_file_per_component(tmp_path):
    out = tmp_path / "manifests"
    run_export(tmp_path, PROJECT, "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml", "control-plane.yaml", "data-plane-delay.yaml", "data-plane-fraud-v2.yaml", "monitoring.yaml"]


# --------------------------------------------------------------------------- the real servers


class Proc:
    """A kiln child process that prints `Listening on http://ADDR` first."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self.proc = subprocess.Popen([str(KILN_BIN), *args], stdout=subprocess.PIPE, stderr=open(log, "ab"),
                                     env={**os.environ, **env}, start_new_session=True)
        first: list[bytes] = []

        def drain() -> None:
            first.append(self.proc.stdout.readline())
            for _ in iter(self.proc.stdout.readline, b""):
                pass

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 60
        while not first:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.02)
        line = first[0].decode().strip()
        assert line.startswith("Listening on http://"), line
        self.url = line[len("Listening on "):]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def local_args(args: list[str], replace: dict[str, str], drop: set[str]) -> list[str]:
    """The container's arguments with some flags' values replaced and some flags dropped."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        takes_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        if a in drop:
            i += 2 if takes_value else 1
            continue
        out.append(a)
        if a in replace:
            out.append(replace[a])
            i += 2
            continue
        i += 1
    return out


def test_data_plane_probes_and_metrics_are_real(docs, tmp_path):
    dep = named(docs, "Deployment", "kiln-serve-delay")
    pod = dep["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["kiln"]
    args = local_args(c["args"], {"--host": "127.0.0.1", "--port": "0", "--model": f"delay={ONNX_PATH}"},
                      {"--monitor", "--config", "--prediction-log"})
    srv = Proc(args, {"KILN_DATA_DIR": str(tmp_path)}, tmp_path / "serve.log")
    try:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            r = requests.get(srv.url + c[probe]["httpGet"]["path"], timeout=10)
            assert r.status_code == 200, (probe, r.status_code, r.text)
        tensor = json.loads(DATA_PATH.read_text())["tensors"][0]
        row = [0.0 if v is None else v for v in tensor["data"][: tensor["shape"][1]]]
        body = {"inputs": [{"name": "X", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
        r = requests.post(f"{srv.url}/v2/models/delay/infer", json=body, timeout=10)
        assert r.status_code == 200, r.text
        ann = pod["metadata"]["annotations"]
        assert ann["prometheus.io/port"] == str(c["ports"][0]["containerPort"])
        metrics = requests.get(srv.url + ann["prometheus.io/path"], timeout=10)
        assert metrics.status_code == 200
        exposed = metrics.text
    finally:
        assert srv.stop() == 0
    # Every series and bucket the rules read is one kiln serve exports.
    for group in rules(docs).values():
        for r in group:
            for metric in set(re.findall(r"\b(kiln_[a-z_]+)\{", r["expr"])):
                assert re.search(rf"^{metric}\{{[^}}]*model=\"delay\"", exposed, re.M), (metric, r["alert"])
            for le in re.findall(r'le="([^"]+)"', r["expr"]):
                assert f'le="{le}"' in exposed, (le, r["alert"])
            for le in re.findall(r'le=~"([^"]+)"', r["expr"]):
                le = le.replace("\\\\", "\\")
                assert re.search(rf'le="(?:{le})"', exposed), (le, r["alert"])


def test_control_plane_probes_are_real(docs, tmp_path):
    dep = named(docs, "Deployment", "kiln-server")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    args = local_args(c["args"], {"--host": "127.0.0.1", "--port": "0"}, set())
    assert args[0] == "server"
    srv = Proc(args, {"KILN_DATA_DIR": str(tmp_path)}, tmp_path / "server.log")
    try:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            r = requests.get(srv.url + c[probe]["httpGet"]["path"], timeout=10)
            assert r.status_code == 200, (probe, r.status_code, r.text)
    finally:
        assert srv.stop() == 0
