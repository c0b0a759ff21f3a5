//! `deploy/kubernetes/`, checked without a cluster: the generated files are
//! current; every object of each rendered overlay validates against the
//! Kubernetes schemas (`kubernetes-validate`), the custom resources against
//! their sources; the objects refer to each other correctly; and the demo
//! overlay runs each role of the shop as compose does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use faultline_tests::kubernetes::kustomize::{self, kind, name, pod_spec, split_image};
use faultline_tests::kubernetes::{self as k8s, ROLES};
use serde_yaml_ng::Value;

const OVERLAYS: [&str; 2] = ["demo", "production"];

/// The Kubernetes versions the manifests are validated against: the oldest
/// they support (1.30: the preStop `sleep` action is on by default) and the
/// newest kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// The kinds no built-in schema describes: the prometheus-operator's.
const CUSTOM_KINDS: [&str; 2] = ["PodMonitor", "PrometheusRule"];

/// Created by whoever deploys, never committed (the README says how).
const EXTERNAL_CONFIG: [(&str, &str); 3] = [
    ("demo", "faultline-jwks"),
    ("production", "faultline-jwks"),
    ("production", "faultline-database"),
];
const EXTERNAL_SECRETS: [(&str, &str); 2] = [
    ("production", "faultline-database"),
    ("production", "faultline-amqp"),
];

/// The jobs the alerts read that the shop's PodMonitor does not make:
/// rabbitmq by the demo's PodMonitor; the others by your monitoring stack,
/// named so (deploy/kubernetes/README.md, "Monitoring").
const EXTERNAL_JOBS: [&str; 5] = [
    "alertmanager",
    "postgres",
    "prometheus",
    "proxy",
    "rabbitmq",
];

/// CoreDNS's default TTL for a Service's records.
const DNS_TTL: Duration = Duration::from_secs(5);

fn render(overlay: &str) -> anyhow::Result<Vec<Value>> {
    let dir = k8s::manifests_dir(&faultline_tests::repo_root())
        .join("overlays")
        .join(overlay);
    kustomize::render(&dir).with_context(|| format!("rendering overlays/{overlay}"))
}

fn str_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(*key))
}

fn seq(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_sequence).map_or(&[], Vec::as_slice)
}

fn find<'a>(objects: &'a [Value], kind_: &str, name_: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| kind(o) == kind_ && name(o) == name_)
}

/// The container that runs faultline's image in a pod spec.
fn shop_container(spec: &Value) -> Option<&Value> {
    seq(spec.get("containers"))
        .iter()
        .find(|c| str_of(c.get("image")).is_some_and(|i| split_image(i).0 == "faultline/faultline"))
}

/// The Deployments that run a role of the shop, by role (their first arg).
fn shop_deployments(objects: &[Value]) -> anyhow::Result<BTreeMap<String, &Value>> {
    let mut by_role = BTreeMap::new();
    for object in objects.iter().filter(|o| kind(o) == "Deployment") {
        let Some(container) = pod_spec(object).and_then(shop_container) else {
            continue;
        };
        let role = str_of(seq(container.get("args")).first())
            .unwrap_or_default()
            .to_owned();
        ensure!(
            ROLES.contains(&role.as_str()),
            "{} runs faultline's image as {role:?}",
            name(object)
        );
        ensure!(
            by_role.insert(role.clone(), object).is_none(),
            "two Deployments run {role}"
        );
    }
    Ok(by_role)
}

fn shop_of(deployment: &Value) -> anyhow::Result<&Value> {
    pod_spec(deployment)
        .and_then(shop_container)
        .with_context(|| format!("{} has no shop container", name(deployment)))
}

/// A container's environment as the pod sees it: envFrom, then env; values
/// from ConfigMaps and Secrets of the same render, or `<secret NAME/KEY>`
/// for a Secret created outside it.
fn resolved_env(objects: &[Value], container: &Value) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for from in seq(container.get("envFrom")) {
        let config =
            str_of(at(from, &["configMapRef", "name"])).context("only configMapRef in envFrom")?;
        let map = find(objects, "ConfigMap", config)
            .with_context(|| format!("envFrom: no ConfigMap {config}"))?;
        let data = map.get("data").and_then(Value::as_mapping);
        for (k, v) in data.with_context(|| format!("ConfigMap {config} has no data"))? {
            env.insert(k8s::scalar_text(k)?, k8s::scalar_text(v)?);
        }
    }
    for var in seq(container.get("env")) {
        let var_name = str_of(var.get("name")).context("an env entry without a name")?;
        let value = if let Some(v) = var.get("value") {
            k8s::scalar_text(v)?
        } else if let Some(r) = at(var, &["valueFrom", "secretKeyRef"]) {
            let secret = str_of(r.get("name")).context("secretKeyRef without a name")?;
            let key = str_of(r.get("key")).context("secretKeyRef without a key")?;
            match find(objects, "Secret", secret) {
                Some(s) => str_of(at(s, &["stringData", key]))
                    .with_context(|| format!("Secret {secret} has no stringData {key}"))?
                    .to_owned(),
                None => format!("<secret {secret}/{key}>"),
            }
        } else {
            bail!("{var_name}: neither a value nor a secretKeyRef");
        };
        env.insert(var_name.to_owned(), value);
    }
    Ok(env)
}

