//! The compressed rule files (alerts/compressed/) are generated from the
//! sources (alerts/*.rules.yml) by `faultline_tests::rules`; these tests fail
//! when they are stale, and regenerate them when asked to.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use faultline_tests::rules::{COMPRESSION_FACTOR, RuleFile, compressed_text, parse_duration};

use crate::assets;

/// The command that rewrites alerts/compressed/.
const REGENERATE: &str = "FAULTLINE_REGENERATE=1 cargo nextest run -p faultline-tests --test detection -E 'test(compressed)'";

fn regenerating() -> bool {
    std::env::var("FAULTLINE_REGENERATE").is_ok_and(|v| v == "1")
}

#[test]
fn compressed_rules_are_generated_from_the_sources() -> Result<()> {
    let dir = assets::repo_root().join("alerts/compressed");
    let sources = assets::files_in("alerts", ".rules.yml")?;
    let mut stale = Vec::new();
    for source in &sources {
        let wanted = compressed_text(&source.name, &source.text)
            .with_context(|| format!("compress {}", source.repo_path))?;
        let path = dir.join(&source.name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == wanted {
            continue;
        }
        if regenerating() {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&path, wanted).with_context(|| format!("write {}", path.display()))?;
        } else {
            stale.push(format!("alerts/compressed/{}", source.name));
        }
    }
    let names: BTreeSet<&str> = sources.iter().map(|f| f.name.as_str()).collect();
    for file in assets::files_in("alerts/compressed", ".rules.yml").unwrap_or_default() {
        if !names.contains(file.name.as_str()) {
            if regenerating() {
                std::fs::remove_file(dir.join(&file.name))?;
            } else {
                stale.push(format!("{} (its source is gone)", file.repo_path));
            }
        }
    }
    ensure!(
        stale.is_empty(),
        "stale compressed rules: {}. Regenerate them from alerts/*.rules.yml with\n  {REGENERATE}",
        stale.join(", ")
    );
    Ok(())
}

/// Every time span of a compressed rule is its source's, divided by the factor;
/// names, labels and annotations are the same.
#[test]
fn compressed_rules_keep_every_rule_and_divide_every_time_span() -> Result<()> {
    let sources = assets::rule_files("alerts")?;
    for source in &sources {
        let path = assets::repo_root()
            .join("alerts/compressed")
            .join(&source.file.name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read {} (run {REGENERATE})", path.display()))?;
        let compressed = RuleFile::parse(&text)?;
        ensure!(compressed.groups.len() == source.rules.groups.len());
        for (real, fast) in source.rules.rules().zip(compressed.rules()) {
            let name = real.name();
            ensure!(
                fast.name() == name,
                "{}: rules out of order",
                source.file.name
            );
            ensure!(
                fast.labels == real.labels && fast.annotations == real.annotations,
                "{name}"
            );
            let ms = |d: &Option<String>| d.as_deref().map(parse_duration).transpose();
            if let (Some(real_for), Some(fast_for)) = (ms(&real.for_)?, ms(&fast.for_)?) {
                ensure!(fast_for * COMPRESSION_FACTOR == real_for, "{name}: for");
            }
        }
    }
    // Spot checks of what the factor means.
    let slo = RuleFile::parse(&std::fs::read_to_string(
        assets::repo_root().join("alerts/compressed/slo.rules.yml"),
    )?)?;
    let burn_1h = slo
        .rules()
        .find(|r| r.record.as_deref() == Some("slo:sli_error:ratio_rate1h"))
        .context("slo:sli_error:ratio_rate1h")?;
    ensure!(burn_1h.expr.contains("[1m]"), "{}", burn_1h.expr);
    let page = slo
        .rules()
        .find(|r| r.alert.as_deref() == Some("ErrorBudgetBurnFast"))
        .context("ErrorBudgetBurnFast")?;
    ensure!(page.for_.as_deref() == Some("2s"), "{:?}", page.for_);
    Ok(())
}
