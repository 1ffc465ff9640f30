//! One-click unsubscribe from marketing email (RFC 8058): `POST /unsubscribe/{token}`, and
//! `GET` for a person who opens the link in a browser.
//!
//! The dispatcher puts a link of this API in every marketing email's `List-Unsubscribe`
//! header, with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`; the token inside names the
//! tenant and the recipient, sealed under the credential key ring ([`common::unsubscribe`]), so
//! no login is needed and none is possible: whoever holds the link may unsubscribe that one
//! address from that one tenant, and nothing else. The mail client's `POST` suppresses the
//! address at once (`unsubscribed`), audited once; a repeat answers the same and changes
//! nothing. A `GET` never unsubscribes (mail scanners follow links): it answers a page whose
//! button makes the `POST`. A token that was altered, made by another installation, or sealed
//! under a key no longer in the ring answers 404 `invalid_unsubscribe_token`.

use axum::extract::{Path, State};
use axum::response::Html;
use common::store::{AuditEntry, Suppression, SuppressionReason};
use common::unsubscribe::{self, Unsubscriber};
use serde_json::json;
use time::OffsetDateTime;

use crate::webhooks::count;
use crate::{ApiError, AppState};

/// The metric source of unsubscribe requests.
const SOURCE: &str = "unsubscribe";

/// Whom `token` unsubscribes, or 404 (counted) when it is not a valid token of a tenant that
/// still exists.
async fn unsubscriber(state: &AppState, token: &str) -> Result<Unsubscriber, ApiError> {
    let invalid = || {
        count(SOURCE, "invalid_token");
        ApiError::not_found("invalid_unsubscribe_token", "this unsubscribe link is not valid").with_field("token")
    };
    let whom = unsubscribe::open(&state.keyring, token).map_err(|_| invalid())?;
    if state.store.tenant(&whom.tenant_id).await?.is_none() {
        return Err(invalid());
    }
    Ok(whom)
}

/// `POST /unsubscribe/{token}`: suppresses the recipient the token names, for its tenant.
#[utoipa::path(
    operation_id = "unsubscribe_one_click",
    post,
    path = "/unsubscribe/{token}",
    tag = "unsubscribe",
    params(("token" = String, Path, description = "the token of the `List-Unsubscribe` link: it names the tenant and the recipient, sealed")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`List-Unsubscribe=One-Click` (RFC 8058); not required"),
    responses(
        (status = 200, description = "the recipient is unsubscribed (also when it already was)", content_type = "text/html", body = String),
        (status = 404, description = "invalid_unsubscribe_token: altered, from another installation, sealed under a key no longer in the ring, or its tenant is gone", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn one_click(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Html<String>, ApiError> {
    let whom = unsubscriber(&state, &token).await?;
    let already = state.store.suppression(&whom.tenant_id, &whom.address).await?;
    if already.is_some() {
        count(SOURCE, "repeated");
        return Ok(page("You are unsubscribed", "You will not get these emails any more."));
    }
    let now = OffsetDateTime::now_utc();
    state
        .store
        .suppress(&Suppression {
            tenant_id: whom.tenant_id.clone(),
            address: whom.address.clone(),
            reason: SuppressionReason::Unsubscribed,
            source: Some("list_unsubscribe".to_owned()),
            created_at: now,
        })
        .await?;
    state
        .store
        .append_audit(&AuditEntry {
            tenant_id: Some(whom.tenant_id.clone()),
            at: now,
            actor: "recipient".to_owned(),
            action: "suppression.unsubscribed".to_owned(),
            detail: json!({ "address": whom.address, "channel": "email", "via": "list_unsubscribe" }),
        })
        .await?;
    count(SOURCE, "applied");
    tracing::info!(tenant = %whom.tenant_id, "recipient unsubscribed by one-click link");
    Ok(page("You are unsubscribed", "You will not get these emails any more."))
}

/// `GET /unsubscribe/{token}`: a page asking the person to confirm; changes nothing.
#[utoipa::path(
    operation_id = "unsubscribe_page",
    get,
    path = "/unsubscribe/{token}",
    tag = "unsubscribe",
    params(("token" = String, Path, description = "the token of the `List-Unsubscribe` link")),
    responses(
        (status = 200, description = "a page asking to confirm, whose button POSTs to the same URL; nothing is changed", content_type = "text/html", body = String),
        (status = 404, description = "invalid_unsubscribe_token: the link is not valid", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Html<String>, ApiError> {
    unsubscriber(&state, &token).await?;
    // The form posts to this same URL: the token never needs to be written into the page.
    Ok(page(
        "Unsubscribe",
        "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe from these emails</button></form>",
    ))
}

/// A minimal page: a title and a body of trusted markup.
fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title></head>\
         <body><h1>{title}</h1><div>{body}</div></body></html>"
    ))
}