/// A probe's or a Service's port: a number, or a container port's name.
fn port_number(container: &Value, port: &Value) -> anyhow::Result<u16> {
    if let Some(n) = port.as_u64() {
        return Ok(u16::try_from(n)?);
    }
    let wanted = port
        .as_str()
        .context("a port is neither a number nor a name")?;
    let number = seq(container.get("ports"))
        .iter()
        .find(|p| str_of(p.get("name")) == Some(wanted))
        .and_then(|p| p.get("containerPort")?.as_u64())
        .with_context(|| format!("no container port named {wanted}"))?;
    Ok(u16::try_from(number)?)
}

fn container_ports(container: &Value) -> anyhow::Result<BTreeSet<u16>> {
    seq(container.get("ports"))
        .iter()
        .map(|p| {
            let n = p.get("containerPort").and_then(Value::as_u64);
            Ok(u16::try_from(n.context("a port without containerPort")?)?)
        })
        .collect()
}

/// A memory quantity in bytes (`128Mi`, `1Gi`, `512M`, bytes).
fn quantity_bytes(text: &str) -> anyhow::Result<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text[..split].parse()?;
    let unit = match &text[split..] {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        unit => bail!("unknown unit in {text:?}: {unit}"),
    };
    Ok(n * unit)
}

fn duration(env: &BTreeMap<String, String>, var: &str, default: &str) -> anyhow::Result<Duration> {
    let text = env.get(var).map_or(default, String::as_str);
    humantime::parse_duration(text).with_context(|| format!("{var}={text:?}"))
}

/// Whether a selector (`matchLabels` only) selects a pod with `labels`.
fn selects(selector: Option<&Value>, labels: Option<&Value>) -> bool {
    let Some(selector) = selector.and_then(Value::as_mapping) else {
        return false;
    };
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)).is_some_and(|l| l == v))
}

fn template_labels(workload: &Value) -> Option<&Value> {
    at(workload, &["spec", "template", "metadata", "labels"])
}

#[test]
fn generated_files_are_current() {
    let root = faultline_tests::repo_root();
    let files = k8s::generated_files(&root).unwrap();
    if std::env::var_os("FAULTLINE_REGENERATE").is_some() {
        for file in &files {
            std::fs::write(root.join(&file.path), &file.contents).unwrap();
        }
    }
    let stale: Vec<_> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(root.join(&f.path)).ok().as_deref() != Some(f.contents.as_str())
        })
        .map(|f| f.path.display().to_string())
        .collect();
    assert!(
        stale.is_empty(),
        "generated files differ from their sources: {}\nregenerate with\n  {}",
        stale.join(", "),
        k8s::REGENERATE_COMMAND
    );
    // Each is listed by its kustomization, so it is deployed at all.
    for file in &files {
        let (dir, file_name) = (
            file.path.parent().unwrap(),
            file.path.file_name().unwrap().to_str().unwrap(),
        );
        let mut dir = dir.to_path_buf();
        let mut relative = file_name.to_owned();
        while !root.join(&dir).join("kustomization.yaml").exists() {
            relative = format!("{}/{relative}", dir.file_name().unwrap().to_str().unwrap());
            dir.pop();
        }
        let kustomization =
            std::fs::read_to_string(root.join(&dir).join("kustomization.yaml")).unwrap();
        assert!(
            kustomization
                .lines()
                .any(|l| l.trim() == format!("- {relative}")),
            "{} does not list {relative}",
            dir.join("kustomization.yaml").display()
        );
    }
}

