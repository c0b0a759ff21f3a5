//! `ApiJson<T>`: axum's JSON extractor, with every rejection answered as
//! problem+json and a message that says what was wrong.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;

/// A JSON body; malformed input gets a 4xx problem, never a 5xx.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(body_rejection(problem_for(&rejection))),
        }
    }
}

fn problem_for(rejection: &JsonRejection) -> Problem {
    let status = match rejection {
        JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
        JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        other => other.status(),
    };
    // The body text of axum's rejection names the field and the reason.
    Problem::new(status).with_detail(rejection.body_text())
}

/// A path parameter; a malformed one gets a 400 problem naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    axum::extract::Path<T>:
        axum::extract::FromRequestParts<S, Rejection = axum::extract::rejection::PathRejection>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => {
                Err(Problem::new(StatusCode::BAD_REQUEST).with_detail(rejection.body_text()))
            }
        }
    }
}

/// A raw body within the body limit; an oversize one gets a 413 problem.
#[derive(Debug, Clone, Default)]
pub struct ApiBytes(pub bytes::Bytes);

impl<S> FromRequest<S> for ApiBytes
where
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match bytes::Bytes::from_request(request, state).await {
            Ok(body) => Ok(Self(body)),
            Err(rejection) => Err(body_rejection(
                Problem::new(rejection.status()).with_detail(rejection.body_text()),
            )),
        }
    }
}

/// The response to a body that could not be taken. An oversize body was left
/// unread, so the server closes the connection after answering: saying so
/// (`Connection: close`) keeps the client from sending its next request on a
/// connection that is about to go away.
fn body_rejection(problem: Problem) -> Response {
    let too_large = problem.status_code() == StatusCode::PAYLOAD_TOO_LARGE;
    let mut response = problem.into_response();
    if too_large {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversize_body_closes_the_connection() {
        let response = body_rejection(Problem::new(StatusCode::PAYLOAD_TOO_LARGE));
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let response = body_rejection(Problem::new(StatusCode::BAD_REQUEST));
        assert!(response.headers().get(header::CONNECTION).is_none());
    }
}
