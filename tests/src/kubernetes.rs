//! The Kubernetes manifests of `deploy/kubernetes/`: the files generated from
//! the repository's single sources (alerts, dashboards, RabbitMQ's config),
//! a renderer of their kustomizations ([`kustomize`]), and compose's view of
//! the shop ([`compose_roles`]) for the test that keeps the two in step
//! (`tests/tests/deploy/kubernetes.rs`).

pub mod kustomize;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde_yaml_ng::{Mapping, Value};

/// The shop's roles, each `faultline-shop <role>`.
pub const ROLES: [&str; 5] = ["gateway", "catalog", "orders", "payments", "worker"];

/// The command that rewrites the generated files.
pub const REGENERATE_COMMAND: &str = "FAULTLINE_REGENERATE=1 cargo nextest run -p faultline-tests --test deploy -E 'test(generated)'";

/// `deploy/kubernetes/` under `root`.
pub fn manifests_dir(root: &Path) -> PathBuf {
    root.join("deploy").join("kubernetes")
}

/// A file the generator writes: its path from the repository root and its
/// contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub contents: String,
}

/// Every generated file, as the sources under `root` say now. Deterministic:
/// sources in name order, keys in a fixed order.
pub fn generated_files(root: &Path) -> anyhow::Result<Vec<GeneratedFile>> {
    Ok(vec![
        GeneratedFile {
            path: PathBuf::from("deploy/kubernetes/base/monitoring/prometheus-rules.yaml"),
            contents: prometheus_rules(root)?,
        },
        GeneratedFile {
            path: PathBuf::from("deploy/kubernetes/base/monitoring/grafana-dashboards.yaml"),
            contents: grafana_dashboards(root)?,
        },
        GeneratedFile {
            path: PathBuf::from("deploy/kubernetes/overlays/demo/rabbitmq-config.yaml"),
            contents: rabbitmq_config(root)?,
        },
    ])
}

fn header(sources: &str, what: &str) -> String {
    format!(
        "# GENERATED from {sources} by tests/src/kubernetes.rs: {what}.\n\
         # Do not edit; regenerate with\n\
         #   {REGENERATE_COMMAND}\n"
    )
}

/// The files of `dir` whose names end with `suffix`, in name order.
pub fn files_ending(dir: &Path, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix))
        {
            files.push(path);
        }
    }
    files.sort();
    ensure!(!files.is_empty(), "no *{suffix} in {}", dir.display());
    Ok(files)
}

fn file_name(path: &Path) -> anyhow::Result<&str> {
    path.file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no UTF-8 file name", path.display()))
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    let mut map = Mapping::new();
    for (k, v) in pairs {
        map.insert((*k).into(), (*v).into());
    }
    Value::Mapping(map)
}

fn object(api_version: &str, kind: &str, metadata: Mapping, body: (&str, Value)) -> Value {
    let mut map = Mapping::new();
    map.insert("apiVersion".into(), api_version.into());
    map.insert("kind".into(), kind.into());
    map.insert("metadata".into(), Value::Mapping(metadata));
    map.insert(body.0.into(), body.1);
    Value::Mapping(map)
}

fn metadata(name: &str, labels: Value) -> Mapping {
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    m.insert("labels".into(), labels);
    m
}

fn documents(header: String, docs: &[(String, Value)]) -> anyhow::Result<String> {
    let mut out = header;
    for (comment, doc) in docs {
        out.push_str("---\n");
        out.push_str(comment);
        out.push_str(&serde_yaml_ng::to_string(doc)?);
    }
    Ok(out)
}

/// The name of the PrometheusRule made from `alerts/<area>.rules.yml`.
pub fn prometheus_rule_name(rule_file: &str) -> String {
    format!("faultline-{}", rule_file.trim_end_matches(".rules.yml"))
}

/// One PrometheusRule per rule file of `alerts/` (the real time scales, never
/// `alerts/compressed/`), its `spec.groups` the file's `groups` as they are.
pub fn prometheus_rules(root: &Path) -> anyhow::Result<String> {
    let mut docs = Vec::new();
    for path in files_ending(&root.join("alerts"), ".rules.yml")? {
        let file = file_name(&path)?;
        let text = std::fs::read_to_string(&path)?;
        // A rule file Prometheus would load: the typed form refuses anything else.
        crate::rules::RuleFile::parse(&text).with_context(|| format!("alerts/{file}"))?;
        let rules: Value = serde_yaml_ng::from_str(&text)?;
        let groups = rules
            .get("groups")
            .cloned()
            .with_context(|| format!("alerts/{file} has no groups"))?;
        let mut spec = Mapping::new();
        spec.insert("groups".into(), groups);
        let meta = metadata(
            &prometheus_rule_name(file),
            labels(&[
                ("app.kubernetes.io/name", "faultline-shop"),
                ("app.kubernetes.io/part-of", "faultline"),
            ]),
        );
        docs.push((
            format!("# alerts/{file}\n"),
            object(
                "monitoring.coreos.com/v1",
                "PrometheusRule",
                meta,
                ("spec", Value::Mapping(spec)),
            ),
        ));
    }
    documents(
        header(
            "alerts/*.rules.yml",
            "one PrometheusRule per rule file, at real time scales",
        ),
        &docs,
    )
}

