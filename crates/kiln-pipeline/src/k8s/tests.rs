use std::collections::BTreeMap;

use serde_json::Value;

use super::*;

const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

fn workload() -> Workload {
    Workload {
        min_replicas: 2,
        max_replicas: 6,
        cpu_target_percent: 70,
        cpu_request: "500m".into(),
        memory_request: "512Mi".into(),
        cpu_limit: Some("2".into()),
        memory_limit: Some("1Gi".into()),
    }
}

fn options() -> Options {
    Options {
        image: "registry.example/kiln:1.2.3".into(),
        image_pull_policy: "IfNotPresent".into(),
        namespace: Some("ml".into()),
        prefix: "kiln".into(),
        version: "1.2.3".into(),
        secret: "kiln-store".into(),
        serve: workload(),
        server: Some(workload()),
        monitor: false,
        prediction_log: None,
        prometheus_operator: true,
        selector_labels: BTreeMap::from([("release".to_string(), "prom".to_string())]),
        runbook_base_url: Some("https://git.example/ml/blob/main/".into()),
        latency_buckets_s: BUCKETS.to_vec(),
    }
}

fn rule(name: &str, when: &str) -> AlertRule {
    AlertRule {
        name: name.into(),
        when: when.into(),
        for_ms: 300_000,
        severity: "page".into(),
        runbook: Some("runbooks/latency.md".into()),
        summary: Some("p99 is {{ $value }} ms on {{ $labels.deployment }}".into()),
        ..AlertRule::default()
    }
}

fn project() -> Project {
    Project {
        name: "flight-delays".into(),
        config_text: "[project]\nname = \"flight-delays\"\n".into(),
        deployments: vec![Deployment {
            name: "flight_delay".into(),
            model: Some("delay@champion".into()),
            canary: false,
        }],
        alerting: vec![Alerting {
            deployment: "flight_delay".into(),
            window_ms: 60_000,
            interval_ms: None,
            rules: vec![
                rule("HighLatency", "p99_ms > 20"),
                rule("Drifting", "drift_share > 0.5"),
            ],
            slos: vec![Slo {
                name: "flight_delay-availability".into(),
                objective: Objective::Availability { percent: 99.9 },
            }],
            slo_rules: vec![AlertRule {
                name: "ErrorBudgetBurn".into(),
                when: "burn_rate_1h{slo=\"flight_delay-availability\"} > 14.4 and burn_rate_5m{slo=\"flight_delay-availability\"} > 14.4".into(),
                severity: "page".into(),
                labels: BTreeMap::from([("slo".to_string(), "flight_delay-availability".to_string())]),
                ..AlertRule::default()
            }],
        }],
    }
}

