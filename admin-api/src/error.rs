//! The API's error responses: `{"error": {"code", "message", "field"}}` with stable codes (and
//! `next_action` when the tenant must do something first).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::store::StoreError;
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// A human-readable explanation.
    pub message: String,
    /// The offending field, if one is to blame.
    pub field: Option<String>,
    /// Every failing field with its reason, when several are checked at once.
    pub fields: Box<[FieldError]>,
    /// When to try again, answered as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
    /// What the tenant must do first, as `common::readiness` codes it (`WAIT_FOR_APPROVAL`).
    pub next_action: Option<&'static str>,
}

/// One failing field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name (dotted for nested fields).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The body of an error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// The error.
    pub error: ErrorDetail<'a>,
}

/// One error: its code, message and field.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// A stable, machine-readable code.
    pub code: &'a str,
    /// A human-readable explanation.
    pub message: &'a str,
    /// The offending field, if one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// Every failing field, when several were checked.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub fields: &'a [FieldError],
    /// What the tenant must do first (a channel not ready: `WAIT_FOR_APPROVAL`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action: Option<&'a str>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            fields: Box::default(),
            retry_after: None,
            next_action: None,
        }
    }

    /// The same error, naming what the tenant must do first.
    pub fn with_next_action(mut self, code: &'static str) -> Self {
        self.next_action = Some(code);
        self
    }

    /// The same error, telling the client when to try again.
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// 422: every field in `fields` is invalid (the first one is also `field`).
    pub fn invalid_fields(fields: Vec<FieldError>) -> Self {
        let message = match fields.as_slice() {
            [one] => one.message.clone(),
            many => format!("{} fields are invalid", many.len()),
        };
        let mut error = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message);
        error.field = fields.first().map(|first| first.field.clone());
        error.fields = fields.into_boxed_slice();
        error
    }

    /// The same error, blaming `field`.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 401: no valid API key.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required in the Authorization header as 'Bearer <key>'",
        )
    }

    /// 404: nothing of that id is visible to the caller.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 400: the body is not the JSON expected.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    /// 422: a field is invalid.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                fields: &self.fields,
                next_action: self.next_action,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "store request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store is unavailable; retry later",
        )
    }
}

impl From<common::log::LogError> for ApiError {
    fn from(err: common::log::LogError) -> Self {
        tracing::error!(error = %err, "message log append failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "log_unavailable",
            "the message log is unavailable; retry later",
        )
    }
}