/// The name of the ConfigMap made from `dashboards/<name>.json`.
pub fn dashboard_config_map_name(dashboard_file: &str) -> String {
    format!(
        "faultline-dashboard-{}",
        dashboard_file.trim_end_matches(".json")
    )
}

/// One ConfigMap per dashboard, labelled for Grafana's dashboard sidecar.
pub fn grafana_dashboards(root: &Path) -> anyhow::Result<String> {
    let mut docs = Vec::new();
    for path in files_ending(&root.join("dashboards"), ".json")? {
        let file = file_name(&path)?;
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str::<serde_json::Value>(&text)
            .with_context(|| format!("dashboards/{file} is not JSON"))?;
        let mut meta = metadata(
            &dashboard_config_map_name(file),
            labels(&[
                ("app.kubernetes.io/name", "faultline-shop"),
                ("app.kubernetes.io/part-of", "faultline"),
                ("grafana_dashboard", "1"),
            ]),
        );
        meta.insert(
            "annotations".into(),
            labels(&[("grafana_folder", "faultline")]),
        );
        let mut data = Mapping::new();
        data.insert(file.into(), text.into());
        docs.push((
            format!("# dashboards/{file}\n"),
            object("v1", "ConfigMap", meta, ("data", Value::Mapping(data))),
        ));
    }
    documents(
        header(
            "dashboards/*.json",
            "one ConfigMap per dashboard for Grafana's sidecar (label grafana_dashboard, folder annotation grafana_folder)",
        ),
        &docs,
    )
}

/// RabbitMQ's configuration for the demo, the files compose mounts.
pub fn rabbitmq_config(root: &Path) -> anyhow::Result<String> {
    let dir = root.join("compose").join("images").join("rabbitmq");
    let mut data = Mapping::new();
    for file in ["enabled_plugins", "rabbitmq.conf"] {
        let text = std::fs::read_to_string(dir.join(file))
            .with_context(|| format!("reading compose/images/rabbitmq/{file}"))?;
        data.insert(file.into(), text.into());
    }
    let meta = metadata(
        "rabbitmq-config",
        labels(&[
            ("app.kubernetes.io/name", "rabbitmq"),
            ("app.kubernetes.io/part-of", "faultline"),
        ]),
    );
    documents(
        header(
            "compose/images/rabbitmq/{enabled_plugins,rabbitmq.conf}",
            "the broker's configuration, as compose mounts it",
        ),
        &[(
            String::new(),
            object("v1", "ConfigMap", meta, ("data", Value::Mapping(data))),
        )],
    )
}

/// Resolves YAML merge keys (`<<: *anchor`, `<<: [*a, *b]`) at every depth,
/// merges of merges included: a key of the mapping itself wins over a merged
/// one, an earlier merged mapping over a later one.
pub fn resolve_merge_keys(value: &mut Value) -> anyhow::Result<()> {
    match value {
        Value::Mapping(map) => {
            for (_, v) in map.iter_mut() {
                resolve_merge_keys(v)?;
            }
            if let Some(merge) = map.remove("<<") {
                let sources = match merge {
                    Value::Mapping(m) => vec![m],
                    Value::Sequence(items) => items
                        .into_iter()
                        .map(|i| match i {
                            Value::Mapping(m) => Ok(m),
                            other => bail!("a merge key lists a non-mapping: {other:?}"),
                        })
                        .collect::<anyhow::Result<_>>()?,
                    other => bail!("a merge key's value is not a mapping: {other:?}"),
                };
                for source in sources {
                    for (k, v) in source {
                        map.entry(k).or_insert(v);
                    }
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                resolve_merge_keys(item)?;
            }
        }
        Value::Tagged(tagged) => resolve_merge_keys(&mut tagged.value)?,
        _ => {}
    }
    Ok(())
}

/// Compose's variable interpolation with every variable unset: `${X:-d}` and
/// `${X-d}` become `d`; `$$` is a `$`. A variable without a default is an
/// error (the demo gives every one a default).
pub fn interpolate_defaults(text: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(body) = rest.strip_prefix('{') {
            let end = body
                .find('}')
                .with_context(|| format!("unclosed ${{ in {text:?}"))?;
            let expr = &body[..end];
            let default = expr
                .split_once(":-")
                .or_else(|| expr.split_once('-'))
                .map(|(_, d)| d)
                .with_context(|| format!("${{{expr}}} in {text:?} has no default"))?;
            out.push_str(default);
            rest = &body[end + 1..];
        } else {
            bail!("a bare $ in {text:?}");
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A scalar as compose reads it: strings, numbers and booleans as text.
pub fn scalar_text(value: &Value) -> anyhow::Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => bail!("not a scalar: {other:?}"),
    }
}

fn string_list(value: Option<&Value>) -> anyhow::Result<Option<Vec<String>>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.split_whitespace().map(str::to_owned).collect())),
        Some(Value::Sequence(items)) => Ok(Some(
            items
                .iter()
                .map(scalar_text)
                .collect::<anyhow::Result<_>>()?,
        )),
        Some(other) => bail!("not a command: {other:?}"),
    }
}