#[test]
fn overlays_validate_against_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    for overlay in OVERLAYS {
        let objects = render(overlay).unwrap();
        // JSON, which every YAML reader reads alike (a YAML 1.2 writer leaves
        // `no` plain, which the validator's YAML 1.1 reads as false; the
        // files themselves are checked for that in
        // no_plain_scalar_reads_as_a_boolean).
        let mut stream = String::new();
        for object in &objects {
            stream.push_str("---\n");
            stream.push_str(&serde_json::to_string_pretty(object).unwrap());
            stream.push('\n');
        }
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, stream).unwrap();
        let builtin = objects
            .iter()
            .filter(|o| !CUSTOM_KINDS.contains(&kind(o)))
            .count();
        let custom = objects.len() - builtin;
        assert!(
            builtin > 20 && custom >= 3,
            "overlays/{overlay} renders {builtin} + {custom} objects"
        );
        for version in KUBERNETES_VERSIONS {
            validate(overlay, &file, version, builtin, custom).unwrap();
        }
    }
}

/// Runs kubernetes-validate in strict mode (an unknown field is an error):
/// every built-in object must pass, and the only warnings allowed are the
/// custom kinds' missing schemas (their structure is checked in Rust).
fn validate(
    overlay: &str,
    file: &Path,
    version: &str,
    builtin: usize,
    custom: usize,
) -> anyhow::Result<()> {
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", version])
        .arg(file)
        .output()
        .context(
            "cannot run kubernetes-validate; install it with\n  \
             python3 -m pip install kubernetes-validate==1.37.0\n(.ci/run's install() does)",
        )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = format!("overlays/{overlay} against {version}:\n{stdout}{stderr}");
    ensure!(
        output.status.success(),
        "kubernetes-validate failed for {report}"
    );
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    let passed = lines
        .iter()
        .filter(|l| l.starts_with("INFO ") && l.contains(" passed for resource "))
        .count();
    let custom_warnings = lines
        .iter()
        .filter(|l| {
            l.starts_with("WARN ") && CUSTOM_KINDS.iter().any(|k| l.contains(&no_schema(k)))
        })
        .count();
    ensure!(
        passed == builtin,
        "not every built-in object passed: {report}"
    );
    ensure!(custom_warnings == custom, "unexpected warnings: {report}");
    ensure!(
        lines.len() == builtin + custom,
        "unexpected output: {report}"
    );
    Ok(())
}

/// kubernetes-validate's warning for a kind it has no schema for.
fn no_schema(kind: &str) -> String {
    format!("Couldn't find schema for kind {kind} with api version monitoring.coreos.com/v1")
}

