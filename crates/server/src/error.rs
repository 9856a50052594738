//! Every refusal the API gives: a status and a JSON body that says what was wrong, in
//! words, and never what the caller may not see.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shopgraph_assistant::AssistantError;
use shopgraph_store::StoreError;
use utoipa::ToSchema;

/// The body of every error: `{"error": {"code": "…", "message": "…"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `bad_request`, `unauthorized`, `forbidden`, `not_found`, ….
    pub code: &'static str,
    /// For people.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// A fault of ours: logged in full, answered without detail.
    pub fn internal(what: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {what}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "something went wrong on our side")
    }

    fn code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let body = ErrorBody { error: ErrorDetail { code, message: self.message } };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::UnknownUser(_)
            | StoreError::UnknownConversation(_)
            | StoreError::UnknownProduct(_)
            | StoreError::UnknownInterest(_) => ApiError::not_found(e.to_string()),
            e if e.is_user_error() => ApiError::bad_request(e.to_string()),
            // The database is down or restarting: the caller may retry, and hears so
            // at once rather than after a hang.
            StoreError::Unavailable(e) => {
                tracing::warn!("the database is unavailable: {e}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable for a moment; try again shortly",
                )
            }
            StoreError::CannotWrite(why) => {
                tracing::error!("the database cannot write: {why}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the database cannot write ({why}); nothing was saved: try again later"
                    ),
                )
            }
            e => ApiError::internal(e),
        }
    }
}

impl From<AssistantError> for ApiError {
    fn from(e: AssistantError) -> ApiError {
        match e {
            AssistantError::BadInput(why) => ApiError::bad_request(why),
            // Someone else's conversation reads as no conversation: nothing leaks.
            AssistantError::NoConversation(_) | AssistantError::NotYours(_) => {
                ApiError::not_found("no such conversation")
            }
            AssistantError::Store(e) => e.into(),
            e => ApiError::internal(e),
        }
    }
}

impl From<shopgraph_graph::QueryError> for ApiError {
    fn from(e: shopgraph_graph::QueryError) -> ApiError {
        match e {
            shopgraph_graph::QueryError::UnknownNode(_) => ApiError::not_found(e.to_string()),
            shopgraph_graph::QueryError::TooBig { .. } => ApiError::bad_request(e.to_string()),
            shopgraph_graph::QueryError::Timeout(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

/// A count a caller may give (`n`, `k`, `limit`, …): `default` when absent, else it must
/// lie in `1..=max`, or the refusal names it and its bounds.
pub fn bounded(
    name: &str,
    value: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match value.unwrap_or(default) {
        v @ 1.. if v <= max => Ok(v),
        v => Err(ApiError::bad_request(format!("{name} must be 1 to {max}, got {v}"))),
    }
}

/// A JSON body; a malformed one, one of the wrong shape, the wrong content type or an
/// oversize one is refused with the matching status and the parser's own words.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let message = match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON, sent with Content-Type: application/json".to_owned()
        }
        JsonRejection::BytesRejection(_) => {
            "the body is larger than this server accepts".to_owned()
        }
        other => other.body_text(),
    };
    ApiError::new(rejection.status(), message)
}

/// Query parameters; wrong ones are a 400 that names them.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}
