//! A small PromQL tokenizer: the metric names an expression reads.
//!
//! Enough for rule expressions, not a parser: strings, comments, numbers,
//! durations and `[...]` ranges are skipped; an identifier is a metric name
//! unless it is a function or an aggregation (followed by `(`, or by
//! `by`/`without`), a keyword, or a label name (inside `{...}`, or in the
//! `(...)` list after `by`, `without`, `on`, `ignoring`, `group_left`,
//! `group_right`).

use std::collections::BTreeSet;

/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Words that are never metric names.
const KEYWORDS: [&str; 8] = [
    "and", "or", "unless", "offset", "bool", "atan2", "inf", "nan",
];

/// Aggregations, which may be followed by `by (...)` before their `(`.
const AGGREGATORS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Ident(&'a str),
    Punct(u8),
}

/// The identifiers and brackets of `expr`, in order; everything else dropped.
fn tokens(expr: &str) -> Vec<Token<'_>> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    i += if bytes[i] == b'\\' && c != b'`' { 2 } else { 1 };
                }
                i += 1;
            }
            // Ranges, subqueries: `[5m]`, `[1h:1m]`.
            b'[' => {
                while i < bytes.len() && bytes[i] != b']' {
                    i += 1;
                }
                i += 1;
            }
            b'(' | b')' | b'{' | b'}' => {
                out.push(Token::Punct(c));
                i += 1;
            }
            // Numbers and durations: `0.95`, `1e3`, `0x1f`, `5m`.
            _ if c.is_ascii_digit()
                || (c == b'.' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit()) =>
            {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    // A signed exponent: `1e-3`.
                    if matches!(bytes[i], b'e' | b'E')
                        && matches!(bytes.get(i + 1), Some(b'+' | b'-'))
                    {
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < bytes.len() && ident_char(bytes[i]) {
                    i += 1;
                }
                out.push(Token::Ident(&expr[start..i]));
            }
            _ => i += 1,
        }
    }
    out
}

/// The metric names `expr` selects (recording rules' names included).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let tokens = tokens(expr);
    let mut names = BTreeSet::new();
    let mut braces = 0_i32;
    let mut parens = 0_i32;
    // The depth of parentheses at which a label list ends.
    let mut label_list: Option<i32> = None;
    for (index, token) in tokens.iter().enumerate() {
        let next = tokens.get(index + 1).copied();
        match *token {
            Token::Punct(b'{') => braces += 1,
            Token::Punct(b'}') => braces -= 1,
            Token::Punct(b'(') => parens += 1,
            Token::Punct(b')') => {
                if label_list == Some(parens) {
                    label_list = None;
                }
                parens -= 1;
            }
            Token::Punct(_) => {}
            Token::Ident(word) => {
                let lower = word.to_ascii_lowercase();
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    if next == Some(Token::Punct(b'(')) && label_list.is_none() && braces == 0 {
                        label_list = Some(parens + 1);
                    }
                    continue;
                }
                let is_name = braces == 0
                    && label_list.is_none()
                    && next != Some(Token::Punct(b'('))
                    && !KEYWORDS.contains(&lower.as_str())
                    && !AGGREGATORS.contains(&lower.as_str());
                if is_name {
                    names.insert(word.to_owned());
                }
            }
        }
    }
    names
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn reads_selectors_not_functions_labels_or_keywords() {
        assert_eq!(
            names(
                "histogram_quantile(0.95,\n  sum by (job, le) (rate(http_server_request_duration_seconds_bucket{route=~\"/api.*\"}[5m]))\n) >= 0"
            ),
            ["http_server_request_duration_seconds_bucket"]
        );
        assert_eq!(
            names(
                "sum by (job, reason) (rate(degraded_responses_total[5s]))\n  / on (job) group_left ()\nsum by (job) (rate(http_server_request_duration_seconds_count[5s])) > 0.05"
            ),
            [
                "degraded_responses_total",
                "http_server_request_duration_seconds_count"
            ]
        );
        assert_eq!(names("vector(1)"), Vec::<String>::new());
        assert_eq!(
            names("absent(up{job=\"worker\"}) or (up == 1 unless on (job, instance) build_info)"),
            ["build_info", "up"]
        );
        assert_eq!(
            names(
                "outbox_oldest_event_age_seconds > 300 # seconds\nand avg_over_time(job:x:rate1h[1h:1m] offset 5m) > bool 1e-3"
            ),
            ["job:x:rate1h", "outbox_oldest_event_age_seconds"]
        );
        assert_eq!(
            names("max without (instance) (a) * on(job) group_right(le) b{__name__!=\"c\"}"),
            ["a", "b"]
        );
        assert_eq!(
            names(
                "predict_linear(process_resident_memory_bytes[30s], 60) > instance:process_resident_memory_limit_bytes"
            ),
            [
                "instance:process_resident_memory_limit_bytes",
                "process_resident_memory_bytes"
            ]
        );
        assert_eq!(
            names("label_replace(m, \"dst\", \"$1\", \"src\", \"(.*)\")"),
            ["m"]
        );
        assert_eq!(names("sum(x) by (job)"), ["x"]);
    }

    /// Every expression of alerts/*.rules.yml and alerts/compressed/: the
    /// names found are recorded by a rule, in the metric catalog, or `up`,
    /// and only literals (the Watchdog's `vector(1)`) read none.
    #[test]
    fn every_rule_expression_reads_known_names() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts");
        let catalog = faultline_telemetry::Catalog::embedded().unwrap();
        let mut exprs: BTreeMap<String, String> = BTreeMap::new();
        let mut recorded = BTreeSet::new();
        for dir in [root.clone(), root.join("compressed")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if !path.to_string_lossy().ends_with(".rules.yml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
                for group in yaml["groups"].as_sequence().unwrap() {
                    for rule in group["rules"].as_sequence().unwrap() {
                        let name = rule["alert"]
                            .as_str()
                            .or(rule["record"].as_str())
                            .unwrap()
                            .to_owned();
                        if let Some(record) = rule["record"].as_str() {
                            recorded.insert(record.to_owned());
                        }
                        let key = format!("{} {name} #{}", path.display(), exprs.len());
                        exprs.insert(key, rule["expr"].as_str().unwrap().to_owned());
                    }
                }
            }
        }
        assert!(exprs.len() > 40, "{} expressions", exprs.len());
        let mut problems = Vec::new();
        for (rule, expr) in &exprs {
            let found = metric_names(expr);
            if found.is_empty() && !expr.trim().starts_with("vector(") {
                problems.push(format!("{rule}: no metric name in {expr:?}"));
            }
            for name in &found {
                if !recorded.contains(name)
                    && catalog.metric_of_series(name).is_none()
                    && name != "up"
                {
                    problems.push(format!("{rule}: {name:?} is no metric"));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
