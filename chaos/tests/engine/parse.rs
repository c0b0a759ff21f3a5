//! Experiment files: the shipped ones parse; broken ones give errors with the
//! file, line, column and field path.

use std::time::Duration;

use faultline_chaos::experiment::{
    ContainerOp, Experiment, ExperimentError, FaultKind, Must, ProbeKind, SliMetric, Tolerance,
};
use proptest::prelude::*;

const MINIMAL: &str = r#"
title = "minimal"

[method]
[[method.faults]]
name = "pause"
type = "container"
action = "pause"
target = { service = "orders", replica = 1 }
at = "1s"
duration = "2s"
"#;

fn parse(text: &str) -> Result<Experiment, ExperimentError> {
    Experiment::parse(text, "test.toml")
}

/// The error, its field and 1-based (line, column).
fn error(text: &str) -> Result<(String, String, (usize, usize)), String> {
    let err = match parse(text) {
        Ok(_) => return Err(format!("valid, but should not be:\n{text}")),
        Err(err) => err,
    };
    let field = err.field().ok_or("no field")?.to_owned();
    let location = err.location().ok_or("no location")?;
    Ok((err.to_string(), field, location))
}

/// The 1-based line holding `needle` (0 when none does).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(0, |i| i + 1)
}

#[test]
fn shipped_experiments_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let experiment = Experiment::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!experiment.method.faults.is_empty(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 2, "kill-replica and payments-latency at least");
}

#[test]
fn kill_replica_has_the_expected_shape() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/kill-replica.toml");
    let experiment = Experiment::load(std::path::Path::new(path)).unwrap();
    let fault = &experiment.method.faults[0];
    assert_eq!(fault.at, Duration::from_secs(5));
    let FaultKind::Container(container) = &fault.kind else {
        panic!("a container fault")
    };
    assert_eq!(container.action, ContainerOp::Kill);
    assert_eq!(container.target.service.as_deref(), Some("orders"));
    assert_eq!(container.target.replica, Some(2));
    assert_eq!(experiment.expected_alerts[0].alert, "ReplicasBelowDesired");
    assert!(experiment.during.iter().any(|p| p.must == Must::Eventually));
    let ProbeKind::Sli(sli) = &experiment.during[0].kind else {
        panic!("an sli probe")
    };
    assert_eq!(sli.metric, SliMetric::Errors);
    assert_eq!(sli.tolerance, Tolerance::Equals(0.0));
}

#[test]
fn minimal_experiment_gets_defaults() {
    let experiment = parse(MINIMAL).unwrap();
    assert_eq!(experiment.recovery.deadline, Duration::from_secs(60));
    assert_eq!(experiment.settings.probe_interval, Duration::from_secs(1));
    assert!(experiment.steady_state.probes.is_empty());
    // It serialises back into TOML that parses to the same experiment.
    let again = toml::to_string(&experiment).unwrap();
    assert_eq!(parse(&again).unwrap(), experiment);
}

#[test]
fn unknown_field_in_a_plain_table() {
    let text = MINIMAL.replace("[method]", "[method]\nduraton = \"3s\"");
    let (message, field, (line, column)) = error(&text).unwrap();
    assert_eq!(field, "method.duraton");
    assert_eq!((line, column), (line_of(&text, "duraton"), 1));
    assert!(
        message.starts_with(&format!(
            "test.toml:{line}:1: method.duraton: unknown field `duraton`"
        )),
        "{message}"
    );
}

#[test]
fn unknown_field_in_a_tagged_table() {
    let text = MINIMAL.replace(
        "action = \"pause\"",
        "action = \"pause\"\nsignul = \"SIGKILL\"",
    );
    let (message, field, (line, column)) = error(&text).unwrap();
    assert_eq!(field, "method.faults[0].signul");
    assert_eq!((line, column), (line_of(&text, "signul"), 1));
    assert!(
        message.contains("expected one of `action`, `target`"),
        "{message}"
    );
}

#[test]
fn bad_duration_names_the_value() {
    let text = MINIMAL.replace("at = \"1s\"", "at = \"1 parsec\"");
    let (message, field, (line, column)) = error(&text).unwrap();
    assert_eq!(field, "method.faults[0].at");
    assert_eq!((line, column), (line_of(&text, "parsec"), 6));
    assert!(
        message.contains("invalid duration \"1 parsec\""),
        "{message}"
    );
}

#[test]
fn bad_value_inside_a_tagged_table_is_located_exactly() {
    let text = r#"
title = "t"
[method]
[[during]]
name = "p99"
type = "sli"
metric = "p99_ms"
tolerance = { at_most = "fast" }
"#;
    let (message, field, (line, _)) = error(text).unwrap();
    assert_eq!(field, "during[0].tolerance.at_most");
    assert_eq!(line, line_of(text, "at_most"));
    assert!(
        message.contains("invalid type: string \"fast\""),
        "{message}"
    );
}