/// What compose says about one role of the shop, over all of its services
/// (`orders-1`, `orders-2`... or one scaled `orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeRole {
    pub role: String,
    /// The services that run it.
    pub services: Vec<String>,
    /// The image, its variables at their defaults.
    pub image: String,
    /// Entrypoint and command, as the container runs them.
    pub argv: Vec<String>,
    /// The environment, variables at their defaults; the same in every
    /// service of the role.
    pub env: BTreeMap<String, String>,
    /// The container ports: the image's EXPOSE and the targets of `ports:`.
    pub ports: BTreeSet<u16>,
    /// The URL of the healthcheck's `faultline-shop probe`.
    pub health_url: String,
    /// How many containers run it (`deploy.replicas` or `scale`, else 1, per
    /// service).
    pub replicas: u64,
    /// `mem_limit`, in bytes.
    pub memory_limit: Option<u64>,
}

/// The image's ENTRYPOINT and EXPOSEd ports, from `compose/Dockerfile`'s
/// last stage.
pub fn dockerfile_entrypoint_and_ports(
    root: &Path,
) -> anyhow::Result<(Vec<String>, BTreeSet<u16>)> {
    let text = std::fs::read_to_string(root.join("compose/Dockerfile"))?;
    let last_stage = text.rsplit("\nFROM ").next().unwrap_or(&text);
    let mut entrypoint = None;
    let mut ports = BTreeSet::new();
    for line in last_stage.lines() {
        if let Some(json) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = Some(
                serde_json::from_str::<Vec<String>>(json)
                    .context("ENTRYPOINT is not a JSON array")?,
            );
        } else if let Some(list) = line.strip_prefix("EXPOSE ") {
            for port in list.split_whitespace() {
                ports.insert(port.trim_end_matches("/tcp").parse()?);
            }
        }
    }
    Ok((
        entrypoint.context("compose/Dockerfile has no ENTRYPOINT")?,
        ports,
    ))
}

/// The fault proxy's links, listen port to upstream (`18080` → `payments:8080`).
pub fn proxy_links(root: &Path) -> anyhow::Result<BTreeMap<u16, String>> {
    #[derive(serde::Deserialize)]
    struct Link {
        listen: String,
        upstream: String,
    }
    let links: Vec<Link> = serde_json::from_str(&std::fs::read_to_string(
        root.join("compose/proxy/proxies.json"),
    )?)?;
    links
        .into_iter()
        .map(|l| {
            let port = l.listen.rsplit(':').next().unwrap_or_default().parse()?;
            Ok((port, l.upstream))
        })
        .collect()
}

/// compose's `mem_limit` in bytes (`128m`, `1g`, `512k`, or bytes).
pub fn compose_bytes(text: &str) -> anyhow::Result<u64> {
    let lower = text.to_ascii_lowercase();
    let (number, unit) = lower.split_at(
        lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("mem_limit {text:?}"))?;
    let factor = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => bail!("mem_limit {text:?}: unknown unit"),
    };
    Ok(n * factor)
}

