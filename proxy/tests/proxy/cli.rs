//! `faultline proxy`'s arguments: the proxies file.

use faultline_proxy::NewProxy;
use faultline_proxy::cli::load_proxies;

fn config_file(proxies: &[NewProxy]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "faultline-proxy-test-{}-{}.json",
        std::process::id(),
        uuid_like()
    ));
    std::fs::write(&path, serde_json::to_vec(proxies).unwrap()).unwrap();
    path
}

fn uuid_like() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

#[test]
fn config_files_are_arrays_of_proxies() {
    let path = config_file(&[NewProxy::new("a", "127.0.0.1:0", "127.0.0.1:1")]);
    let proxies = load_proxies(&path).unwrap();
    assert_eq!(proxies[0].name, "a");
    assert!(proxies[0].enabled);
    std::fs::write(&path, b"{\"name\": \"a\"}").unwrap();
    let err = load_proxies(&path).unwrap_err().to_string();
    assert!(err.contains("not a JSON array"), "{err}");
    std::fs::remove_file(&path).unwrap();
}