/// Every YAML file under deploy/kubernetes/: no plain scalar that YAML 1.1
/// (kubectl's reader, and the validator's) takes for a boolean where a
/// string was meant, such as `value: no` or `[--appendonly, no]`.
#[test]
fn no_plain_scalar_reads_as_a_boolean() {
    const WORDS: [&str; 6] = ["yes", "no", "on", "off", "y", "n"];
    let mut files = Vec::new();
    let mut dirs = vec![k8s::manifests_dir(&faultline_tests::repo_root())];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 15, "{files:?}");
    let mut found = Vec::new();
    for path in &files {
        for (n, line) in std::fs::read_to_string(path).unwrap().lines().enumerate() {
            let code = line.split(" #").next().unwrap();
            if code.trim_start().starts_with('#') {
                continue;
            }
            let tokens = code
                .split([':', ',', '[', ']'])
                .skip(1)
                .map(|t| t.trim().trim_start_matches("- "));
            let after_dash = code.trim_start().strip_prefix("- ").map(str::trim);
            if tokens
                .chain(after_dash)
                .any(|t| WORDS.contains(&t.to_ascii_lowercase().as_str()))
            {
                found.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "quote these, YAML 1.1 reads them as booleans:\n{}",
        found.join("\n")
    );
}

#[test]
fn custom_resources_match_their_sources() {
    let root = faultline_tests::repo_root();
    for overlay in OVERLAYS {
        let objects = render(overlay).unwrap();

        // One PrometheusRule per rule file of alerts/, its groups the file's:
        // the real time scales, not alerts/compressed/.
        let rule_files = k8s::files_ending(&root.join("alerts"), ".rules.yml").unwrap();
        let rules: Vec<&Value> = objects
            .iter()
            .filter(|o| kind(o) == "PrometheusRule")
            .collect();
        assert_eq!(
            rules.len(),
            rule_files.len(),
            "overlays/{overlay}: PrometheusRules"
        );
        for path in &rule_files {
            let file = path.file_name().unwrap().to_str().unwrap();
            let source: Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let compressed: Value = serde_yaml_ng::from_str(
                &std::fs::read_to_string(root.join("alerts/compressed").join(file)).unwrap(),
            )
            .unwrap();
            let rule = find(&objects, "PrometheusRule", &k8s::prometheus_rule_name(file))
                .unwrap_or_else(|| {
                    panic!("overlays/{overlay}: no PrometheusRule for alerts/{file}")
                });
            assert_eq!(
                str_of(rule.get("apiVersion")),
                Some("monitoring.coreos.com/v1")
            );
            let groups = at(rule, &["spec", "groups"]).unwrap();
            assert_eq!(
                Some(groups),
                source.get("groups"),
                "alerts/{file}: groups differ"
            );
            assert_ne!(
                Some(groups),
                compressed.get("groups"),
                "alerts/{file}: the compressed groups"
            );
        }

        // One ConfigMap per dashboard, for Grafana's sidecar, the JSON as it is.
        let dashboards = k8s::files_ending(&root.join("dashboards"), ".json").unwrap();
        let labelled = objects
            .iter()
            .filter(|o| str_of(at(o, &["metadata", "labels", "grafana_dashboard"])) == Some("1"))
            .count();
        assert_eq!(
            labelled,
            dashboards.len(),
            "overlays/{overlay}: dashboard ConfigMaps"
        );
        for path in &dashboards {
            let file = path.file_name().unwrap().to_str().unwrap();
            let map = find(&objects, "ConfigMap", &k8s::dashboard_config_map_name(file)).unwrap();
            let json = str_of(at(map, &["data", file])).unwrap();
            assert_eq!(
                json,
                std::fs::read_to_string(path).unwrap(),
                "dashboards/{file}"
            );
        }

        // The PodMonitor scrapes every role's admin port as job="<role>",
        // the job names the alerts use.
        let monitor =
            find(&objects, "PodMonitor", "faultline-shop").expect("the shop's PodMonitor");
        let job_label = str_of(at(monitor, &["spec", "jobLabel"])).unwrap();
        let endpoints = seq(at(monitor, &["spec", "podMetricsEndpoints"]));
        assert_eq!(endpoints.len(), 1);
        assert_eq!(str_of(endpoints[0].get("path")), Some("/metrics"));
        let port = endpoints[0].get("port").unwrap();
        let deployments = shop_deployments(&objects).unwrap();
        assert_eq!(deployments.len(), ROLES.len());
        for (role, deployment) in &deployments {
            let labels = template_labels(deployment);
            assert!(
                selects(at(monitor, &["spec", "selector", "matchLabels"]), labels),
                "the PodMonitor misses {role}"
            );
            assert_eq!(
                str_of(labels.and_then(|l| l.get(job_label))),
                Some(role.as_str()),
                "{role}'s job"
            );
            assert_eq!(
                port_number(shop_of(deployment).unwrap(), port).unwrap(),
                9000,
                "{role}'s metrics port"
            );
        }
        // Every job the alerts name is scraped: a role by this PodMonitor, or
        // one of the jobs the README says to name so.
        let alert_text: String = rule_files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        let mut jobs = BTreeSet::new();
        for part in alert_text.split("job=").skip(1) {
            let quoted = part.trim_start_matches('~');
            let Some(body) = quoted.strip_prefix('"').and_then(|q| q.split('"').next()) else {
                continue;
            };
            jobs.extend(body.split('|').map(str::to_owned));
        }
        for job in &jobs {
            assert!(
                deployments.contains_key(job) || EXTERNAL_JOBS.contains(&job.as_str()),
                "the alerts read job {job:?}, which nothing here scrapes"
            );
        }
        assert!(
            ROLES.iter().all(|r| jobs.contains(*r)),
            "alerts on every role: {jobs:?}"
        );
    }
}

/// What differs from compose by design, per variable. Every entry must show
/// in the comparison (so the list cannot go stale), and nothing else may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Difference {
    /// Compose sets it; Kubernetes does not.
    OnlyInCompose,
    /// Both set it, to different values.
    Value,
}