fn kinds(m: &Manifests) -> Vec<(String, String)> {
    m.documents
        .iter()
        .filter(|d| !d.value.is_null())
        .map(|d| {
            (
                d.value["kind"].as_str().unwrap().to_string(),
                d.value["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn find<'a>(m: &'a Manifests, kind: &str, name: &str) -> &'a Value {
    &m.documents
        .iter()
        .find(|d| d.value["kind"] == kind && d.value["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .value
}

#[test]
fn k8s_renders_both_planes_config_and_rules() {
    let m = render(&project(), &options()).unwrap();
    let want = [
        ("ConfigMap", "kiln-config"),
        ("Deployment", "kiln-server"),
        ("Service", "kiln-server"),
        ("HorizontalPodAutoscaler", "kiln-server"),
        ("PodDisruptionBudget", "kiln-server"),
        ("Deployment", "kiln-serve-flight-delay"),
        ("Service", "kiln-serve-flight-delay"),
        ("HorizontalPodAutoscaler", "kiln-serve-flight-delay"),
        ("PodDisruptionBudget", "kiln-serve-flight-delay"),
        ("ServiceMonitor", "kiln-serve"),
        ("PrometheusRule", "kiln-rules"),
    ];
    let got = kinds(&m);
    assert_eq!(
        got,
        want.map(|(k, n)| (k.to_string(), n.to_string())).to_vec()
    );
    for d in m.documents.iter().filter(|d| !d.value.is_null()) {
        assert_eq!(d.value["metadata"]["namespace"], "ml", "{:?}", d.value);
    }
}

#[test]
fn k8s_data_plane_runs_kiln_serve_with_secrets_by_reference() {
    let m = render(&project(), &options()).unwrap();
    let d = find(&m, "Deployment", "kiln-serve-flight-delay");
    // Replicas are the autoscaler's.
    assert!(d["spec"].get("replicas").is_none());
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--model",
            "flight_delay=delay@champion"
        ]
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/v2/health/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/v2/health/live");
    let env = c["env"].as_array().unwrap();
    let store = env.iter().find(|e| e["name"] == "KILN_STORE").unwrap();
    assert_eq!(store["valueFrom"]["secretKeyRef"]["name"], "kiln-store");
    assert_eq!(store["valueFrom"]["secretKeyRef"]["optional"], false);
    for e in env {
        // Nothing secret is inlined: only paths are plain values.
        if let Some(v) = e.get("value") {
            assert!(v.as_str().unwrap().starts_with('/'), "{e}");
        }
    }
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "8000");
    assert_eq!(ann["prometheus.io/path"], "/metrics");
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/part-of"], "flight-delays");
    assert_eq!(labels["kiln.dev/deployment"], "flight_delay");
    // The selector is a subset of the pod labels, and the Service and PDB use the same.
    let sel = &d["spec"]["selector"]["matchLabels"];
    for (k, v) in sel.as_object().unwrap() {
        assert_eq!(&labels[k], v);
    }
    assert_eq!(
        &find(&m, "Service", "kiln-serve-flight-delay")["spec"]["selector"],
        sel
    );
    assert_eq!(
        &find(&m, "PodDisruptionBudget", "kiln-serve-flight-delay")["spec"]["selector"]["matchLabels"],
        sel
    );
}

#[test]
fn k8s_control_plane_probes_health() {
    let m = render(&project(), &options()).unwrap();
    let d = find(&m, "Deployment", "kiln-server");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"][0], "server");
    assert_eq!(c["ports"][0]["containerPort"], 5000);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health");
    // No /metrics on the control plane: no scrape annotations.
    assert!(
        d["spec"]["template"]["metadata"]
            .get("annotations")
            .is_none()
    );
}

#[test]
fn k8s_monitor_flag_adds_the_monitor_and_a_config_checksum() {
    let mut o = options();
    o.monitor = true;
    o.prediction_log = Some("s3://logs/predictions".into());
    let m = render(&project(), &o).unwrap();
    let d = find(&m, "Deployment", "kiln-serve-flight-delay");
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .clone();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let tail = &args[7..];
    assert_eq!(
        tail,
        [
            "--monitor",
            "--config",
            "/etc/kiln/kiln.toml",
            "--prediction-log",
            "s3://logs/predictions"
        ]
    );
    let sha = &d["spec"]["template"]["metadata"]["annotations"]["kiln.dev/config-sha256"];
    assert_eq!(sha.as_str().unwrap().len(), 64);
}

#[test]
fn k8s_rules_keep_for_severity_runbook_and_say_what_was_left_out() {
    let m = render(&project(), &options()).unwrap();
    let r = find(&m, "PrometheusRule", "kiln-rules");
    assert_eq!(r["metadata"]["labels"]["release"], "prom");
    let groups = r["spec"]["groups"].as_array().unwrap();
    assert_eq!(groups[0]["name"], "kiln.flight_delay.alerts");
    let rules = groups[0]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "the drift rule is left out");
    let hl = &rules[0];
    assert_eq!(hl["alert"], "HighLatency");
    assert_eq!(hl["for"], "5m");
    assert_eq!(hl["labels"]["severity"], "page");
    assert_eq!(
        hl["annotations"]["runbook_url"],
        "https://git.example/ml/blob/main/runbooks/latency.md"
    );
    assert!(
        hl["expr"]
            .as_str()
            .unwrap()
            .contains("histogram_quantile(0.99")
    );
    let slo = &groups[1]["rules"][0];
    assert_eq!(groups[1]["name"], "kiln.flight_delay.slo");
    assert_eq!(slo["labels"]["slo"], "flight_delay-availability");
    assert!(slo.get("for").is_none());
    // The left-out rule: on stderr (warnings) and in a YAML comment.
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("Drifting") && w.contains("prediction log")),
        "{:?}",
        m.warnings
    );
    let yaml = m.to_yaml().unwrap();
    assert!(
        yaml.lines()
            .any(|l| l.starts_with("# - [monitor.flight_delay] alert Drifting")),
        "{yaml}"
    );
}

#[test]
fn k8s_yaml_stream_and_files() {
    let m = render(&project(), &options()).unwrap();
    let yaml = m.to_yaml().unwrap();
    assert_eq!(yaml.matches("\n---\n").count() + 1, m.documents.len());
    assert!(yaml.starts_with("---\n# kiln.toml"));
    // The config is kept as a block, byte for byte.
    assert!(
        yaml.contains("  kiln.toml: |\n    [project]\n    name = \"flight-delays\"\n"),
        "{yaml}"
    );
    let files: Vec<String> = m.files().unwrap().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        files,
        [
            "config.yaml",
            "control-plane.yaml",
            "data-plane-flight-delay.yaml",
            "monitoring.yaml"
        ]
    );
}