#[test]
fn missing_field() {
    let text = MINIMAL.replace("action = \"pause\"\n", "");
    let (message, field, (line, _)) = error(&text).unwrap();
    assert_eq!(field, "method.faults[0].action");
    assert_eq!(line, line_of(&text, "[[method.faults]]"));
    assert!(message.contains("missing field `action`"), "{message}");

    let (_, field, location) = error("[method]\n").unwrap();
    assert_eq!(field, "title");
    assert_eq!(location, (1, 1));
}

#[test]
fn unknown_type() {
    let text = MINIMAL.replace("type = \"container\"", "type = \"kontainer\"");
    let (message, field, (line, column)) = error(&text).unwrap();
    assert_eq!(field, "method.faults[0].type");
    assert_eq!((line, column), (line_of(&text, "kontainer"), 8));
    assert!(message.contains("unknown variant `kontainer`"), "{message}");
}

#[test]
fn semantic_errors_point_at_the_field() {
    let cases = [
        (MINIMAL.replace("replica = 1", "replica = 0"), "method.faults[0].target", "numbered from 1"),
        (
            MINIMAL.replace("[method]", "[method]\nduration = \"1s\""),
            "method.duration",
            "scheduled until 3s",
        ),
        (
            MINIMAL.replace(
                "type = \"container\"\naction = \"pause\"\ntarget = { service = \"orders\", replica = 1 }",
                "type = \"toxic\"\nproxy = \"p\"\ntoxic = \"latency\"\nattributes = { latancy = 100 }",
            ),
            "method.faults[0].attributes",
            "latancy",
        ),
        (
            MINIMAL.replace(
                "type = \"container\"\naction = \"pause\"\ntarget = { service = \"orders\", replica = 1 }",
                "type = \"toxic\"\nproxy = \"p\"\ntoxic = \"latency\"\nattributes = { latency = 100 }\nramp = { attribute = \"jitter\", to = 800, steps = 10, every = \"1s\" }",
            ),
            "method.faults[0].ramp.steps",
            "the ramp takes 10s",
        ),
        (
            MINIMAL.replace("action = \"pause\"", "action = \"exec\""),
            "method.faults[0].command",
            "exec needs a command",
        ),
        (
            MINIMAL.replace("action = \"pause\"", "action = \"pause\"\nundo = [\"true\"]"),
            "method.faults[0].undo",
            "only applies to action = \"exec\"",
        ),
        (
            MINIMAL.replace("action = \"pause\"", "action = \"limit\""),
            "method.faults[0].cpus",
            "limit needs cpus, memory_mib or both",
        ),
        (
            MINIMAL.replace("action = \"pause\"", "action = \"limit\"\ncpus = 0"),
            "method.faults[0].cpus",
            "not between 0.01 and 1024",
        ),
        (
            MINIMAL.replace("action = \"pause\"", "action = \"limit\"\nmemory_mib = 2"),
            "method.faults[0].memory_mib",
            "under 6 MiB",
        ),
        (
            MINIMAL.replace("action = \"pause\"", "action = \"pause\"\ncpus = 0.5"),
            "method.faults[0].cpus",
            "only applies to action = \"limit\"",
        ),
        (
            MINIMAL.replace("action = \"pause\"", "action = \"partition\""),
            "method.faults[0].peer",
            "partition needs a peer",
        ),
        (
            MINIMAL.replace("action = \"pause\"", "action = \"partition\"\npeer = { replica = 2 }"),
            "method.faults[0].peer",
            "a target needs a service, a name or labels",
        ),
        (
            MINIMAL.replace("action = \"pause\"", "action = \"kill\"\nimage = \"x\""),
            "method.faults[0].image",
            "only applies to action = \"partition\"",
        ),
    ];
    for (text, expected_field, needle) in cases {
        let (message, field, (line, _)) = error(&text).unwrap();
        assert_eq!(field, expected_field, "{message}");
        assert!(message.contains(needle), "{message}");
        assert!(line > 1, "{message}");
    }
}

