//! Prometheus rule files (`alerts/`): their typed form, a small PromQL lexer,
//! the metric names an expression reads, and the compressed time scale.
//!
//! The rule files in `alerts/` are the one source of truth, at real time
//! scales. [`compress_rule_file`] derives the variant in `alerts/compressed/`
//! that runs the same rules [`COMPRESSION_FACTOR`] times faster, so that chaos
//! experiments and tests can exercise a one-hour window in one minute. It
//! divides by the factor:
//!
//! - every group `interval`, rule `for` and `keep_firing_for`;
//! - every duration in an expression: range selectors `[5m]`, subqueries
//!   `[1h:1m]`, and `offset 5m`;
//! - the horizon of `predict_linear(v, 3600)`, a number of seconds;
//! - any number followed by the PromQL comment `# seconds` (a threshold on a
//!   value that is itself a duration, such as an event's age).
//!
//! Everything else (latency thresholds, ratios, rates per second, counts) is
//! left alone: those are properties of the traffic, not of the clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// How many times faster the compressed rules run: 1h becomes 1m, 5m becomes 5s.
pub const COMPRESSION_FACTOR: u64 = 60;

/// The header of every generated file in `alerts/compressed/`.
pub const GENERATED_HEADER: &str = "# GENERATED from alerts/{source} by the `compressed` test of tests/tests/detection:\n\
# every duration is divided by {factor} (1h -> 1m, 5m -> 5s). Do not edit; regenerate with\n\
#   FAULTLINE_REGENERATE=1 cargo nextest run -p faultline-tests --test detection -E 'test(compressed)'\n";

/// What can go wrong with a rule file or an expression.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("invalid rule file YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("invalid duration {0:?}")]
    Duration(String),
    #[error("duration {duration:?} is not a whole number of milliseconds once divided by {factor}")]
    Inexact { duration: String, factor: u64 },
    #[error("cannot read PromQL at byte {at} of {expr:?}: {reason}")]
    Lex {
        expr: String,
        at: usize,
        reason: String,
    },
    #[error("in {expr:?}: {reason}")]
    Scale { expr: String, reason: String },
    #[error("rule {0:?}: {1}")]
    Rule(String, Box<RulesError>),
}

/// A Prometheus rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

/// A group of rules, evaluated together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    pub rules: Vec<Rule>,
}

/// A recording rule (`record`) or an alerting rule (`alert`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    pub expr: String,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    /// The alert's or the recorded series' name.
    pub fn name(&self) -> &str {
        self.alert
            .as_deref()
            .or(self.record.as_deref())
            .unwrap_or("<unnamed>")
    }
}

impl RuleFile {
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        Ok(serde_yaml_ng::from_str(text)?)
    }

    pub fn to_yaml(&self) -> Result<String, RulesError> {
        Ok(serde_yaml_ng::to_string(self)?)
    }

    /// Every rule of every group.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.groups.iter().flat_map(|group| group.rules.iter())
    }

    /// The alerting rules.
    pub fn alerts(&self) -> impl Iterator<Item = &Rule> {
        self.rules().filter(|rule| rule.alert.is_some())
    }

    /// The names of the series the recording rules record.
    pub fn recorded_names(&self) -> BTreeSet<String> {
        self.rules()
            .filter_map(|rule| rule.record.clone())
            .collect()
    }
}

/// Parses a Prometheus duration (`90s`, `1h30m`, `500ms`) into milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, RulesError> {
    let invalid = || RulesError::Duration(text.to_owned());
    if text.is_empty() {
        return Err(invalid());
    }
    let bytes = text.as_bytes();
    let mut total: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let number: u64 = text[start..i].parse().map_err(|_| invalid())?;
        let (unit_ms, len) = match &text[i..] {
            rest if rest.starts_with("ms") => (1, 2),
            rest if rest.starts_with('s') => (1_000, 1),
            rest if rest.starts_with('m') => (60_000, 1),
            rest if rest.starts_with('h') => (3_600_000, 1),
            rest if rest.starts_with('d') => (86_400_000, 1),
            rest if rest.starts_with('w') => (7 * 86_400_000, 1),
            rest if rest.starts_with('y') => (365 * 86_400_000, 1),
            _ => return Err(invalid()),
        };
        i += len;
        total = number
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(invalid)?;
    }
    Ok(total)
}