/// (roles, or every role when empty; variable; difference; why).
const BY_DESIGN: [(&[&str], &str, Difference, &str); 6] = [
    (
        &[],
        "FAULTLINE_FAULT_ADMIN_ADDR",
        Difference::OnlyInCompose,
        "the fault admin API serves the chaos engine, which drives Docker; on Kubernetes it stays off",
    ),
    (
        &[],
        "FAULTLINE_FAULT_ADMIN_TOKEN",
        Difference::OnlyInCompose,
        "the fault admin API is off",
    ),
    (
        &[],
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        Difference::Value,
        "compose sends traces to its Jaeger, Kubernetes to an OpenTelemetry Collector Service",
    ),
    (
        &[],
        "OTEL_TRACES_EXPORTER",
        Difference::Value,
        "the demo overlay runs no collector, so it exports no traces",
    ),
    (
        &["gateway", "payments"],
        "DATABASE_URL",
        Difference::OnlyInCompose,
        "compose gives its shared x-env to every role; Kubernetes gives the database's credentials only to the roles that use it",
    ),
    (
        &["catalog"],
        "FAULTLINE_DATABASE_READ_URL",
        Difference::OnlyInCompose,
        "the demo runs one PostgreSQL server, no hot standby (catalog then reads from the primary; the production overlay sets it)",
    ),
];

/// Compose's value with the fault proxy taken out: compose routes some links
/// through it (`proxy:18080` for payments), Kubernetes has none and goes
/// straight to the upstream.
fn without_fault_proxy(value: &str, links: &BTreeMap<u16, String>) -> String {
    links.iter().fold(value.to_owned(), |v, (port, upstream)| {
        v.replace(&format!("proxy:{port}"), upstream)
    })
}

#[test]
fn the_demo_runs_each_role_as_compose_does() {
    let root = faultline_tests::repo_root();
    let compose = k8s::compose_roles(&root).unwrap();
    assert_eq!(
        compose.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut roles = ROLES.to_vec();
            roles.sort_unstable();
            roles
        },
        "compose's roles"
    );
    let links = k8s::proxy_links(&root).unwrap();
    let (image_entrypoint, _) = k8s::dockerfile_entrypoint_and_ports(&root).unwrap();
    let admin_rs = std::fs::read_to_string(root.join("app/shop/src/admin.rs")).unwrap();
    let objects = render("demo").unwrap();
    let deployments = shop_deployments(&objects).unwrap();
    let mut differences: BTreeSet<(String, String, &str)> = BTreeSet::new();
    let mut unexpected = Vec::new();

    for (role, from_compose) in &compose {
        let deployment = deployments
            .get(role)
            .unwrap_or_else(|| panic!("no Deployment runs {role}"));
        let container = shop_of(deployment).unwrap();
        let context = format!("{role} (compose: {})", from_compose.services.join(", "));

        // The same image and tag, the same command.
        assert_eq!(
            str_of(container.get("image")),
            Some(from_compose.image.as_str()),
            "{context}: image"
        );
        let command: Vec<String> = match container.get("command") {
            Some(c) => seq(Some(c))
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
            None => image_entrypoint.clone(),
        };
        let argv: Vec<String> = command
            .into_iter()
            .chain(
                seq(container.get("args"))
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned()),
            )
            .collect();
        assert_eq!(argv, from_compose.argv, "{context}: command");

        // As many replicas.
        let replicas = at(deployment, &["spec", "replicas"]).and_then(Value::as_u64);
        assert_eq!(replicas, Some(from_compose.replicas), "{context}: replicas");

        // The same memory limit.
        let limit = str_of(at(container, &["resources", "limits", "memory"]))
            .map(|q| quantity_bytes(q).unwrap());
        assert_eq!(limit, from_compose.memory_limit, "{context}: memory limit");

        // The same environment, but for the differences by design.
        let env = resolved_env(&objects, container).unwrap();
        let compose_env: BTreeMap<String, String> = from_compose
            .env
            .iter()
            .map(|(k, v)| (k.clone(), without_fault_proxy(v, &links)))
            .collect();
        let names: BTreeSet<&String> = env.keys().chain(compose_env.keys()).collect();
        for var in names {
            let found = match (compose_env.get(var), env.get(var)) {
                (Some(a), Some(b)) if a == b => continue,
                (Some(_), Some(_)) => Difference::Value,
                (Some(_), None) => Difference::OnlyInCompose,
                (None, _) => {
                    unexpected.push(format!("{role}: {var} is set on Kubernetes only"));
                    continue;
                }
            };
            let expected = BY_DESIGN.iter().any(|(roles, v, d, _)| {
                v == var && *d == found && (roles.is_empty() || roles.contains(&role.as_str()))
            });
            if expected {
                differences.insert((
                    role.clone(),
                    var.clone(),
                    if found == Difference::Value {
                        "value"
                    } else {
                        "only"
                    },
                ));
            } else {
                unexpected.push(format!(
                    "{role}: {var}: compose {:?}, Kubernetes {:?}",
                    compose_env.get(var),
                    env.get(var)
                ));
            }
        }

        // The same container ports, but the fault admin API's (off here).
        let fault_admin_port: Option<u16> = from_compose
            .env
            .get("FAULTLINE_FAULT_ADMIN_ADDR")
            .map(|a| a.rsplit(':').next().unwrap().parse().unwrap());
        let compose_ports: BTreeSet<u16> = from_compose
            .ports
            .iter()
            .copied()
            .filter(|p| Some(*p) != fault_admin_port)
            .collect();
        assert_eq!(
            container_ports(container).unwrap(),
            compose_ports,
            "{context}: container ports"
        );

        // Readiness is compose's healthcheck; liveness and startup the admin
        // listener's /health/live, on the same port; both routes exist.
        let url = reqwest::Url::parse(&from_compose.health_url).unwrap();
        for (probe, path) in [
            ("readinessProbe", url.path()),
            ("livenessProbe", "/health/live"),
            ("startupProbe", "/health/live"),
        ] {
            let get = at(container, &[probe, "httpGet"])
                .unwrap_or_else(|| panic!("{context}: no {probe}"));
            assert_eq!(str_of(get.get("path")), Some(path), "{context}: {probe}");
            assert_eq!(
                Some(port_number(container, get.get("port").unwrap()).unwrap()),
                url.port(),
                "{context}: {probe} port"
            );
            assert!(
                admin_rs.contains(&format!(".route(\"{path}\"")),
                "the admin listener serves no {path}"
            );
        }
    }

    assert!(
        unexpected.is_empty(),
        "differences from compose not listed in BY_DESIGN:\n{}",
        unexpected.join("\n")
    );
    for (roles, var, difference, why) in BY_DESIGN {
        let kind_ = if difference == Difference::Value {
            "value"
        } else {
            "only"
        };
        for role in compose
            .keys()
            .filter(|r| roles.is_empty() || roles.contains(&r.as_str()))
        {
            assert!(
                differences.contains(&(role.clone(), var.to_owned(), kind_)),
                "BY_DESIGN lists {var} ({difference:?}) for {role}, which no longer differs ({why}): drop it"
            );
        }
    }
}