#[test]
fn k8s_fixed_replicas_without_autoscaling_and_no_control_plane() {
    let mut o = options();
    o.serve.max_replicas = 2;
    o.server = None;
    o.prometheus_operator = false;
    let m = render(&project(), &o).unwrap();
    let got = kinds(&m);
    assert!(
        !got.iter()
            .any(|(k, _)| k == "HorizontalPodAutoscaler" || k == "PrometheusRule")
    );
    assert!(!got.iter().any(|(_, n)| n == "kiln-server"));
    let d = find(&m, "Deployment", "kiln-serve-flight-delay");
    assert_eq!(d["spec"]["replicas"], 2);
    assert!(m.warnings.iter().any(|w| w.contains("Prometheus operator")));
}

#[test]
fn k8s_bad_input_is_named() {
    let mut p = project();
    p.deployments[0].model = None;
    let e = render(&p, &options()).unwrap_err().to_string();
    assert!(e.contains("[deploy.flight_delay] has no `model`"), "{e}");
    let mut p = project();
    p.deployments.push(Deployment {
        name: "flight-delay".into(),
        model: Some("x@y".into()),
        canary: false,
    });
    let e = render(&p, &options()).unwrap_err().to_string();
    assert!(e.contains("kiln-serve-flight-delay"), "{e}");
    let mut o = options();
    o.serve.cpu_request = "half".into();
    let e = render(&project(), &o).unwrap_err().to_string();
    assert!(e.contains("--serve-cpu"), "{e}");
    let mut o = options();
    o.namespace = Some("ML".into());
    assert!(render(&project(), &o).is_err());
    let mut p = project();
    p.deployments[0].model = Some("models/delay.onnx".into());
    let m = render(&p, &options()).unwrap();
    assert!(m.warnings.iter().any(|w| w.contains("inside the image")));
}

#[test]
fn k8s_quantities_and_names() {
    for q in ["500m", "2", "0.5", "512Mi", "1Gi", "1e3", "1.5G"] {
        assert!(is_quantity(q), "{q}");
    }
    for q in ["", "m", "1x", "1.2.3", "-", "1 Gi", "1e"] {
        assert!(!is_quantity(q), "{q}");
    }
    assert_eq!(
        k8s_name("Flight_Delay.v2").as_deref(),
        Some("flight-delay-v2")
    );
    assert_eq!(k8s_name("__"), None);
}

#[test]
fn k8s_every_rule_left_out_leaves_a_comment_only() {
    let mut p = project();
    p.alerting[0].rules.truncate(0);
    p.alerting[0]
        .rules
        .push(rule("Drifting", "drift_share > 0.5"));
    p.alerting[0].slo_rules.clear();
    let m = render(&p, &options()).unwrap();
    assert!(!kinds(&m).iter().any(|(k, _)| k == "PrometheusRule"));
    let yaml = m.to_yaml().unwrap();
    assert!(
        yaml.contains("# - [monitor.flight_delay] alert Drifting"),
        "{yaml}"
    );
    assert!(!yaml.contains("null"), "{yaml}");
}
