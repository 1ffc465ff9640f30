//! A tenant's inbound messages (`GET /v1/inbound`): what recipients sent to its numbers over
//! SMS and WhatsApp, kept by the Twilio inbound webhook (`webhooks::twilio`), newest first.

use axum::Json;
use axum::extract::{Query, State};
use common::Channel;
use common::store::InboundMessage;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::TenantCaller;
use crate::{ApiError, AppState};

/// The most messages one page answers.
const MAX_PAGE: usize = 1_000;

/// An inbound message, as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct InboundView {
    /// The provider's id (Twilio's `MessageSid`).
    pub provider_message_id: String,
    /// `sms` or `whatsapp`.
    pub channel: Channel,
    /// Who wrote (E.164).
    pub from: String,
    /// The tenant's number written to, as the provider gave it.
    pub to: Option<String>,
    /// What it says (empty for media alone).
    pub body: String,
    /// Its media, as the provider's URLs.
    pub media_urls: Vec<String>,
    /// When it arrived (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

impl From<InboundMessage> for InboundView {
    fn from(message: InboundMessage) -> Self {
        Self {
            provider_message_id: message.provider_id,
            channel: message.channel,
            from: message.from,
            to: message.to,
            body: message.body,
            media_urls: message.media_urls,
            received_at: message.received_at,
        }
    }
}

/// A page of inbound messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct InboundPage {
    /// Newest first.
    pub messages: Vec<InboundView>,
    /// Give it as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// `GET /v1/inbound` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InboundQuery {
    /// Where the previous page ended: its `next_cursor`.
    #[param(pattern = "^[0-9]{1,14}-[A-Za-z0-9]{1,64}$")]
    pub cursor: Option<String>,
    /// How many (default 100, at most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// `GET /v1/inbound`: the tenant's inbound messages, newest first, a page at a time.
#[utoipa::path(
    operation_id = "inbound_list",
    get,
    path = "/v1/inbound",
    tag = "consent",
    params(InboundQuery),
    responses(
        (status = 200, description = "a page of inbound messages, newest first", body = InboundPage),
        (status = 400, description = "the query string does not parse", body = String, content_type = "text/plain"),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: limit is not 1 to 1,000, or cursor is not a page's next_cursor", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: TenantCaller,
    Query(query): Query<InboundQuery>,
) -> Result<Json<InboundPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_PAGE}")));
    }
    let cursor = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let before = cursor.as_ref().map(|(at, id)| (*at, id.as_str()));
    let page = state.store.inbound_messages(&caller.tenant_id, before, limit).await?;
    let next_cursor = (page.len() == limit)
        .then(|| {
            page.last().map(|last| {
                format!(
                    "{}-{}",
                    last.received_at.unix_timestamp_nanos() / 1_000_000,
                    last.provider_id
                )
            })
        })
        .flatten();
    Ok(Json(InboundPage {
        messages: page.into_iter().map(InboundView::from).collect(),
        next_cursor,
    }))
}

/// A page's position: the arrival (unix milliseconds) and provider id of its last message.
fn parse_cursor(raw: &str) -> Result<(OffsetDateTime, String), ApiError> {
    let invalid = || ApiError::invalid("cursor", "must be a page's next_cursor");
    let (ms, id) = raw.split_once('-').ok_or_else(invalid)?;
    let ms: i64 = ms.parse().map_err(|_| invalid())?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(|_| invalid())?;
    if id.is_empty() || !id.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
        return Err(invalid());
    }
    Ok((at, id.to_owned()))
}
