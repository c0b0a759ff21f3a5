//! Renders a kustomization the way `kubectl apply -k` does, for the subset
//! of Kustomize that `deploy/kubernetes/` uses, so the tests can check the
//! objects an overlay really produces on a machine without `kustomize`.
//!
//! Supported: `resources` (files and directories with their own
//! kustomization), `namespace`, `images` (`newName`, `newTag`, `digest`) and
//! `patches` given by `path` (strategic merge patches, one or more documents,
//! each aimed at the object of its kind and name). A strategic merge here
//! merges maps key by key (`null` deletes the key), merges lists whose items
//! all have a `name` by that name (containers, env, volumes; new items
//! first, as Kustomize orders them), and replaces
//! every other list: what Kubernetes' strategic merge does for the fields the
//! patches touch. Any other field of a kustomization is an error, so a
//! kustomization cannot use a feature this renderer would silently ignore.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

/// The fields of a `kustomization.yaml` this renderer understands.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    images: Vec<Image>,
    #[serde(default)]
    patches: Vec<Patch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Image {
    name: String,
    #[serde(default)]
    new_name: Option<String>,
    #[serde(default)]
    new_tag: Option<String>,
    #[serde(default)]
    digest: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    path: String,
}

/// The objects the kustomization in `dir` renders, in order.
pub fn render(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let file = dir.join("kustomization.yaml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let k: Kustomization = serde_yaml_ng::from_str(&text).with_context(|| {
        format!(
            "{}: not a kustomization this renderer supports",
            file.display()
        )
    })?;
    ensure!(
        k.api_version == "kustomize.config.k8s.io/v1beta1" && k.kind == "Kustomization",
        "{}: apiVersion/kind {}/{}",
        file.display(),
        k.api_version,
        k.kind
    );
    let mut objects = Vec::new();
    for resource in &k.resources {
        let path = dir.join(resource);
        if path.is_dir() {
            objects.extend(render(&path)?);
        } else {
            objects.extend(read_documents(&path)?);
        }
    }
    let mut seen = BTreeSet::new();
    for object in &objects {
        let id = (kind(object).to_owned(), name(object).to_owned());
        ensure!(
            seen.insert(id.clone()),
            "{}: {} {} appears twice",
            dir.display(),
            id.0,
            id.1
        );
    }
    for patch in &k.patches {
        let path = dir.join(&patch.path);
        for doc in read_documents(&path)? {
            let (patch_kind, patch_name) = (kind(&doc), name(&doc));
            let mut targets = objects
                .iter_mut()
                .filter(|o| kind(o) == patch_kind && name(o) == patch_name);
            let Some(target) = targets.next() else {
                bail!("{}: no {patch_kind} {patch_name} to patch", path.display());
            };
            strategic_merge(target, &doc);
        }
    }
    if let Some(namespace) = &k.namespace {
        for object in &mut objects {
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_mapping_mut) {
                metadata.insert("namespace".into(), namespace.as_str().into());
            }
        }
    }
    for image in &k.images {
        for object in &mut objects {
            set_images(object, image);
        }
    }
    Ok(objects)
}

/// The documents of a YAML file, empty ones left out.
pub fn read_documents(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_documents(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The documents of a YAML stream, empty ones left out.
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// An object's kind ("" when it has none).
pub fn kind(object: &Value) -> &str {
    object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// An object's name ("" when it has none).
pub fn name(object: &Value) -> &str {
    object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Kubernetes' strategic merge, for the fields described in the module doc.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Mapping(target), Value::Mapping(patch)) => merge_maps(target, patch),
        (Value::Sequence(target), Value::Sequence(patch))
            if keyed_by_name(target) && keyed_by_name(patch) =>
        {
            // New items go first, in the patch's order, as Kustomize puts them.
            let mut added = Vec::new();
            for item in patch {
                let key = item.get("name");
                match target.iter_mut().find(|t| t.get("name") == key) {
                    Some(existing) => strategic_merge(existing, item),
                    None => added.push(item.clone()),
                }
            }
            target.splice(0..0, added);
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn merge_maps(target: &mut Mapping, patch: &Mapping) {
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else if let Some(existing) = target.get_mut(key) {
            strategic_merge(existing, value);
        } else {
            target.insert(key.clone(), value.clone());
        }
    }
}

fn keyed_by_name(items: &[Value]) -> bool {
    items
        .iter()
        .all(|i| i.get("name").is_some_and(Value::is_string))
}

/// The pod spec of a workload (Deployment, StatefulSet...) or of a Pod.
pub fn pod_spec(object: &Value) -> Option<&Value> {
    match kind(object) {
        "Pod" => object.get("spec"),
        _ => object.get("spec")?.get("template")?.get("spec"),
    }
}

fn pod_spec_mut(object: &mut Value) -> Option<&mut Value> {
    if kind(object) == "Pod" {
        return object.get_mut("spec");
    }
    object.get_mut("spec")?.get_mut("template")?.get_mut("spec")
}

/// Splits an image reference into its name and what follows (":tag",
/// "@sha256:...", or "").
pub fn split_image(image: &str) -> (&str, &str) {
    if let Some(at) = image.find('@') {
        return (&image[..at], &image[at..]);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].find(':') {
        Some(colon) => (&image[..last_slash + colon], &image[last_slash + colon..]),
        None => (image, ""),
    }
}

fn set_images(object: &mut Value, image: &Image) {
    let Some(spec) = pod_spec_mut(object) else {
        return;
    };
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_sequence_mut) else {
            continue;
        };
        for container in containers {
            let Some(current) = container.get("image").and_then(Value::as_str) else {
                continue;
            };
            let (current_name, current_suffix) = split_image(current);
            if current_name != image.name {
                continue;
            }
            let new_name = image.new_name.as_deref().unwrap_or(current_name);
            let suffix = match (&image.digest, &image.new_tag) {
                (Some(digest), _) => format!("@{digest}"),
                (None, Some(tag)) => format!(":{tag}"),
                (None, None) => current_suffix.to_owned(),
            };
            let replaced = format!("{new_name}{suffix}");
            if let Some(c) = container.as_mapping_mut() {
                c.insert("image".into(), replaced.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_merge_merges_maps_and_named_lists_and_deletes_nulls() {
        let mut target: Value = serde_yaml_ng::from_str(
            "spec: {replicas: 2, template: {spec: {containers: [{name: a, image: x, env: [{name: A, value: '1'}]}]}}}",
        )
        .unwrap();
        let patch: Value = serde_yaml_ng::from_str(
            "spec: {replicas: null, template: {spec: {containers: [{name: a, env: [{name: B, value: '2'}], args: [z]}]}}}",
        )
        .unwrap();
        strategic_merge(&mut target, &patch);
        let want: Value = serde_yaml_ng::from_str(
            "spec: {template: {spec: {containers: [{name: a, image: x, env: [{name: B, value: '2'}, {name: A, value: '1'}], args: [z]}]}}}",
        )
        .unwrap();
        assert_eq!(target, want);
    }

    #[test]
    fn images_split_at_the_tag_not_at_a_registry_port() {
        assert_eq!(
            split_image("faultline/faultline:dev"),
            ("faultline/faultline", ":dev")
        );
        assert_eq!(
            split_image("registry:5000/faultline"),
            ("registry:5000/faultline", "")
        );
        assert_eq!(split_image("a/b@sha256:00"), ("a/b", "@sha256:00"));
    }
}
