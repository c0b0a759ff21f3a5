//! RFC 9457 problem details: every error response is `application/problem+json`.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer: status, a short title, and a detail a human can act on.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(
    description = "An RFC 9457 problem: the body of every error answer, served as application/problem+json.",
    example = json!({"type": "about:blank", "title": "Unprocessable Entity", "status": 422, "detail": "items[0]: quantity must be between 1 and 100, got 0"})
)]
pub struct Problem {
    /// A URI reference naming the problem type; `about:blank` when the
    /// status says it all.
    #[serde(rename = "type")]
    #[schema(format = "uri-reference", example = "about:blank")]
    pub kind: String,
    /// The status's reason phrase.
    #[schema(example = "Unprocessable Entity")]
    pub title: String,
    /// The HTTP status code of the answer.
    #[schema(format = Int32, minimum = 400, maximum = 599, example = 422)]
    pub status: u16,
    /// What went wrong, for a human: which value, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
}

impl Problem {
    /// A problem with `about:blank` type and the status's canonical reason as title.
    pub fn new(status: StatusCode) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
        }
    }

    /// Adds the human-readable explanation.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 404 for a path no route serves.
    pub fn not_found(path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND).with_detail(format!("no resource at {path}"))
    }

    /// The HTTP status the problem is answered with.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// The fallback handler of every router: a 404 problem naming the path.
pub async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(uri.path())
}

/// The handler of a known path asked with a method it does not serve: a 405
/// problem (axum adds the `Allow` header).
pub async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED)
        .with_detail(format!("{method} is not allowed on {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_problem_json() {
        let response = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("database: timed out")
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn serialises_the_rfc_fields() {
        let problem = Problem::new(StatusCode::NOT_FOUND).with_detail("no resource at /x");
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["type"], "about:blank");
        assert_eq!(json["title"], "Not Found");
        assert_eq!(json["status"], 404);
        assert_eq!(json["detail"], "no resource at /x");
    }

    #[tokio::test]
    async fn a_method_a_route_does_not_serve_is_a_405_problem_with_allow() {
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route("/x", axum::routing::get(|| async { "x" }))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed);
        let response = app
            .oneshot(
                axum::http::Request::put("/x")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(
            response.headers().contains_key(header::ALLOW),
            "{response:?}"
        );
    }
}