/// Formats milliseconds as a Prometheus duration in the largest unit that
/// divides it exactly (`72m`, `5s`, `500ms`): one unit, which every
/// Prometheus version reads.
pub fn format_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Divides a duration by `factor`, exactly.
pub fn scale_duration(text: &str, factor: u64) -> Result<String, RulesError> {
    let ms = parse_duration(text)?;
    if factor == 0 || !ms.is_multiple_of(factor) {
        return Err(RulesError::Inexact {
            duration: text.to_owned(),
            factor,
        });
    }
    Ok(format_duration(ms / factor))
}

/// The kinds of PromQL tokens the lexer tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A metric, label, function or keyword name.
    Ident,
    Number,
    Duration,
    String,
    /// `# ...` to the end of the line.
    Comment,
    /// An operator or a bracket.
    Punct,
}

/// One token, borrowed from the expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: TokenKind,
    pub text: &'a str,
    /// Byte offset in the expression.
    pub start: usize,
}

const TWO_CHAR_OPS: [&str; 6] = ["==", "!=", "=~", "!~", ">=", "<="];
const ONE_CHAR_OPS: &str = "(){}[],=+-*/%^<>@:";

/// Splits a PromQL expression into tokens. Grafana variables (`$job`) are not
/// PromQL: substitute them first.
pub fn lex(expr: &str) -> Result<Vec<Token<'_>>, RulesError> {
    let error = |at: usize, reason: &str| RulesError::Lex {
        expr: expr.to_owned(),
        at,
        reason: reason.to_owned(),
    };
    let bytes = expr.as_bytes();
    let mut tokens = Vec::new();
    let mut brackets = 0_i32;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            TokenKind::Comment
        } else if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(error(start, "unterminated string")),
                    Some(b'\\') if c != b'`' => i += 2,
                    Some(&d) if d == c => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            TokenKind::String
        } else if c.is_ascii_digit()
            || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            lex_number(expr, &mut i)
        } else if c.is_ascii_alphabetic() || c == b'_' || (c == b':' && brackets == 0) {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
            {
                i += 1;
            }
            TokenKind::Ident
        } else if TWO_CHAR_OPS.iter().any(|op| expr[i..].starts_with(op)) {
            i += 2;
            TokenKind::Punct
        } else if ONE_CHAR_OPS.as_bytes().contains(&c) {
            match c {
                b'[' => brackets += 1,
                b']' => brackets -= 1,
                _ => {}
            }
            i += 1;
            TokenKind::Punct
        } else {
            return Err(error(i, "unexpected character"));
        };
        tokens.push(Token {
            kind,
            text: &expr[start..i],
            start,
        });
    }
    Ok(tokens)
}

