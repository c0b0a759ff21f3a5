//! The memory limit of the cgroup the process runs in (a container's
//! `mem_limit`), rendered as `process_resident_memory_limit_bytes` beside
//! `process_resident_memory_bytes`, so that "how close to being OOM-killed"
//! is one division. Absent when there is no limit or it cannot be read.
//!
//! - cgroup v2: `/sys/fs/cgroup/memory.max`, where `max` means no limit;
//! - cgroup v1: `/sys/fs/cgroup/memory/memory.limit_in_bytes`, where no limit
//!   reads as a huge number (`i64::MAX` rounded down to a page), so anything
//!   from 2^62 up means none.
//!
//! Both paths are the container's own view (Docker gives each container its
//! own cgroup namespace or mounts its cgroup there). The v2 file wins when it
//! exists.

/// The gauge's name.
pub const MEMORY_LIMIT: &str = "process_resident_memory_limit_bytes";

/// cgroup v2's limit file.
pub const V2_MEMORY_MAX: &str = "/sys/fs/cgroup/memory.max";

/// cgroup v1's limit file.
pub const V1_LIMIT_IN_BYTES: &str = "/sys/fs/cgroup/memory/memory.limit_in_bytes";

/// cgroup v1 values from here up mean "no limit".
const V1_UNLIMITED_FROM: u64 = 1 << 62;

/// Parses cgroup v2's `memory.max`: bytes, or `max` for no limit.
pub fn parse_v2(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        bytes => bytes.parse().ok(),
    }
}

/// Parses cgroup v1's `memory.limit_in_bytes`: bytes, 2^62 and up for no limit.
pub fn parse_v1(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|bytes| *bytes < V1_UNLIMITED_FROM)
}

/// The limit from the two files' contents (`None`: the file could not be
/// read); the v2 file decides when it was read.
pub fn memory_limit(v2: Option<&str>, v1: Option<&str>) -> Option<u64> {
    match v2 {
        Some(text) => parse_v2(text),
        None => v1.and_then(parse_v1),
    }
}

/// Reads this process's memory limit; `None` when unlimited or unreadable.
pub fn read_memory_limit() -> Option<u64> {
    let v2 = std::fs::read_to_string(V2_MEMORY_MAX).ok();
    let v1 = match v2 {
        Some(_) => None,
        None => std::fs::read_to_string(V1_LIMIT_IN_BYTES).ok(),
    };
    memory_limit(v2.as_deref(), v1.as_deref())
}

/// Sets the gauge when there is a limit. A limit that goes away later keeps
/// its last value: the recorder cannot drop a series.
pub fn record_memory_limit() {
    if let Some(bytes) = read_memory_limit() {
        // Limits are far below 2^53 bytes, where f64 stops being exact.
        metrics::gauge!(MEMORY_LIMIT).set(bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB_128: u64 = 128 * 1024 * 1024;

    #[test]
    fn v2_reads_bytes_and_max_is_no_limit() {
        assert_eq!(parse_v2("134217728\n"), Some(MIB_128));
        assert_eq!(parse_v2("max\n"), None);
        assert_eq!(parse_v2(""), None);
        assert_eq!(parse_v2("garbage"), None);
    }

    #[test]
    fn v1_reads_bytes_and_huge_values_are_no_limit() {
        assert_eq!(parse_v1("134217728\n"), Some(MIB_128));
        // What an unlimited cgroup v1 reports on x86-64 (i64::MAX rounded to 4 KiB).
        assert_eq!(parse_v1("9223372036854771712\n"), None);
        assert_eq!(parse_v1(&(1_u64 << 62).to_string()), None);
        assert_eq!(
            parse_v1(&((1_u64 << 62) - 1).to_string()),
            Some((1 << 62) - 1)
        );
        assert_eq!(parse_v1("-1"), None);
        assert_eq!(parse_v1(""), None);
    }

    #[test]
    fn the_v2_file_wins_when_it_was_read() {
        assert_eq!(memory_limit(Some("max"), Some("134217728")), None);
        assert_eq!(memory_limit(Some("1048576"), None), Some(1_048_576));
        assert_eq!(memory_limit(None, Some("134217728")), Some(MIB_128));
        assert_eq!(memory_limit(None, None), None);
    }

    #[test]
    fn the_gauge_is_rendered_exactly_when_there_is_a_limit() {
        let metrics = crate::Metrics::install().unwrap();
        let page = metrics.render();
        let rendered = page
            .lines()
            .any(|line| line.starts_with(&format!("{MEMORY_LIMIT} ")));
        assert_eq!(rendered, read_memory_limit().is_some(), "{page}");
        if read_memory_limit().is_none() {
            assert!(!page.contains(MEMORY_LIMIT), "{page}");
        }
    }
}
