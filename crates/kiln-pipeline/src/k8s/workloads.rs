//! Deployments, Services, HorizontalPodAutoscalers, PodDisruptionBudgets, the ConfigMap and
//! the ServiceMonitor.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Deployment, K8sError, Options, Project, Result, Workload, is_label_value, k8s_name};

/// Where the ConfigMap with `kiln.toml` is mounted, and the file `KILN_CONFIG` names.
pub const CONFIG_DIR: &str = "/etc/kiln";
pub const CONFIG_FILE: &str = "kiln.toml";
/// `KILN_DATA_DIR`: scratch space (the root filesystem is read-only).
const DATA_DIR: &str = "/var/lib/kiln";
pub const SERVE_PORT: u16 = 8000;
pub const SERVER_PORT: u16 = 5000;
/// A non-root user; the image needs no particular one.
const USER: i64 = 65532;
/// Seconds a terminating pod keeps serving while endpoints drop it (the preStop sleep).
const DRAIN_SECONDS: i64 = 5;

const DATA_PLANE: &str = "data-plane";
const CONTROL_PLANE: &str = "control-plane";
/// The label naming the `[deploy.NAME]` a data-plane pod serves.
pub const DEPLOYMENT_LABEL: &str = "kiln.dev/deployment";

/// The Kubernetes name of each `[deploy.NAME]`'s objects: `PREFIX-serve-NAME`.
pub fn names(project: &Project, opts: &Options) -> Result<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for d in &project.deployments {
        let name = k8s_name(&d.name)
            .map(|n| format!("{}-serve-{n}", opts.prefix))
            .filter(|n| super::is_dns_label(n))
            .ok_or_else(|| K8sError::Invalid {
                what: format!("[deploy.{}]", d.name),
                value: d.name.clone(),
                reason: format!(
                    "cannot become a Kubernetes name `{}-serve-NAME` of at most 63 lower-case \
                     letters, digits and `-`",
                    opts.prefix
                ),
            })?;
        if !is_label_value(&d.name) {
            return Err(K8sError::Invalid {
                what: format!("[deploy.{}]", d.name),
                value: d.name.clone(),
                reason: "a served name must be usable as a label value (letters, digits, \
                         `-`, `_`, `.`, at most 63)"
                    .into(),
            });
        }
        if let Some(other) = seen.insert(name.clone(), d.name.clone()) {
            return Err(K8sError::NameClash {
                a: other,
                b: d.name.clone(),
                name,
            });
        }
        out.insert(d.name.clone(), name);
    }
    Ok(out)
}

fn labels(project: &Project, opts: &Options, component: &str, deployment: Option<&str>) -> Value {
    let mut m = selector(opts, component, deployment);
    m.insert("app.kubernetes.io/managed-by".into(), json!("kiln"));
    if is_label_value(&opts.version) {
        m.insert("app.kubernetes.io/version".into(), json!(opts.version));
    }
    if let Some(p) = k8s_name(&project.name).filter(|p| is_label_value(p)) {
        m.insert("app.kubernetes.io/part-of".into(), json!(p));
    }
    Value::Object(m)
}

/// The labels a plane's pods are selected by (they never change, so a selector stays valid).
fn selector(opts: &Options, component: &str, deployment: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("app.kubernetes.io/name".into(), json!("kiln"));
    m.insert("app.kubernetes.io/instance".into(), json!(opts.prefix));
    m.insert("app.kubernetes.io/component".into(), json!(component));
    if let Some(d) = deployment {
        m.insert(DEPLOYMENT_LABEL.into(), json!(d));
    }
    m
}

fn metadata(name: &str, opts: &Options, labels: &Value) -> Value {
    let mut m = json!({ "name": name, "labels": labels });
    if let Some(ns) = &opts.namespace {
        m["namespace"] = json!(ns);
    }
    m
}

pub fn config_map(project: &Project, opts: &Options) -> super::Document {
    let labels = labels(project, opts, "config", None);
    super::Document {
        file: "config.yaml".into(),
        comments: vec![format!(
            "kiln.toml, mounted at {CONFIG_DIR}/{CONFIG_FILE} (KILN_CONFIG) in the data plane."
        )],
        value: json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(&config_map_name(opts), opts, &labels),
            "data": { CONFIG_FILE: project.config_text },
        }),
    }
}