/// Every role of the shop in `compose/docker-compose.yml`, by its command:
/// the services on faultline's image whose command is a role.
pub fn compose_roles(root: &Path) -> anyhow::Result<BTreeMap<String, ComposeRole>> {
    let text = std::fs::read_to_string(root.join("compose/docker-compose.yml"))?;
    let mut compose: Value = serde_yaml_ng::from_str(&text)?;
    resolve_merge_keys(&mut compose)?;
    let (image_entrypoint, exposed) = dockerfile_entrypoint_and_ports(root)?;
    let services = compose
        .get("services")
        .and_then(Value::as_mapping)
        .context("compose has no services")?;
    let mut roles: BTreeMap<String, ComposeRole> = BTreeMap::new();
    for (service_name, service) in services {
        let service_name = scalar_text(service_name)?;
        let Some(image) = service.get("image").map(scalar_text).transpose()? else {
            continue;
        };
        let image = interpolate_defaults(&image)?;
        if kustomize::split_image(&image).0 != "faultline/faultline" {
            continue;
        }
        let Some(command) = string_list(service.get("command"))? else {
            continue;
        };
        let Some(role) = command
            .first()
            .filter(|c| ROLES.contains(&c.as_str()))
            .cloned()
        else {
            continue;
        };
        let entrypoint =
            string_list(service.get("entrypoint"))?.unwrap_or_else(|| image_entrypoint.clone());
        let argv = entrypoint.into_iter().chain(command).collect();
        let mut env = BTreeMap::new();
        match service.get("environment") {
            Some(Value::Mapping(map)) => {
                for (k, v) in map {
                    let value = if v.is_null() {
                        String::new()
                    } else {
                        scalar_text(v)?
                    };
                    env.insert(scalar_text(k)?, interpolate_defaults(&value)?);
                }
            }
            Some(Value::Sequence(items)) => {
                for item in items {
                    let item = scalar_text(item)?;
                    let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                    env.insert(k.to_owned(), interpolate_defaults(v)?);
                }
            }
            _ => {}
        }
        let mut ports = exposed.clone();
        if let Some(Value::Sequence(items)) = service.get("ports") {
            for item in items {
                let spec = interpolate_defaults(&scalar_text(item)?)?;
                let target = spec
                    .rsplit(':')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches("/tcp");
                ports.insert(
                    target
                        .parse()
                        .with_context(|| format!("{service_name}: port {spec:?}"))?,
                );
            }
        }
        let test = string_list(service.get("healthcheck").and_then(|h| h.get("test")))?
            .with_context(|| format!("{service_name} has no healthcheck"))?;
        let health_url = test
            .iter()
            .find(|a| a.starts_with("http://"))
            .cloned()
            .with_context(|| format!("{service_name}'s healthcheck names no URL: {test:?}"))?;
        let replicas = match (
            service.get("deploy").and_then(|d| d.get("replicas")),
            service.get("scale"),
        ) {
            (Some(n), _) | (None, Some(n)) => scalar_text(n)?.parse()?,
            (None, None) => 1,
        };
        let memory_limit = service
            .get("mem_limit")
            .or_else(|| {
                service
                    .get("deploy")
                    .and_then(|d| d.get("resources"))
                    .and_then(|r| r.get("limits"))
                    .and_then(|l| l.get("memory"))
            })
            .map(|m| scalar_text(m).and_then(|t| compose_bytes(&t)))
            .transpose()?;
        let this = ComposeRole {
            role: role.clone(),
            services: vec![service_name.clone()],
            image,
            argv,
            env,
            ports,
            health_url,
            replicas,
            memory_limit,
        };
        match roles.get_mut(&role) {
            None => {
                roles.insert(role, this);
            }
            Some(first) => {
                ensure!(
                    first.image == this.image
                        && first.argv == this.argv
                        && first.env == this.env
                        && first.health_url == this.health_url
                        && first.memory_limit == this.memory_limit,
                    "compose's {} and {service_name} run {role} differently",
                    first.services.join(", ")
                );
                first.services.push(service_name);
                first.ports.extend(this.ports);
                first.replicas += this.replicas;
            }
        }
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keys_resolve_through_merges_of_merges() {
        let mut v: Value = serde_yaml_ng::from_str(
            "base: &base {a: 1, b: 1}\nmid: &mid {<<: *base, b: 2, c: 2}\nleaf: {<<: *mid, c: 3}\n",
        )
        .unwrap();
        resolve_merge_keys(&mut v).unwrap();
        let want: Value = serde_yaml_ng::from_str("{a: 1, b: 2, c: 3}").unwrap();
        assert_eq!(v.get("leaf"), Some(&want));
    }

    #[test]
    fn interpolation_takes_the_defaults() {
        assert_eq!(
            interpolate_defaults("${FAULTLINE_IMAGE:-faultline/faultline:dev}").unwrap(),
            "faultline/faultline:dev"
        );
        assert_eq!(
            interpolate_defaults("127.0.0.1:${P-9101}:9100").unwrap(),
            "127.0.0.1:9101:9100"
        );
        assert!(interpolate_defaults("${NO_DEFAULT}").is_err());
    }
}
