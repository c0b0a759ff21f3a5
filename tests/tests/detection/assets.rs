//! The files under test: rule files, their unit tests, dashboards and
//! runbooks, read from the repository, and the queries inside them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use faultline_tests::rules::{Rule, RuleFile};
use serde_json::Value;

/// Where every alert's runbook_url points: `<base><AlertName>.md`.
pub const RUNBOOK_URL_BASE: &str = "https://github.com/faultline/faultline/blob/main/runbooks/";

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// A text file of the repository.
#[derive(Debug, Clone)]
pub struct TextFile {
    /// The file name, like `slo.rules.yml`.
    pub name: String,
    /// The path from the repository root, like `alerts/slo.rules.yml`.
    pub repo_path: String,
    pub text: String,
}

/// The files directly in `dir` (relative to the root) whose name ends with
/// `suffix`, sorted by name.
pub fn files_in(dir: &str, suffix: &str) -> Result<Vec<TextFile>> {
    let path = repo_root().join(dir);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&path).with_context(|| format!("read {}", path.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() || !name.ends_with(suffix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("read {}", entry.path().display()))?;
        files.push(TextFile {
            repo_path: format!("{dir}/{name}"),
            name,
            text,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    if files.is_empty() {
        bail!("no *{suffix} file in {}", path.display());
    }
    Ok(files)
}

/// A parsed rule file.
#[derive(Debug, Clone)]
pub struct Rules {
    pub file: TextFile,
    pub rules: RuleFile,
}

/// The rule files in `dir` (`alerts` or `alerts/compressed`), parsed.
pub fn rule_files(dir: &str) -> Result<Vec<Rules>> {
    files_in(dir, ".rules.yml")?
        .into_iter()
        .map(|file| {
            let rules = RuleFile::parse(&file.text).with_context(|| file.repo_path.clone())?;
            Ok(Rules { file, rules })
        })
        .collect()
}

/// Every alerting rule of the source rule files, with the file it is in.
pub fn alerts(files: &[Rules]) -> Vec<(&str, &Rule)> {
    files
        .iter()
        .flat_map(|f| {
            f.rules
                .alerts()
                .map(|rule| (f.file.repo_path.as_str(), rule))
        })
        .collect()
}

/// Every series name the recording rules record.
pub fn recorded_names(files: &[Rules]) -> BTreeSet<String> {
    files
        .iter()
        .flat_map(|f| f.rules.recorded_names())
        .collect()
}

/// Where a query comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A panel's target.
    Panel,
    /// An annotation query.
    Annotation,
    /// A template variable's query (`label_values(...)`).
    Variable,
}

/// A PromQL query in a dashboard.
#[derive(Debug, Clone)]
pub struct DashboardQuery {
    pub dashboard: String,
    /// The panel's title, the annotation's or the variable's name.
    pub source: String,
    pub kind: QueryKind,
    /// As written in the dashboard, Grafana variables included.
    pub expr: String,
}

impl std::fmt::Display for DashboardQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} / {:?} {:?}: {}",
            self.dashboard, self.kind, self.source, self.expr
        )
    }
}

/// A dashboard JSON file.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub file: TextFile,
    pub json: Value,
}

impl Dashboard {
    pub fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or_default()
    }

    /// Every panel, rows' nested panels included.
    pub fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
            for panel in panels.as_array().into_iter().flatten() {
                out.push(panel);
                walk(&panel["panels"], out);
            }
        }
        let mut out = Vec::new();
        walk(&self.json["panels"], &mut out);
        out
    }

    /// Every PromQL query: panel targets, annotations, variables.
    pub fn queries(&self) -> Vec<DashboardQuery> {
        let uid = self.uid().to_owned();
        let mut out = Vec::new();
        for panel in self.panels() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(DashboardQuery {
                        dashboard: uid.clone(),
                        source: panel["title"].as_str().unwrap_or_default().to_owned(),
                        kind: QueryKind::Panel,
                        expr: expr.to_owned(),
                    });
                }
            }
        }
        for annotation in self.json["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(expr) = annotation["expr"].as_str() {
                out.push(DashboardQuery {
                    dashboard: uid.clone(),
                    source: annotation["name"].as_str().unwrap_or_default().to_owned(),
                    kind: QueryKind::Annotation,
                    expr: expr.to_owned(),
                });
            }
        }
        for variable in self.json["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let query = variable["query"]
                .as_str()
                .or_else(|| variable["query"]["query"].as_str());
            if variable["type"] == "query"
                && let Some(query) = query
            {
                out.push(DashboardQuery {
                    dashboard: uid.clone(),
                    source: variable["name"].as_str().unwrap_or_default().to_owned(),
                    kind: QueryKind::Variable,
                    expr: query.to_owned(),
                });
            }
        }
        out
    }
}