fn config_map_name(opts: &Options) -> String {
    format!("{}-config", opts.prefix)
}

/// `NAME` from the Secret's key `NAME`.
fn secret_env(opts: &Options, name: &str, optional: bool) -> Value {
    json!({
        "name": name,
        "valueFrom": { "secretKeyRef": { "name": opts.secret, "key": name, "optional": optional } },
    })
}

/// The stores (required) and object-store credentials (optional: a pod identity may supply
/// them), from the Secret; scratch space in `KILN_DATA_DIR`.
fn store_env(opts: &Options) -> Vec<Value> {
    let mut env = vec![
        secret_env(opts, "KILN_STORE", false),
        secret_env(opts, "KILN_ARTIFACTS", false),
    ];
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_ENDPOINT",
        "AWS_ALLOW_HTTP",
    ] {
        env.push(secret_env(opts, key, true));
    }
    env.push(json!({ "name": "KILN_DATA_DIR", "value": DATA_DIR }));
    env
}

fn resources(w: &Workload) -> Value {
    let mut limits = Map::new();
    if let Some(c) = &w.cpu_limit {
        limits.insert("cpu".into(), json!(c));
    }
    if let Some(m) = &w.memory_limit {
        limits.insert("memory".into(), json!(m));
    }
    let mut r = json!({ "requests": { "cpu": w.cpu_request, "memory": w.memory_request } });
    if !limits.is_empty() {
        r["limits"] = Value::Object(limits);
    }
    r
}

fn http_probe(path: &str, period: i64, failures: i64) -> Value {
    json!({
        "httpGet": { "path": path, "port": "http" },
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    })
}

struct Pod<'a> {
    container: &'a str,
    args: Vec<String>,
    env: Vec<Value>,
    port: u16,
    /// (readiness, liveness) paths.
    probes: (&'a str, &'a str),
    workload: &'a Workload,
    annotations: Map<String, Value>,
    config: bool,
}

fn pod_template(opts: &Options, labels: &Value, pod: Pod<'_>) -> Value {
    let mut mounts = vec![
        json!({ "name": "data", "mountPath": DATA_DIR }),
        json!({ "name": "tmp", "mountPath": "/tmp" }),
    ];
    let mut volumes = vec![
        json!({ "name": "data", "emptyDir": {} }),
        json!({ "name": "tmp", "emptyDir": {} }),
    ];
    if pod.config {
        mounts.push(json!({ "name": "config", "mountPath": CONFIG_DIR, "readOnly": true }));
        volumes.push(json!({ "name": "config", "configMap": { "name": config_map_name(opts) } }));
    }
    let container = json!({
        "name": pod.container,
        "image": opts.image,
        "imagePullPolicy": opts.image_pull_policy,
        "command": ["kiln"],
        "args": pod.args,
        "env": pod.env,
        "ports": [{ "name": "http", "containerPort": pod.port, "protocol": "TCP" }],
        // Loading a model from the registry can take a while: the startup probe gives it
        // five minutes before liveness applies.
        "startupProbe": http_probe(pod.probes.1, 5, 60),
        "readinessProbe": http_probe(pod.probes.0, 5, 3),
        "livenessProbe": http_probe(pod.probes.1, 10, 3),
        "resources": resources(pod.workload),
        // Endpoints drop a terminating pod a moment after SIGTERM; keep serving meanwhile,
        // then Kiln drains in-flight requests on SIGTERM.
        "lifecycle": { "preStop": { "sleep": { "seconds": DRAIN_SECONDS } } },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": { "drop": ["ALL"] },
        },
        "volumeMounts": mounts,
    });
    let mut meta = json!({ "labels": labels });
    if !pod.annotations.is_empty() {
        meta["annotations"] = Value::Object(pod.annotations);
    }
    json!({
        "metadata": meta,
        "spec": {
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 60,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": USER,
                "runAsGroup": USER,
                "fsGroup": USER,
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "topologySpreadConstraints": [{
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": { "matchLabels": selector_of(labels) },
            }],
            "containers": [container],
            "volumes": volumes,
        },
    })
}