/// Reads a number (`42`, `0.5`, `1e3`, `0x1f`) or a duration (`5m`, `1h30m`).
fn lex_number(expr: &str, i: &mut usize) -> TokenKind {
    let bytes = expr.as_bytes();
    let digits = |i: &mut usize| {
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    if expr[*i..].starts_with("0x") || expr[*i..].starts_with("0X") {
        *i += 2;
        while *i < bytes.len() && bytes[*i].is_ascii_hexdigit() {
            *i += 1;
        }
        return TokenKind::Number;
    }
    let start = *i;
    digits(i);
    let unit_len = |at: usize| -> usize {
        let rest = &expr[at..];
        let len = if rest.starts_with("ms") {
            2
        } else if rest.starts_with(['s', 'm', 'h', 'd', 'w', 'y']) {
            1
        } else {
            return 0;
        };
        // A unit ends the word: `5m` is a duration, `5min` is not PromQL.
        match bytes.get(at + len) {
            Some(b) if b.is_ascii_alphabetic() || *b == b'_' => 0,
            _ => len,
        }
    };
    if *i > start && unit_len(*i) > 0 {
        loop {
            *i += unit_len(*i);
            let before = *i;
            digits(i);
            if *i == before {
                return TokenKind::Duration;
            }
            if unit_len(*i) == 0 {
                // `1h30` is not a duration; leave the digits for the caller's error.
                *i = before;
                return TokenKind::Duration;
            }
        }
    }
    if bytes.get(*i) == Some(&b'.') {
        *i += 1;
        digits(i);
    }
    if matches!(bytes.get(*i), Some(b'e' | b'E')) {
        let mut j = *i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if bytes.get(j).is_some_and(u8::is_ascii_digit) {
            *i = j;
            digits(i);
        }
    }
    TokenKind::Number
}

/// Formats a number of seconds divided by the factor: `3600` -> `60`, `90` -> `1.5`.
fn scale_seconds(text: &str, factor: u64, expr: &str) -> Result<String, RulesError> {
    let seconds: f64 = text.parse().map_err(|_| RulesError::Scale {
        expr: expr.to_owned(),
        reason: format!("{text:?} is not a number of seconds"),
    })?;
    // Factors are small integers; the conversion is exact.
    let scaled = seconds / factor as f64;
    Ok(format!("{scaled}"))
}

/// Divides every time span in an expression by `factor` (see the module docs).
pub fn scale_expr(expr: &str, factor: u64) -> Result<String, RulesError> {
    let fail = |reason: String| RulesError::Scale {
        expr: expr.to_owned(),
        reason,
    };
    let tokens = lex(expr)?;
    // Indices of the significant (non-comment) tokens, for looking back and ahead.
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| tokens[i].kind != TokenKind::Comment)
        .collect();
    let mut replacements: BTreeMap<usize, String> = BTreeMap::new();
    let mut brackets = 0_i32;
    for (position, &index) in significant.iter().enumerate() {
        let token = tokens[index];
        let before = |back: usize| {
            position
                .checked_sub(back)
                .map(|p| tokens[significant[p]].text)
        };
        match (token.kind, token.text) {
            (TokenKind::Punct, "[") => brackets += 1,
            (TokenKind::Punct, "]") => brackets -= 1,
            (TokenKind::Duration, text) => {
                let after_offset = before(1).is_some_and(|t| t.eq_ignore_ascii_case("offset"))
                    || (before(1) == Some("-")
                        && before(2).is_some_and(|t| t.eq_ignore_ascii_case("offset")));
                if brackets == 0 && !after_offset {
                    return Err(fail(format!(
                        "the duration {text} is neither in [...] nor after offset"
                    )));
                }
                replacements.insert(index, scale_duration(text, factor)?);
            }
            (TokenKind::Ident, "predict_linear") => {
                let horizon =
                    predict_linear_horizon(&tokens, &significant, position).ok_or_else(|| {
                        fail("predict_linear's horizon must be a plain number of seconds".into())
                    })?;
                let text = tokens[horizon].text;
                replacements.insert(horizon, scale_seconds(text, factor, expr)?);
            }
            _ => {}
        }
    }
    // `<number> # seconds`: a threshold that is a time span.
    for (index, token) in tokens.iter().enumerate() {
        let marker = token.text.trim_start_matches('#').trim_start();
        if token.kind != TokenKind::Comment || !marker.starts_with("seconds") {
            continue;
        }
        let number = index
            .checked_sub(1)
            .filter(|&i| tokens[i].kind == TokenKind::Number)
            .ok_or_else(|| fail("a `# seconds` comment must follow a number".into()))?;
        if replacements.contains_key(&number) {
            continue;
        }
        replacements.insert(number, scale_seconds(tokens[number].text, factor, expr)?);
    }
    let mut out = String::with_capacity(expr.len());
    let mut copied = 0;
    for (index, replacement) in replacements {
        let token = tokens[index];
        out.push_str(&expr[copied..token.start]);
        out.push_str(&replacement);
        copied = token.start + token.text.len();
    }
    out.push_str(&expr[copied..]);
    Ok(out)
}

