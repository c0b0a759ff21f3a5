//! Host ports a test pins: a published port that must outlive a container's
//! restart (Docker maps a new one at each start otherwise), or one that a
//! compose file or a Swarm stack is told.
//!
//! They are chosen below the kernel's ephemeral range. Docker publishes an
//! unpinned port on a port from that range (its allocator reads
//! `ip_local_port_range`), and the kernel hands the same range to `bind(0)`
//! and to outgoing connections. So a port that `bind(0)` found free could be
//! given to another container a moment later: CI once failed to start a
//! container with "Bind for :::36177 failed: port is already allocated".
//! Below the range, only other pinned ports compete: each pick is random,
//! checked free on every address Docker binds, and never handed out twice by
//! one test process (a compose file's ports are all picked before any is
//! bound).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use rand::RngExt;

/// The lowest port picked: above the well-known and most registered
/// services' ports.
const FLOOR: u16 = 20_000;
/// Where the kernel's ephemeral range starts when it cannot be read.
const DEFAULT_EPHEMERAL_START: u16 = 32_768;
const EPHEMERAL_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The ports this process has handed out.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port that is free now on every address, outside the ports Docker and
/// the kernel pick by themselves.
pub fn free() -> anyhow::Result<u16> {
    free_range(1)
}

/// The first of `n` consecutive ports that are free now, as [`free`].
pub fn free_range(n: u16) -> anyhow::Result<u16> {
    let pinnable = pinnable(ephemeral_start());
    let n = n.max(1);
    anyhow::ensure!(
        pinnable.len() > usize::from(n) * 4,
        "too few ports below the kernel's ephemeral range ({EPHEMERAL_RANGE}) to pin {n}: {pinnable:?}"
    );
    let mut rng = rand::rng();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..200 {
        let first = rng.random_range(pinnable.start..pinnable.end - (n - 1));
        let ports = first..first + n;
        if handed_out.range(ports.clone()).next().is_none() && ports.clone().all(is_free) {
            handed_out.extend(ports);
            return Ok(first);
        }
    }
    anyhow::bail!("found no {n} consecutive free ports in {pinnable:?}")
}

/// The ports picked from, given where the ephemeral range starts.
fn pinnable(ephemeral_start: u16) -> Range<u16> {
    FLOOR..ephemeral_start.max(FLOOR)
}

fn ephemeral_start() -> u16 {
    std::fs::read_to_string(EPHEMERAL_RANGE)
        .context(EPHEMERAL_RANGE)
        .and_then(|text| parse_range_start(&text))
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

/// The first number of `ip_local_port_range` ("32768\t60999").
fn parse_range_start(text: &str) -> anyhow::Result<u16> {
    let first = text.split_whitespace().next().context("an empty range")?;
    first
        .parse()
        .with_context(|| format!("the range's start {first:?}"))
}

/// Free on the IPv4 and IPv6 wildcard addresses, which Docker binds for a
/// published port (IPv6 only where the host has it).
fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
        && match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
            Ok(_) => true,
            Err(err) => err.kind() == std::io::ErrorKind::AddrNotAvailable,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_picked_below_the_ephemeral_range() {
        assert_eq!(pinnable(32_768), 20_000..32_768);
        assert!(pinnable(1024).is_empty());
        for _ in 0..50 {
            let port = free().unwrap();
            assert!(pinnable(ephemeral_start()).contains(&port), "{port}");
        }
    }

    #[test]
    fn a_range_of_ports_is_free_from_its_first() {
        let first = free_range(3).unwrap();
        let taken: Vec<TcpListener> = (first..first + 3)
            .map(|port| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap())
            .collect();
        assert_eq!(taken.len(), 3);
    }

    #[test]
    fn no_port_is_handed_out_twice() {
        let mut seen = BTreeSet::new();
        for _ in 0..300 {
            let first = free_range(2).unwrap();
            assert!(seen.insert(first) && seen.insert(first + 1), "{first}");
        }
    }

    #[test]
    fn a_taken_port_is_not_free() {
        let port = free().unwrap();
        let _held = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
        assert!(!is_free(port));
    }

    #[test]
    fn the_range_start_is_read_from_the_kernel_format() {
        assert_eq!(parse_range_start("32768\t60999\n").unwrap(), 32_768);
        assert!(parse_range_start("").is_err());
        assert!(parse_range_start("low\t60999").is_err());
    }
}