/// The selector labels within a full label set.
fn selector_of(labels: &Value) -> Value {
    let keep = [
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
        DEPLOYMENT_LABEL,
    ];
    let mut m = Map::new();
    if let Some(all) = labels.as_object() {
        for (k, v) in all {
            if keep.contains(&k.as_str()) {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(m)
}

/// What one plane's objects are made of.
struct Set<'a> {
    name: String,
    /// The file they go in with `--out DIR`.
    file: String,
    labels: &'a Value,
    port: u16,
    workload: &'a Workload,
    template: Value,
    /// Comment lines above the Deployment.
    comments: Vec<String>,
}

/// Deployment, Service, HorizontalPodAutoscaler (when it may scale) and PodDisruptionBudget.
fn workload_set(opts: &Options, set: Set<'_>) -> Vec<super::Document> {
    let Set {
        name,
        file,
        labels,
        port,
        workload: w,
        template,
        comments,
    } = set;
    let name = name.as_str();
    let sel = selector_of(labels);
    let meta = metadata(name, opts, labels);
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "selector": { "matchLabels": sel },
            "revisionHistoryLimit": 5,
            // A new pod is ready before an old one goes: capacity never drops in a rollout.
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": 0 } },
            "template": template,
        },
    });
    let autoscale = w.max_replicas > w.min_replicas;
    if !autoscale {
        // With an autoscaler `replicas` is left out, so re-applying never resets its count.
        deployment["spec"]["replicas"] = json!(w.min_replicas);
    }
    let doc = |value: Value, comments: Vec<String>| super::Document {
        file: file.clone(),
        comments,
        value,
    };
    let mut out = vec![
        doc(deployment, comments),
        doc(
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {
                    "type": "ClusterIP",
                    "selector": sel,
                    "ports": [{ "name": "http", "port": port, "targetPort": "http", "protocol": "TCP" }],
                },
            }),
            vec![],
        ),
    ];
    if autoscale {
        out.push(doc(
            json!({
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": meta,
                "spec": {
                    "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
                    "minReplicas": w.min_replicas,
                    "maxReplicas": w.max_replicas,
                    "metrics": [{
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": { "type": "Utilization", "averageUtilization": w.cpu_target_percent },
                        },
                    }],
                },
            }),
            vec![],
        ));
    }
    out.push(doc(
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            "spec": {
                // One pod at a time: drains go on, capacity drops by one pod at most.
                "maxUnavailable": 1,
                "selector": { "matchLabels": sel },
            },
        }),
        vec![],
    ));
    out
}

