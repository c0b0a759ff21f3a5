//! `faultline-shop probe URL`: a container healthcheck for images without curl.

use std::time::Duration;

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
}

/// GETs `url` and succeeds on any 2xx answer within `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let request_error = |source| ProbeError::Request {
        url: url.to_owned(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(request_error)?;
    let response = client.get(url).send().await.map_err(request_error)?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(ProbeError::Status {
            url: url.to_owned(),
            status,
        })
    }
}
