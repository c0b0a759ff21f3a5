//! PostgreSQL write-ahead log positions (`pg_lsn`): parsed, compared and
//! printed as PostgreSQL does (`16/B374D848`).

use std::fmt;
use std::str::FromStr;

/// A position in the write-ahead log. Positions only grow, so comparing two
/// tells which one a server that replayed up to the first has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// A text that is not a `pg_lsn`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a WAL position (expected two hexadecimal numbers, as in 16/B374D848)")]
pub struct LsnParseError(String);

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || LsnParseError(text.chars().take(64).collect());
        let (high, low) = text.trim().split_once('/').ok_or_else(invalid)?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 {
                return Err(invalid());
            }
            u32::from_str_radix(part, 16).map_err(|_| invalid())
        };
        Ok(Self((u64::from(half(high)?) << 32) | u64::from(half(low)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_as_postgresql_does() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn, Lsn(0x16_B374_D848));
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert_eq!(" 0/1a ".parse::<Lsn>().unwrap().to_string(), "0/1A");
    }

    #[test]
    fn orders_positions_by_the_whole_64_bits() {
        let a: Lsn = "0/FFFFFFFF".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert!(a < b);
    }

    #[test]
    fn rejects_what_is_not_a_position() {
        for text in [
            "",
            "16",
            "/1",
            "1/",
            "G/1",
            "1/2/3",
            "123456789/0",
            "-1/0",
            "1 / 2",
        ] {
            let err = text.parse::<Lsn>().unwrap_err();
            assert!(
                err.to_string().contains("not a WAL position"),
                "{text}: {err}"
            );
        }
    }
}
