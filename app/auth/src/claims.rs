//! What a token says, and who it says the caller is.

use serde::{Deserialize, Serialize};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Places orders and reads their own.
    Customer,
    /// Reads every order.
    Admin,
}

impl Role {
    /// The claim's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Self::Customer),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected customer or admin"
            )),
        }
    }
}

/// The claims of a faultline token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    /// Seconds since the epoch.
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
}

/// The longest subject accepted: it is stored with every order and keys the
/// rate limit.
pub const MAX_SUBJECT_LEN: usize = 128;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub subject: String,
    pub role: Role,
}

impl Identity {
    /// A subject is 1 to [`MAX_SUBJECT_LEN`] characters, none of them a
    /// control character.
    pub fn valid_subject(subject: &str) -> bool {
        !subject.is_empty()
            && subject.chars().count() <= MAX_SUBJECT_LEN
            && !subject.chars().any(char::is_control)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_ones_are_named() {
        for role in [Role::Customer, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.contains("root"), "{err}");
    }

    #[test]
    fn subjects_are_bounded_and_printable() {
        assert!(Identity::valid_subject("alice"));
        assert!(!Identity::valid_subject(""));
        assert!(!Identity::valid_subject("a\nb"));
        assert!(!Identity::valid_subject(&"x".repeat(MAX_SUBJECT_LEN + 1)));
    }
}
