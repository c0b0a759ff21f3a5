//! On/off switches for parts of the telemetry, read from the environment, so
//! that what each part costs can be measured (see `BENCHMARKS.md`):
//!
//! - `FAULTLINE_METRICS=off`: no metrics recorder is installed; the metric
//!   macros do nothing and `/metrics` renders an empty page;
//! - `FAULTLINE_LOGS=off`: no log lines; spans are still made (and exported
//!   unless `OTEL_SDK_DISABLED=true`).
//!
//! Unset or empty means on. Tracing has its standard switches already:
//! `OTEL_SDK_DISABLED=true` / `OTEL_TRACES_EXPORTER=none`, and `RUST_LOG=off`.

/// The metrics switch.
pub const METRICS: &str = "FAULTLINE_METRICS";

/// The log-lines switch.
pub const LOGS: &str = "FAULTLINE_LOGS";

/// A switch set to something other than on or off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?} is not a switch: use on or off")]
pub struct InvalidSwitch {
    pub name: &'static str,
    pub value: String,
}

/// Whether the switch `name` is on (the default).
pub fn enabled(name: &'static str) -> Result<bool, InvalidSwitch> {
    parse(name, std::env::var(name).ok().as_deref())
}

/// `on`, `true`, `1` (or nothing) are on; `off`, `false`, `0` are off; any case.
pub fn parse(name: &'static str, value: Option<&str>) -> Result<bool, InvalidSwitch> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(true);
    };
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(InvalidSwitch {
            name,
            value: value.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_is_on() {
        assert_eq!(parse(METRICS, None), Ok(true));
        assert_eq!(parse(METRICS, Some("  ")), Ok(true));
    }

    #[test]
    fn on_and_off_in_any_case() {
        for on in ["on", "ON", "true", "1", " On "] {
            assert_eq!(parse(LOGS, Some(on)), Ok(true), "{on}");
        }
        for off in ["off", "OFF", "false", "0"] {
            assert_eq!(parse(LOGS, Some(off)), Ok(false), "{off}");
        }
    }

    #[test]
    fn anything_else_is_an_error_naming_the_switch() {
        let err = parse(METRICS, Some("of")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"FAULTLINE_METRICS="of" is not a switch: use on or off"#
        );
    }
}