#[test]
fn an_exec_fault_carries_its_command_undo_and_user() {
    let text = MINIMAL.replace(
        "action = \"pause\"",
        "action = \"exec\"\ncommand = [\"sh\", \"-c\", \"touch /tmp/x\"]\nundo = [\"rm\", \"-f\", \"/tmp/x\"]\nuser = \"root\"",
    );
    let experiment = parse(&text).unwrap();
    let FaultKind::Container(fault) = &experiment.method.faults[0].kind else {
        panic!("not a container fault: {:?}", experiment.method.faults[0]);
    };
    assert_eq!(fault.action, ContainerOp::Exec);
    assert_eq!(fault.command, ["sh", "-c", "touch /tmp/x"]);
    assert_eq!(fault.undo, ["rm", "-f", "/tmp/x"]);
    assert_eq!(fault.user.as_deref(), Some("root"));
}

#[test]
fn limit_and_partition_faults_carry_their_settings() {
    let text = MINIMAL.replace(
        "action = \"pause\"",
        "action = \"limit\"\ncpus = 0.25\nmemory_mib = 128",
    );
    let experiment = parse(&text).unwrap();
    let FaultKind::Container(fault) = &experiment.method.faults[0].kind else {
        panic!("not a container fault: {:?}", experiment.method.faults[0]);
    };
    assert_eq!(fault.action, ContainerOp::Limit);
    assert_eq!((fault.cpus, fault.memory_mib), (Some(0.25), Some(128)));

    let text = MINIMAL.replace(
        "action = \"pause\"",
        "action = \"partition\"\npeer = { service = \"gateway\" }",
    );
    let experiment = parse(&text).unwrap();
    let FaultKind::Container(fault) = &experiment.method.faults[0].kind else {
        panic!("not a container fault: {:?}", experiment.method.faults[0]);
    };
    assert_eq!(fault.action, ContainerOp::Partition);
    assert_eq!(
        fault.peer.as_ref().and_then(|p| p.service.as_deref()),
        Some("gateway")
    );
}

#[test]
fn http_toxics_take_strings_ratios_and_tables() {
    let toxic = "type = \"toxic\"\nproxy = \"payments\"\ntoxic = \"http_abort\"\nstream = \"upstream\"\nattributes = { status = 503, ratio = 0.5, method = \"POST\", path = \"/payments\", headers = { \"x-tenant\" = \"a\" } }";
    let text = MINIMAL.replace(
        "type = \"container\"\naction = \"pause\"\ntarget = { service = \"orders\", replica = 1 }",
        toxic,
    );
    let experiment = parse(&text).unwrap();
    let FaultKind::Toxic(fault) = &experiment.method.faults[0].kind else {
        panic!("not a toxic: {:?}", experiment.method.faults[0]);
    };
    let attributes = fault.api_attributes();
    assert_eq!(attributes["status"], 503);
    assert_eq!(attributes["ratio"], 0.5);
    assert_eq!(attributes["headers"]["x-tenant"], "a");

    // The proxy's own checks apply, at the field.
    let (message, field, _) = error(&text.replace("status = 503", "status = 99")).unwrap();
    assert_eq!(field, "method.faults[0].attributes", "{message}");
    let (message, field, _) =
        error(&text.replace("stream = \"upstream\"", "stream = \"downstream\"")).unwrap();
    assert_eq!(field, "method.faults[0].stream", "{message}");
    assert!(message.contains("needs stream = \"upstream\""), "{message}");
}

#[test]
fn toml_syntax_errors_have_a_location() {
    let (message, _, (line, _)) = error("title = \"x\"\n[method\n").unwrap();
    assert_eq!(line, 2, "{message}");
}

