//! `Faultline-Read-After-Lsn`: the write a catalog read must reflect.

use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::headers::READ_AFTER_LSN;
use crate::problem::Problem;
use crate::read_replica::Lsn;

/// The WAL position a read must reflect, if the caller named one; a
/// malformed header is a 400 problem naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadAfter(pub Option<Lsn>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ReadAfter {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(&READ_AFTER_LSN) else {
            return Ok(Self(None));
        };
        let bad = |why: String| {
            Problem::new(StatusCode::BAD_REQUEST).with_detail(format!("{READ_AFTER_LSN}: {why}"))
        };
        let text = value
            .to_str()
            .map_err(|_| bad("not visible ASCII".to_owned()))?;
        text.parse()
            .map(|lsn| Self(Some(lsn)))
            .map_err(|err| bad(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::FromRequestParts;
    use axum::http::Request;

    use super::*;

    async fn extract(header: Option<&str>) -> Result<ReadAfter, Problem> {
        let mut request = Request::builder();
        if let Some(value) = header {
            request = request.header(READ_AFTER_LSN, value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        ReadAfter::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn reads_the_position_or_nothing() {
        assert_eq!(extract(None).await.unwrap().0, None);
        assert_eq!(
            extract(Some("0/16B3748")).await.unwrap().0,
            Some(Lsn(0x16B_3748))
        );
    }

    #[tokio::test]
    async fn a_malformed_position_is_a_client_error() {
        let problem = extract(Some("yesterday")).await.unwrap_err();
        assert_eq!(problem.status_code(), StatusCode::BAD_REQUEST);
    }
}