#[test]
fn the_demo_dependencies_run_compose_images() {
    let root = faultline_tests::repo_root();
    let mut compose: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root.join("compose/docker-compose.yml")).unwrap(),
    )
    .unwrap();
    k8s::resolve_merge_keys(&mut compose).unwrap();
    let objects = render("demo").unwrap();
    for service in ["postgres", "redis", "rabbitmq"] {
        let want = str_of(at(&compose, &["services", service, "image"])).unwrap();
        let workload = objects
            .iter()
            .find(|o| matches!(kind(o), "Deployment" | "StatefulSet") && name(o) == service)
            .unwrap_or_else(|| panic!("the demo runs no {service}"));
        let image = str_of(seq(pod_spec(workload).unwrap().get("containers"))[0].get("image"));
        assert_eq!(image, Some(want), "{service}'s image");
    }
}

#[test]
fn objects_refer_to_each_other() {
    for overlay in OVERLAYS {
        let objects = render(overlay).unwrap();
        let workloads: Vec<&Value> = objects
            .iter()
            .filter(|o| matches!(kind(o), "Deployment" | "StatefulSet"))
            .collect();
        let deployments = shop_deployments(&objects).unwrap();

        // Every workload's selector selects its own pods.
        for w in &workloads {
            assert!(
                selects(
                    at(w, &["spec", "selector", "matchLabels"]),
                    template_labels(w)
                ),
                "{overlay}: {} selects none of its pods",
                name(w)
            );
        }

        // Every Service (but an ExternalName) selects pods that have its
        // target ports.
        for service in objects.iter().filter(|o| kind(o) == "Service") {
            if str_of(at(service, &["spec", "type"])) == Some("ExternalName") {
                continue;
            }
            let selected: Vec<&&Value> = workloads
                .iter()
                .filter(|w| selects(at(service, &["spec", "selector"]), template_labels(w)))
                .collect();
            assert_eq!(
                selected.len(),
                1,
                "{overlay}: Service {} selects {} workloads",
                name(service),
                selected.len()
            );
            let container = &seq(pod_spec(selected[0]).unwrap().get("containers"))[0];
            for port in seq(at(service, &["spec", "ports"])) {
                port_number(container, port.get("targetPort").unwrap()).unwrap();
            }
        }

        // Every PodDisruptionBudget and HorizontalPodAutoscaler finds its
        // Deployment; an autoscaler's floor is the Deployment's replicas
        // (when it says) and what the shop is told to expect.
        for pdb in objects.iter().filter(|o| kind(o) == "PodDisruptionBudget") {
            let selected = workloads
                .iter()
                .filter(|w| {
                    selects(
                        at(pdb, &["spec", "selector", "matchLabels"]),
                        template_labels(w),
                    )
                })
                .count();
            assert_eq!(selected, 1, "{overlay}: PodDisruptionBudget {}", name(pdb));
        }
        let mut autoscaled = BTreeSet::new();
        for hpa in objects
            .iter()
            .filter(|o| kind(o) == "HorizontalPodAutoscaler")
        {
            let target = str_of(at(hpa, &["spec", "scaleTargetRef", "name"])).unwrap();
            let deployment = find(&objects, "Deployment", target)
                .unwrap_or_else(|| panic!("{overlay}: no {target}"));
            let min = at(hpa, &["spec", "minReplicas"])
                .and_then(Value::as_u64)
                .unwrap();
            assert!(
                at(hpa, &["spec", "maxReplicas"])
                    .and_then(Value::as_u64)
                    .unwrap()
                    > min
            );
            if let Some(replicas) = at(deployment, &["spec", "replicas"]).and_then(Value::as_u64) {
                assert_eq!(
                    replicas, min,
                    "{overlay}: {target}'s replicas and its autoscaler's floor"
                );
            }
            autoscaled.insert(target.to_owned());
        }
        if overlay == "production" {
            for target in &autoscaled {
                let deployment = find(&objects, "Deployment", target).unwrap();
                assert!(
                    at(deployment, &["spec", "replicas"]).is_none(),
                    "{target} is autoscaled: no replicas"
                );
            }
        }
        for (role, deployment) in &deployments {
            let desired = match find(&objects, "HorizontalPodAutoscaler", role) {
                Some(hpa) => at(hpa, &["spec", "minReplicas"])
                    .and_then(Value::as_u64)
                    .unwrap(),
                None => at(deployment, &["spec", "replicas"])
                    .and_then(Value::as_u64)
                    .unwrap(),
            };
            let var = format!("FAULTLINE_{}_REPLICAS", role.to_uppercase());
            for (other, d) in &deployments {
                let env = resolved_env(&objects, shop_of(d).unwrap()).unwrap();
                if let Some(told) = env.get(&var) {
                    assert_eq!(told, &desired.to_string(), "{overlay}: {other}'s {var}");
                }
            }
        }

        // Every ConfigMap and Secret a pod uses is rendered, or documented
        // as created by whoever deploys.
        for w in &workloads {
            let spec = pod_spec(w).unwrap();
            let mut configs: Vec<&str> = seq(spec.get("volumes"))
                .iter()
                .filter_map(|v| str_of(at(v, &["configMap", "name"])))
                .collect();
            let mut secrets = Vec::new();
            for c in seq(spec.get("containers")) {
                configs.extend(
                    seq(c.get("envFrom"))
                        .iter()
                        .filter_map(|f| str_of(at(f, &["configMapRef", "name"]))),
                );
                secrets.extend(
                    seq(c.get("env"))
                        .iter()
                        .filter_map(|e| str_of(at(e, &["valueFrom", "secretKeyRef", "name"]))),
                );
            }
            for config in configs {
                assert!(
                    find(&objects, "ConfigMap", config).is_some()
                        || EXTERNAL_CONFIG.contains(&(overlay, config)),
                    "{overlay}: {} mounts a ConfigMap {config} nobody makes",
                    name(w)
                );
            }
            for secret in secrets {
                assert!(
                    find(&objects, "Secret", secret).is_some()
                        || EXTERNAL_SECRETS.contains(&(overlay, secret)),
                    "{overlay}: {} reads a Secret {secret} nobody makes",
                    name(w)
                );
            }
        }

        // Every upstream the shop is given is a Service of this render on
        // that port; the replicas of the *_URLS behind a headless one, so
        // that its name resolves to every ready pod.
        for (role, deployment) in &deployments {
            let env = resolved_env(&objects, shop_of(deployment).unwrap()).unwrap();
            for (var, value) in &env {
                if value.starts_with('<') {
                    continue;
                }
                for url in value.split(',').filter_map(|u| reqwest::Url::parse(u).ok()) {
                    let Some(host) = url.host_str().filter(|_| url.scheme() != "file") else {
                        continue;
                    };
                    let Some(service) = find(&objects, "Service", host) else {
                        if var == "OTEL_EXPORTER_OTLP_ENDPOINT" {
                            continue; // a collector of the cluster's, outside this render
                        }
                        panic!("{overlay}: {role}'s {var} names {host}, which is no Service here");
                    };
                    let external = str_of(at(service, &["spec", "type"])) == Some("ExternalName");
                    let port = url.port_or_known_default().unwrap();
                    assert!(
                        external
                            || seq(at(service, &["spec", "ports"]))
                                .iter()
                                .any(|p| p.get("port").and_then(Value::as_u64)
                                    == Some(u64::from(port))),
                        "{overlay}: {role}'s {var}: Service {host} has no port {port}"
                    );
                    if var.ends_with("_URLS") {
                        assert_eq!(
                            str_of(at(service, &["spec", "clusterIP"])),
                            Some("None"),
                            "{overlay}: {var}'s Service {host} must be headless"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn shutdown_drains_within_the_grace_period() {
    for overlay in OVERLAYS {
        let objects = render(overlay).unwrap();
        for (role, deployment) in shop_deployments(&objects).unwrap() {
            let container = shop_of(deployment).unwrap();
            let env = resolved_env(&objects, container).unwrap();
            let pre_stop = at(container, &["lifecycle", "preStop", "sleep", "seconds"])
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
                .unwrap_or_else(|| panic!("{overlay}: {role} has no preStop sleep"));
            let drain = duration(&env, "FAULTLINE_DRAIN_DELAY", "0s").unwrap();
            let shutdown_grace = duration(&env, "FAULTLINE_SHUTDOWN_GRACE", "10s").unwrap();
            let dns_refresh = duration(&env, "FAULTLINE_DNS_REFRESH", "5s").unwrap();
            let grace = at(
                pod_spec(deployment).unwrap(),
                &["terminationGracePeriodSeconds"],
            )
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(30));
            // The pod keeps serving until every peer has stopped resolving it.
            assert!(
                pre_stop + drain >= dns_refresh + DNS_TTL,
                "{overlay}: {role} stops serving {pre_stop:?} + {drain:?} after it leaves the endpoints; peers may resolve it for {dns_refresh:?} + {DNS_TTL:?}"
            );
            // And is not killed while it drains.
            assert!(
                grace > pre_stop + drain + shutdown_grace,
                "{overlay}: {role}'s terminationGracePeriodSeconds {grace:?} <= preStop {pre_stop:?} + drain {drain:?} + shutdown grace {shutdown_grace:?}"
            );
        }
    }
}

#[test]
fn pods_are_locked_down() {
    for overlay in OVERLAYS {
        let objects = render(overlay).unwrap();
        let shop: BTreeSet<&str> = shop_deployments(&objects)
            .unwrap()
            .values()
            .map(|d| name(d))
            .collect();
        for w in objects
            .iter()
            .filter(|o| matches!(kind(o), "Deployment" | "StatefulSet"))
        {
            let spec = pod_spec(w).unwrap();
            let context = format!("{overlay}: {}", name(w));
            assert_eq!(
                at(spec, &["securityContext", "runAsNonRoot"]),
                Some(&Value::Bool(true)),
                "{context}"
            );
            assert_eq!(
                str_of(at(spec, &["securityContext", "seccompProfile", "type"])),
                Some("RuntimeDefault"),
                "{context}"
            );
            assert_eq!(
                spec.get("automountServiceAccountToken"),
                Some(&Value::Bool(false)),
                "{context}"
            );
            for c in seq(spec.get("containers")) {
                let security = c
                    .get("securityContext")
                    .unwrap_or_else(|| panic!("{context}: no securityContext"));
                assert_eq!(
                    security.get("allowPrivilegeEscalation"),
                    Some(&Value::Bool(false)),
                    "{context}"
                );
                assert_eq!(
                    seq(at(security, &["capabilities", "drop"])),
                    [Value::from("ALL")],
                    "{context}"
                );
                // RabbitMQ's official image writes its config at start.
                if name(w) != "rabbitmq" {
                    assert_eq!(
                        security.get("readOnlyRootFilesystem"),
                        Some(&Value::Bool(true)),
                        "{context}"
                    );
                }
                for bound in ["requests", "limits"] {
                    assert!(
                        at(c, &["resources", bound, "memory"]).is_some(),
                        "{context}: memory {bound}"
                    );
                }
                if shop.contains(name(w)) {
                    assert!(
                        at(c, &["resources", "requests", "cpu"]).is_some(),
                        "{context}: cpu request"
                    );
                }
            }
        }
    }
}
