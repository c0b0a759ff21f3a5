//! Reading a Prometheus text exposition (`/metrics`) and matching series in it.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// True when every `(name, value)` pair in `wanted` is among the sample's labels.
    pub fn has_labels(&self, wanted: &[(&str, &str)]) -> bool {
        wanted
            .iter()
            .all(|(key, value)| self.labels.get(*key).map(String::as_str) == Some(*value))
    }
}

/// A line that is not valid exposition text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
    pub text: String,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    /// Parses the text format (version 0.0.4). `# TYPE` lines are kept; other
    /// comments and blank lines are skipped.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut exposition = Self::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let error = |reason| ParseError {
                line: index + 1,
                reason,
                text: raw.to_owned(),
            };
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE") {
                    let name = words.next().ok_or_else(|| error("TYPE without a name"))?;
                    let kind = words.next().ok_or_else(|| error("TYPE without a type"))?;
                    exposition.types.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            exposition.samples.push(parse_sample(line).map_err(error)?);
        }
        Ok(exposition)
    }

    /// Every sample, in page order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The samples of one series name whose labels include `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |sample| sample.name == name && sample.has_labels(labels))
    }

    /// The value of the one sample matching `name` and `labels`; `None` when
    /// there is no match or more than one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matches = self.find(name, labels);
        let first = matches.next()?;
        matches.next().is_none().then_some(first.value)
    }

    /// Every distinct series name on the page.
    pub fn series_names(&self) -> BTreeSet<&str> {
        self.samples
            .iter()
            .map(|sample| sample.name.as_str())
            .collect()
    }

    /// The type a `# TYPE` line declared for a metric family.
    pub fn declared_type(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }
}

fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample needs a value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("a sample needs a name");
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after;
    }
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or("a sample needs a value")?;
    let value = parse_value(value_text).ok_or("the value is not a number")?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y\"z"}` and returns the labels and the text after `}`.
fn parse_labels(mut text: &str) -> Result<(BTreeMap<String, String>, &str), &'static str> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = text.find('=').ok_or("a label needs name=\"value\"")?;
        let key = text[..eq].trim();
        text = text[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape in a label value"),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value"),
            }
        };
        labels.insert(key.to_owned(), value);
        text = text[end + 1..].trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"
# HELP db_client_connections Connections in the pool.
# TYPE db_client_connections gauge
db_client_connections{state="idle"} 3
db_client_connections{state="used"} 1
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{route="/api/products/{id}",le="0.1"} 7
http_server_request_duration_seconds_bucket{route="/api/products/{id}",le="+Inf"} 9
build_info{service="shop",version="0.1.0"} 1
odd{msg="a \"quoted\" \\ value, with } brace"} -Inf 1700000000000
"#;

    #[test]
    fn finds_series_by_name_and_labels() {
        let page = Exposition::parse(PAGE).unwrap();
        assert_eq!(
            page.value("db_client_connections", &[("state", "idle")]),
            Some(3.0)
        );
        assert_eq!(
            page.value("db_client_connections", &[("state", "used")]),
            Some(1.0)
        );
        assert_eq!(page.value("db_client_connections", &[]), None, "two match");
        assert_eq!(
            page.value(
                "http_server_request_duration_seconds_bucket",
                &[("le", "+Inf")]
            ),
            Some(9.0)
        );
        assert_eq!(page.declared_type("db_client_connections"), Some("gauge"));
    }

    #[test]
    fn reads_escapes_and_special_values() {
        let page = Exposition::parse(PAGE).unwrap();
        let odd = page.find("odd", &[]).next().unwrap();
        assert_eq!(odd.labels["msg"], r#"a "quoted" \ value, with } brace"#);
        assert_eq!(odd.value, f64::NEG_INFINITY);
    }

    #[test]
    fn lists_series_names() {
        let page = Exposition::parse(PAGE).unwrap();
        assert!(page.series_names().contains("build_info"));
        assert_eq!(page.series_names().len(), 4);
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let err = Exposition::parse("ok 1\nbroken{a=\"x\" 1\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = Exposition::parse("no_value\n").unwrap_err();
        assert_eq!(err.reason, "a sample needs a value");
        let err = Exposition::parse("x{a=1} 2\n").unwrap_err();
        assert_eq!(err.reason, "a label value must be quoted");
        let err = Exposition::parse("x one\n").unwrap_err();
        assert_eq!(err.reason, "the value is not a number");
    }
}