/// The token index of `predict_linear(v, <horizon>)`'s horizon, when it is a
/// plain number. `position` indexes `significant`, at the function name.
fn predict_linear_horizon(
    tokens: &[Token<'_>],
    significant: &[usize],
    position: usize,
) -> Option<usize> {
    let at = |p: usize| significant.get(p).map(|&i| tokens[i]);
    if at(position + 1)?.text != "(" {
        return None;
    }
    let mut depth = 0_i32;
    let mut p = position + 1;
    loop {
        let token = at(p)?;
        match token.text {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth -= 1,
            "," if depth == 1 => {
                let horizon = at(p + 1)?;
                let close = at(p + 2)?;
                return (horizon.kind == TokenKind::Number && close.text == ")")
                    .then_some(significant[p + 1]);
            }
            _ => {}
        }
        if depth == 0 {
            return None;
        }
        p += 1;
    }
}

/// The compressed variant of a rule file: every time span divided by `factor`.
pub fn compress_rule_file(file: &RuleFile, factor: u64) -> Result<RuleFile, RulesError> {
    let mut out = file.clone();
    for group in &mut out.groups {
        if let Some(interval) = &group.interval {
            group.interval = Some(scale_duration(interval, factor)?);
        }
        for rule in &mut group.rules {
            compress_rule(rule, factor)
                .map_err(|err| RulesError::Rule(rule.name().to_owned(), Box::new(err)))?;
        }
    }
    Ok(out)
}

fn compress_rule(rule: &mut Rule, factor: u64) -> Result<(), RulesError> {
    rule.expr = scale_expr(&rule.expr, factor)?;
    if let Some(for_) = &rule.for_ {
        rule.for_ = Some(scale_duration(for_, factor)?);
    }
    if let Some(keep) = &rule.keep_firing_for {
        rule.keep_firing_for = Some(scale_duration(keep, factor)?);
    }
    Ok(())
}

/// The text of `alerts/compressed/<source>`, generated from the text of `alerts/<source>`.
pub fn compressed_text(source_name: &str, source_text: &str) -> Result<String, RulesError> {
    let file = RuleFile::parse(source_text)?;
    let compressed = compress_rule_file(&file, COMPRESSION_FACTOR)?;
    let header = GENERATED_HEADER
        .replace("{source}", source_name)
        .replace("{factor}", &COMPRESSION_FACTOR.to_string());
    Ok(format!("{header}{}", compressed.to_yaml()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("5m").unwrap(), 300_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500);
        assert_eq!(parse_duration("3d").unwrap(), 259_200_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(72 * 60_000), "72m");
        assert_eq!(format_duration(12 * 3_600_000), "12h");
        assert_eq!(format_duration(1_500), "1500ms");
    }

    #[test]
    fn scaling_divides_exactly_or_fails() {
        assert_eq!(scale_duration("1h", 60).unwrap(), "1m");
        assert_eq!(scale_duration("5m", 60).unwrap(), "5s");
        assert_eq!(scale_duration("3d", 60).unwrap(), "72m");
        assert_eq!(scale_duration("30s", 60).unwrap(), "500ms");
        assert_eq!(scale_duration("30d", 60).unwrap(), "12h");
        assert!(matches!(
            scale_duration("1s", 60),
            Err(RulesError::Inexact { .. })
        ));
    }

    #[test]
    fn the_lexer_tells_durations_numbers_and_names_apart() {
        let tokens = lex(r#"rate(a_b:c{x="5m", y=~'a\'b'}[1h30m:5m]) > 1e3 # seconds"#).unwrap();
        let kinds: Vec<(TokenKind, &str)> = tokens.iter().map(|t| (t.kind, t.text)).collect();
        assert!(kinds.contains(&(TokenKind::Ident, "a_b:c")));
        assert!(kinds.contains(&(TokenKind::String, "\"5m\"")));
        assert!(kinds.contains(&(TokenKind::Duration, "1h30m")));
        assert!(kinds.contains(&(TokenKind::Punct, ":")));
        assert!(kinds.contains(&(TokenKind::Duration, "5m")));
        assert!(kinds.contains(&(TokenKind::Number, "1e3")));
        assert!(kinds.contains(&(TokenKind::Comment, "# seconds")));
        assert!(lex("up{job=\"$job\"} + $x").is_err());
    }

    #[test]
    fn expressions_scale_ranges_offsets_subqueries_and_horizons() {
        let expr = "avg_over_time(x[1h:5m] offset 30m) > 2 * rate(y{w=\"1h\"}[5m] offset -10m)\n\
                    and predict_linear(z[30m], 3600) > 1\n\
                    and age > 600 # seconds\n";
        assert_eq!(
            scale_expr(expr, 60).unwrap(),
            "avg_over_time(x[1m:5s] offset 30s) > 2 * rate(y{w=\"1h\"}[5s] offset -10s)\n\
             and predict_linear(z[30s], 60) > 1\n\
             and age > 10 # seconds\n"
        );
        assert!(scale_expr("predict_linear(z[30m], 2 * 3600)", 60).is_err());
        assert!(scale_expr("x > 5 * 3 # seconds", 60).is_ok());
        assert!(scale_expr("x # seconds", 60).is_err());
    }

    #[test]
    fn compressing_a_file_scales_for_and_interval() {
        let text = "groups:\n  - name: g\n    interval: 5m\n    rules:\n      - alert: A\n        expr: rate(x[5m]) > 0\n        for: 2m\n        labels:\n          severity: page\n";
        let compressed = compressed_text("a.rules.yml", text).unwrap();
        let file = RuleFile::parse(&compressed).unwrap();
        let group = &file.groups[0];
        assert_eq!(group.interval.as_deref(), Some("5s"));
        assert_eq!(group.rules[0].expr, "rate(x[5s]) > 0");
        assert_eq!(group.rules[0].for_.as_deref(), Some("2s"));
        assert!(compressed.starts_with("# GENERATED from alerts/a.rules.yml"));
    }

    #[test]
    fn unknown_rule_fields_are_refused() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        fore: 2m\n";
        assert!(RuleFile::parse(text).is_err());
    }
}
