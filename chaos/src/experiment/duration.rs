//! humantime durations (`"30s"`, `"1m 30s"`, `"500ms"`) for serde.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses a humantime duration, naming the text on failure.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|err| {
        format!("invalid duration {text:?}: {err} (examples: \"500ms\", \"30s\", \"1m 30s\")")
    })
}

/// Renders a duration the way [`parse`] reads it.
pub fn render(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&render(*duration))
}

/// The same for `Option<Duration>`; use with `#[serde(default)]`.
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map(Some).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.serialize_str(&render(*duration)),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(render(Duration::from_secs(90)), "1m 30s");
        let err = parse("5 parsecs").unwrap_err();
        assert!(err.contains("5 parsecs"), "{err}");
    }
}