/// The dashboards in dashboards/.
pub fn dashboards() -> Result<Vec<Dashboard>> {
    files_in("dashboards", ".json")?
        .into_iter()
        .map(|file| {
            let json = serde_json::from_str(&file.text).with_context(|| file.repo_path.clone())?;
            Ok(Dashboard { file, json })
        })
        .collect()
}

/// The runbooks in runbooks/, one per alert (the README excluded).
pub fn runbooks() -> Result<Vec<TextFile>> {
    Ok(files_in("runbooks", ".md")?
        .into_iter()
        .filter(|file| file.name != "README.md")
        .collect())
}

/// The contents of the ```promql fenced blocks of a Markdown text.
pub fn promql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().starts_with("```");
        match current.as_mut() {
            None if fence && line.trim_start().trim_start_matches('`').trim() == "promql" => {
                current = Some(String::new());
            }
            Some(_) if fence => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// A Grafana query made into plain PromQL:
/// - `label_values(selector, label)` becomes `count by (label) (selector)`;
/// - `$__rate_interval`, `$__interval`, `$__range` become `window`;
/// - a template variable compared with `=` becomes `=~".+"`, and any other
///   `$var`, `${var}` or `${var:format}` becomes `.+` (every value).
pub fn concrete(expr: &str, window: &str) -> String {
    let mut expr = expr.trim().to_owned();
    if let Some(inner) = expr
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        && let Some((selector, label)) = inner.rsplit_once(',')
    {
        expr = format!("count by ({}) ({})", label.trim(), selector.trim());
    }
    for builtin in ["__rate_interval", "__interval", "__range"] {
        expr = expr
            .replace(&format!("${{{builtin}}}"), window)
            .replace(&format!("${builtin}"), window);
    }
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr.as_str();
    while let Some(at) = rest.find('$') {
        let (before, from) = rest.split_at(at);
        let length = variable_length(from);
        if length == 0 {
            out.push_str(before);
            out.push('$');
            rest = &from[1..];
            continue;
        }
        // `label="$var"` matches one value; make it match them all.
        if before.ends_with("=\"") && !before.ends_with("!=\"") && !before.ends_with("~\"") {
            out.push_str(&before[..before.len() - 2]);
            out.push_str("=~\"");
        } else {
            out.push_str(before);
        }
        out.push_str(".+");
        rest = &from[length..];
    }
    out.push_str(rest);
    out
}

/// The length of a Grafana variable reference at the start of `text`
/// (`$job`, `${job}`, `${job:regex}`), or 0.
fn variable_length(text: &str) -> usize {
    let bytes = text.as_bytes();
    if bytes.get(1) == Some(&b'{') {
        return text.find('}').map_or(0, |end| end + 1);
    }
    let name = text[1..]
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    if name == 0 { 0 } else { name + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_variables_become_promql() {
        assert_eq!(
            concrete(
                r#"sum(rate(x{job="$job", instance=~"${instance}"}[$__rate_interval]))"#,
                "5s"
            ),
            r#"sum(rate(x{job=~".+", instance=~".+"}[5s]))"#
        );
        assert_eq!(
            concrete(r#"label_values(up{job="$job"}, instance)"#, "5s"),
            r#"count by (instance) (up{job=~".+"})"#
        );
        assert_eq!(
            concrete("label_values(build_info, job)", "5s"),
            "count by (job) (build_info)"
        );
    }

    #[test]
    fn promql_blocks_are_found() {
        let md = "text\n```promql\nup == 0\n```\n```sh\nls\n```\n```promql\nrate(x[5m])\n```\n";
        assert_eq!(promql_blocks(md), ["up == 0\n", "rate(x[5m])\n"]);
    }
}