#[test]
fn unreadable_file() {
    let err = Experiment::load(std::path::Path::new("/nonexistent/x.toml")).unwrap_err();
    assert!(matches!(err, ExperimentError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/x.toml"));
}

/// Where an unknown key can be put, and the field path it then has.
const PLACES: &[(&str, &str)] = &[
    ("title = \"minimal\"", ""),
    ("[method]", "method."),
    ("action = \"pause\"", "method.faults[0]."),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_unknown_key_is_reported_where_it_is(key in "zz[a-z_]{1,12}", place in 0..PLACES.len()) {
        let (anchor, prefix) = PLACES[place];
        let text = MINIMAL.replace(anchor, &format!("{anchor}\n{key} = 1"));
        let (message, field, (line, column)) = error(&text).unwrap();
        prop_assert_eq!(field, format!("{prefix}{key}"));
        prop_assert_eq!(line, line_of(&text, &format!("{key} = 1")));
        prop_assert_eq!(column, 1);
        prop_assert!(message.contains(&format!("unknown field `{key}`")), "{}", message);
    }

    #[test]
    fn any_duration_round_trips(ms in 0u64..10_000_000) {
        let duration = Duration::from_millis(ms);
        let rendered = faultline_chaos::experiment::duration::render(duration);
        let text = MINIMAL.replace("at = \"1s\"", &format!("at = \"{rendered}\""))
            .replace("duration = \"2s\"", "");
        let experiment = parse(&text).unwrap();
        prop_assert_eq!(experiment.method.faults[0].at, duration);
    }

    #[test]
    fn garbage_never_panics(text in "\\PC{0,200}") {
        let _ = parse(&text);
    }
}

#[test]
fn allowed_alerts_need_a_reason_and_must_not_repeat_an_expected_one() {
    let allowed = |body: &str| {
        format!(
            "{MINIMAL}\n[[expected_alerts]]\nalert = \"Expected\"\nwithin = \"10s\"\n\n[[allowed_alerts]]\n{body}\n"
        )
    };
    let ok = parse(&allowed(
        "alert = \"TargetDown\"\nlabels = { job = \"orders\" }\nreason = \"the killed replica cannot be scraped\"",
    ))
    .unwrap();
    assert_eq!(ok.allowed_alerts.len(), 1);
    assert_eq!(ok.allowed_alerts[0].labels["job"], "orders");

    let (message, field, _) = error(&allowed("alert = \"TargetDown\"")).unwrap();
    assert_eq!(field, "allowed_alerts[0].reason", "{message}");
    let (message, field, _) = error(&allowed("alert = \"TargetDown\"\nreason = \" \"")).unwrap();
    assert_eq!(field, "allowed_alerts[0].reason", "{message}");
    let (message, field, _) = error(&allowed("alert = \"Expected\"\nreason = \"both\"")).unwrap();
    assert_eq!(field, "allowed_alerts[0].alert");
    assert!(message.contains("expected already"), "{message}");
}

#[test]
fn invariants_require_a_minimum_of_acknowledged_orders() {
    let text = format!(
        "{MINIMAL}\n[[after]]\nname = \"orders\"\ntype = \"invariant\"\ninvariant = \"acknowledged_orders_exist_once\"\n"
    );
    let default = parse(&text).unwrap();
    let ProbeKind::Invariant(probe) = &default.after[0].kind else {
        panic!("an invariant");
    };
    assert_eq!(probe.min_acknowledged, 1, "zero orders never pass");
    let explicit = parse(&text.replace(
        "invariant = \"acknowledged_orders_exist_once\"",
        "invariant = \"acknowledged_orders_exist_once\"\nmin_acknowledged = 50",
    ))
    .unwrap();
    let ProbeKind::Invariant(probe) = &explicit.after[0].kind else {
        panic!("an invariant");
    };
    assert_eq!(probe.min_acknowledged, 50);
}

#[test]
fn abort_conditions_parse_and_their_errors_are_located() {
    let text = format!(
        "{MINIMAL}{}",
        r#"
[[abort_when]]
name = "error ratio over 50%"
type = "sli"
metric = "error_ratio"
tolerance = { at_most = 0.5 }
every = "500ms"

[[abort_when]]
name = "something pages"
type = "alert"
severity = "page"
"#
    );
    let experiment = parse(&text).unwrap();
    assert_eq!(experiment.abort_when.len(), 2);
    assert_eq!(
        experiment.abort_when[0].every,
        Some(Duration::from_millis(500))
    );
    match &experiment.abort_when[1].kind {
        faultline_chaos::experiment::AbortKind::Alert(alert) => {
            assert_eq!(alert.all_labels()["severity"], "page");
        }
        other => panic!("{other:?}"),
    }

    // An unknown field inside the tagged table: its own line and column.
    let bad = text.replace("every = \"500ms\"", "evry = \"500ms\"");
    let (message, field, (line, column)) = error(&bad).unwrap();
    assert_eq!(field, "abort_when[0].evry", "{message}");
    assert_eq!((line, column), (line_of(&bad, "evry"), 1), "{message}");
    assert!(message.starts_with("test.toml:"), "{message}");

    // An alert condition with nothing to match would trip at once.
    let bad = text.replace("severity = \"page\"\n", "");
    let (message, field, (line, _)) = error(&bad).unwrap();
    assert_eq!(field, "abort_when[1].alert", "{message}");
    // The table's header, the line before its name.
    assert_eq!(line + 1, line_of(&bad, "something pages"), "{message}");

    // A bad tolerance, a duplicate name, a field of another kind.
    let bad = text.replace("{ at_most = 0.5 }", "{ range = [2, 1] }");
    assert_eq!(error(&bad).unwrap().1, "abort_when[0].tolerance.range");
    let bad = text.replace("something pages", "error ratio over 50%");
    assert_eq!(error(&bad).unwrap().1, "abort_when[1].name");
    let bad = text.replace(
        "severity = \"page\"",
        "severity = \"page\"\nmust = \"always\"",
    );
    assert_eq!(error(&bad).unwrap().1, "abort_when[1].must");
}