pub fn control_plane(project: &Project, opts: &Options, w: &Workload) -> Vec<super::Document> {
    let labels = labels(project, opts, CONTROL_PLANE, None);
    let mut env = store_env(opts);
    env.push(secret_env(opts, "KILN_ADMIN_TOKEN", true));
    let args = [
        "server",
        "--host",
        "0.0.0.0",
        "--port",
        &SERVER_PORT.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let template = pod_template(
        opts,
        &labels,
        Pod {
            container: "kiln-server",
            args,
            env,
            port: SERVER_PORT,
            probes: ("/health", "/health"),
            workload: w,
            annotations: Map::new(),
            config: false,
        },
    );
    workload_set(
        opts,
        Set {
            name: format!("{}-server", opts.prefix),
            file: "control-plane.yaml".into(),
            labels: &labels,
            port: SERVER_PORT,
            workload: w,
            template,
            comments: vec![
                "Control plane: `kiln server` (MLflow tracking and registry, releases), \
                 stateless on the PostgreSQL store and S3 artifacts named in the Secret."
                    .into(),
            ],
        },
    )
}

pub fn data_plane(
    project: &Project,
    opts: &Options,
    d: &Deployment,
    name: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<super::Document>> {
    let model = d
        .model
        .as_deref()
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| K8sError::NoModel(d.name.clone()))?;
    let registered = model.starts_with("models:/")
        || model.contains('@')
        || (model.contains('/')
            && !model.starts_with(['/', '.'])
            && !model.ends_with(".onnx")
            && model.matches('/').count() == 1
            && model
                .rsplit('/')
                .next()
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())));
    if !registered {
        warnings.push(format!(
            "[deploy.{}].model = {model:?} is a path: it must exist at that path inside the \
             image (a registered MODEL@ALIAS is fetched from the artifact store instead)",
            d.name
        ));
    }
    if d.canary && !opts.monitor {
        warnings.push(format!(
            "[deploy.{}].canary: automatic canary rollback runs in `kiln serve --monitor`; \
             render with --monitor to keep it",
            d.name
        ));
    }
    let labels = labels(project, opts, DATA_PLANE, Some(&d.name));
    let mut args: Vec<String> = [
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        &SERVE_PORT.to_string(),
        "--model",
        &format!("{}={model}", d.name),
    ]
    .map(String::from)
    .to_vec();
    let mut annotations = Map::new();
    annotations.insert("prometheus.io/scrape".into(), json!("true"));
    annotations.insert("prometheus.io/port".into(), json!(SERVE_PORT.to_string()));
    annotations.insert("prometheus.io/path".into(), json!("/metrics"));
    if opts.monitor {
        args.extend(
            [
                "--monitor",
                "--config",
                &format!("{CONFIG_DIR}/{CONFIG_FILE}"),
            ]
            .map(String::from),
        );
        // The monitor reads kiln.toml at start: a changed file rolls the pods.
        let digest = Sha256::digest(project.config_text.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        annotations.insert("kiln.dev/config-sha256".into(), json!(hex));
    }
    if let Some(url) = &opts.prediction_log {
        args.extend(["--prediction-log".to_string(), url.clone()]);
    }
    let mut env = store_env(opts);
    env.push(secret_env(opts, "KILN_SERVE_ADMIN_TOKEN", true));
    env.push(json!({ "name": "KILN_CONFIG", "value": format!("{CONFIG_DIR}/{CONFIG_FILE}") }));
    let template = pod_template(
        opts,
        &labels,
        Pod {
            container: "kiln-serve",
            args,
            env,
            port: SERVE_PORT,
            probes: ("/v2/health/ready", "/v2/health/live"),
            workload: &opts.serve,
            annotations,
            config: true,
        },
    );
    let file = format!(
        "data-plane-{}.yaml",
        name.trim_start_matches(&format!("{}-serve-", opts.prefix))
    );
    Ok(workload_set(
        opts,
        Set {
            name: name.to_string(),
            file,
            labels: &labels,
            port: SERVE_PORT,
            workload: &opts.serve,
            template,
            comments: vec![format!(
                "Data plane for [deploy.{}]: `kiln serve` of {model}.",
                d.name
            )],
        },
    ))
}

/// One ServiceMonitor for every data-plane Service's `/metrics`.
pub fn service_monitor(project: &Project, opts: &Options) -> super::Document {
    let mut labels = labels(project, opts, DATA_PLANE, None);
    if let Some(m) = labels.as_object_mut() {
        for (k, v) in &opts.selector_labels {
            m.insert(k.clone(), json!(v));
        }
    }
    let sel = Value::Object(selector(opts, DATA_PLANE, None));
    let mut spec = json!({
        "selector": { "matchLabels": sel },
        "endpoints": [{ "port": "http", "path": "/metrics", "interval": "15s" }],
    });
    if let Some(ns) = &opts.namespace {
        spec["namespaceSelector"] = json!({ "matchNames": [ns] });
    }
    super::Document {
        file: "monitoring.yaml".into(),
        comments: vec![
            "Scrapes every data-plane Service's /metrics (the alert rules below read them). \
             Without the Prometheus operator, the pods' prometheus.io/* annotations serve \
             the same purpose."
                .into(),
        ],
        value: json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": metadata(&format!("{}-serve", opts.prefix), opts, &labels),
            "spec": spec,
        }),
    }
}
