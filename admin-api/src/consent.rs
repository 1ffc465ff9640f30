//! A tenant's consent records: its suppressed recipients (`GET` and `POST /v1/suppressions`,
//! `DELETE /v1/suppressions/{address}`, `POST /v1/suppressions/import`) and opt-ins with their
//! proof (`POST` and `GET /v1/consents`).
//!
//! A suppression is by address: an email address, or a phone number for SMS and WhatsApp
//! alike (a STOP on one stops both). Admission refuses a suppressed recipient with
//! `RECIPIENT_SUPPRESSED`, whoever added it: the recipient (STOP, one-click unsubscribe), the
//! provider (bounces, complaints, Twilio 21610), the tenant here, or `import legacy`. A consent
//! records an opt-in per channel: where it was given, when, and the wording shown. Every change
//! is audited, with the reason given for a removal.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use common::rules;
use common::store::{Consent, Suppression, SuppressionReason};
use common::{Channel, Recipient, TenantId};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::TenantCaller;
use crate::form::{self, Field, Kind};
use crate::{ApiError, AppState};

/// The most suppressions one page answers.
const MAX_PAGE: usize = 1_000;
/// The most rows one import reads; the rest of the body is refused.
pub(crate) const MAX_IMPORT_ROWS: usize = 100_000;
/// The longest line of an import, in bytes.
const MAX_LINE_BYTES: usize = 2_048;
/// Rows written per store round trip of an import.
const IMPORT_BATCH: usize = 500;

/// A recipient as stored: an E.164 number or a canonical email address.
fn canonical(raw: &str) -> Result<String, String> {
    rules::RECIPIENT.check(raw).map_err(str::to_owned)?;
    let channel = if raw.contains('@') {
        Channel::Email
    } else {
        Channel::Sms
    };
    Recipient::parse(channel, raw)
        .map(|recipient| recipient.as_str().to_owned())
        .map_err(|error| error.to_string())
}

/// A suppressed recipient, as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SuppressionView {
    /// The address: an E.164 number (SMS and WhatsApp) or an email address.
    pub address: String,
    /// Why: `opt_out`, `provider_unsubscribed`, `bounce`, `complaint`, `unsubscribed` or `manual`.
    #[schema(value_type = String, example = "manual")]
    pub reason: SuppressionReason,
    /// What proves it (the keyword, the provider's id, the note given here).
    pub source: Option<String>,
    /// Since when (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<Suppression> for SuppressionView {
    fn from(suppression: Suppression) -> Self {
        Self {
            address: suppression.address,
            reason: suppression.reason,
            source: suppression.source,
            created_at: suppression.created_at,
        }
    }
}

/// A page of suppressions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SuppressionPage {
    /// In address order.
    pub suppressions: Vec<SuppressionView>,
    /// Give it as `after` for the next page; absent on the last one.
    pub next_after: Option<String>,
}

/// `GET /v1/suppressions` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// The last address of the previous page.
    pub after: Option<String>,
    /// How many (default 100, at most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// `GET /v1/suppressions`: the tenant's suppressed recipients, a page at a time.
#[utoipa::path(
    operation_id = "suppressions_list",
    get,
    path = "/v1/suppressions",
    tag = "consent",
    params(PageQuery),
    responses(
        (status = 200, description = "a page of suppressions in address order", body = SuppressionPage),
        (status = 400, description = "the query string does not parse", body = String, content_type = "text/plain"),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: limit is not 1 to 1,000", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: TenantCaller,
    Query(query): Query<PageQuery>,
) -> Result<Json<SuppressionPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_PAGE}")));
    }
    let page = state
        .store
        .suppressions(&caller.tenant_id, query.after.as_deref(), limit)
        .await?;
    let next_after = (page.len() == limit)
        .then(|| page.last().map(|last| last.address.clone()))
        .flatten();
    Ok(Json(SuppressionPage {
        suppressions: page.into_iter().map(SuppressionView::from).collect(),
        next_after,
    }))
}

/// `POST /v1/suppressions` fields.
const SUPPRESSION_FIELDS: [Field; 2] = [
    Field::text(
        "address",
        &rules::RECIPIENT,
        true,
        "The recipient: an E.164 number (SMS and WhatsApp) or an email address.",
    ),
    Field::text("note", &rules::LINE, false, "Why, kept as the suppression's source."),
];

crate::openapi::body!(
    /// `POST /v1/suppressions` body.
    SuppressionRequest => crate::openapi::form_schema("A recipient to suppress.", &SUPPRESSION_FIELDS)
);

/// `POST /v1/suppressions`: suppresses a recipient (reason `manual`); 201, or 200 with the
/// suppression already there (left as it is).
#[utoipa::path(
    operation_id = "suppressions_add",
    post,
    path = "/v1/suppressions",
    tag = "consent",
    request_body(content = SuppressionRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "suppressed", body = SuppressionView),
        (status = 200, description = "already suppressed; unchanged", body = SuppressionView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: every failing field is listed in `fields`", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn add(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Bytes,
) -> Result<(StatusCode, Json<SuppressionView>), ApiError> {
    let fields = form::parse(&body, &SUPPRESSION_FIELDS)?;
    let address = canonical(&fields.required("address")?).map_err(|error| ApiError::invalid("address", error))?;
    if let Some(existing) = state.store.suppression(&caller.tenant_id, &address).await? {
        return Ok((StatusCode::OK, Json(existing.into())));
    }
    let suppression = manual(&caller.tenant_id, address, fields.text("note"));
    state.store.suppress(&suppression).await?;
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "suppression.added",
        json!({ "address": suppression.address, "note": suppression.source }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(suppression.into())))
}

fn manual(tenant: &TenantId, address: String, note: Option<String>) -> Suppression {
    Suppression {
        tenant_id: tenant.clone(),
        address,
        reason: SuppressionReason::Manual,
        source: note,
        created_at: now_ms(),
    }
}

/// Now, to the millisecond the store keeps, so that an answer matches a later read.
fn now_ms() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(now)
}

/// `DELETE /v1/suppressions/{address}` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RemoveQuery {
    /// Why the recipient may be written to again (audited): 1 to 255 characters on one line.
    #[param(min_length = 1, max_length = 255, pattern = r"^[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$")]
    pub reason: String,
}

/// `DELETE /v1/suppressions/{address}?reason=...`: lifts a suppression; 204.
#[utoipa::path(
    operation_id = "suppressions_remove",
    delete,
    path = "/v1/suppressions/{address}",
    tag = "consent",
    params(("address" = String, Path, description = "the suppressed address"), RemoveQuery),
    responses(
        (status = 204, description = "lifted"),
        (status = 400, description = "the query string does not parse (`reason` is required)", body = String, content_type = "text/plain"),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "not_suppressed: the address is not suppressed", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: the reason is empty or too long", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(address): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    rules::LINE
        .check(&query.reason)
        .map_err(|hint| ApiError::invalid("reason", hint))?;
    let not_suppressed = || ApiError::not_found("not_suppressed", "the address is not suppressed");
    let address = canonical(&address).map_err(|_| not_suppressed())?;
    if !state.store.unsuppress(&caller.tenant_id, &address).await? {
        return Err(not_suppressed());
    }
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "suppression.removed",
        json!({ "address": address, "reason": query.reason }),
    )
    .await?;
    tracing::info!(tenant = %caller.tenant_id, "suppression lifted");
    Ok(StatusCode::NO_CONTENT)
}

/// What became of one row of an import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SuppressionImportRow {
    /// The row's number in the file (the first line is 1).
    pub row: usize,
    /// The address as given.
    pub address: String,
    /// `added`, `already` (suppressed before) or `invalid`.
    pub outcome: &'static str,
    /// Why it is invalid.
    pub error: Option<String>,
}

/// An import's report.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct SuppressionImport {
    /// Rows read (the header and blank lines aside).
    pub rows: usize,
    /// Rows suppressed now.
    pub added: usize,
    /// Rows already suppressed.
    pub already: usize,
    /// Rows refused.
    pub invalid: usize,
    /// Every row, in order.
    pub results: Vec<SuppressionImportRow>,
}

crate::openapi::body!(
    /// `POST /v1/suppressions/import` body.
    SuppressionCsv => utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(
            "CSV: `address[,note]` per line (a first line `address[,note]` is a header), at least one \
             address an E.164 number or an email address; a note follows the rule of a line of text.",
        ))
        .pattern(Some(csv_pattern()))
        .into()
);

/// What [`SuppressionCsv`] publishes: some line starts with an address.
fn csv_pattern() -> String {
    let address = rules::RECIPIENT.pattern.trim_start_matches('^').trim_end_matches('$');
    format!(r"(^|\n){address}(,|\r?\n|$)")
}

/// `POST /v1/suppressions/import`: suppresses the recipients of a CSV body (`address` then an
/// optional `note` per line; a first line `address[,note]` is a header), read as it streams in,
/// up to 100,000 rows; answers what became of every row.
#[utoipa::path(
    operation_id = "suppressions_import",
    post,
    path = "/v1/suppressions/import",
    tag = "consent",
    request_body(content = SuppressionCsv, content_type = "text/csv"),
    responses(
        (status = 200, description = "every row's outcome", body = SuppressionImport),
        (status = 400, description = "malformed_json: the body could not be read", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 422, description = "no_addresses: no line starts with an E.164 number or an email address; nothing was written", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: more than 100,000 rows or a line over 2,048 bytes; nothing after it was read (the rows before it are suppressed)", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn import(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Body,
) -> Result<Json<SuppressionImport>, ApiError> {
    let mut report = SuppressionImport::default();
    let mut pending: Vec<(usize, String, String, Option<String>)> = Vec::new();
    let mut buffer = Vec::new();
    let mut line_number = 0;
    let mut any_address = false;
    let mut stream = body.into_data_stream();
    let too_large = |what: String| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", what);
    loop {
        let chunk = stream.next().await;
        let finished = chunk.is_none();
        if let Some(chunk) = chunk {
            let chunk = chunk.map_err(|error| ApiError::malformed(format!("the body could not be read: {error}")))?;
            buffer.extend_from_slice(&chunk);
        } else if !buffer.is_empty() {
            buffer.push(b'\n');
        }
        while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            line_number += 1;
            let Some(row) = parse_row(&line, line_number) else {
                continue;
            };
            match row {
                Ok((address, note)) => match canonical(&address) {
                    Ok(canonical) => pending.push((line_number, address, canonical, note)),
                    Err(error) => report.refuse(line_number, address, error),
                },
                Err((address, error)) => {
                    // A bad note: the line still starts with an address.
                    any_address |= canonical(&address).is_ok();
                    report.refuse(line_number, address, error);
                }
            }
            if report.rows + pending.len() > MAX_IMPORT_ROWS {
                apply(&state, &caller.tenant_id, &mut pending, &mut report).await?;
                return Err(too_large(format!(
                    "more than {MAX_IMPORT_ROWS} rows; the first {MAX_IMPORT_ROWS} were read"
                )));
            }
            if pending.len() >= IMPORT_BATCH {
                apply(&state, &caller.tenant_id, &mut pending, &mut report).await?;
            }
        }
        if buffer.len() > MAX_LINE_BYTES {
            apply(&state, &caller.tenant_id, &mut pending, &mut report).await?;
            return Err(too_large(format!(
                "line {} is longer than {MAX_LINE_BYTES} bytes",
                line_number + 1
            )));
        }
        if finished {
            break;
        }
    }
    if !any_address && pending.is_empty() && report.added + report.already == 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_addresses",
            "no line starts with an E.164 number or an email address: give one address per line",
        ));
    }
    apply(&state, &caller.tenant_id, &mut pending, &mut report).await?;
    report.results.sort_by_key(|row| row.row);
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "suppressions.imported",
        json!({ "rows": report.rows, "added": report.added, "already": report.already, "invalid": report.invalid }),
    )
    .await?;
    Ok(Json(report))
}

impl SuppressionImport {
    fn refuse(&mut self, row: usize, address: String, error: String) {
        self.rows += 1;
        self.invalid += 1;
        self.results.push(SuppressionImportRow {
            row,
            address,
            outcome: "invalid",
            error: Some(error),
        });
    }
}

/// One CSV line: `None` for a blank line or the header, else its address and note (quotes
/// around a field removed, `""` inside one read as `"`), or why it is unreadable.
#[allow(clippy::type_complexity)]
fn parse_row(line: &[u8], number: usize) -> Option<Result<(String, Option<String>), (String, String)>> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(Err((String::new(), "not UTF-8 text".to_owned())));
    };
    let text = text.trim_end_matches(['\n', '\r']).trim_start_matches('\u{feff}');
    if text.trim().is_empty() {
        return None;
    }
    let (address, note) = match text.split_once(',') {
        Some((address, note)) => (unquote(address), Some(unquote(note)).filter(|note| !note.is_empty())),
        None => (unquote(text), None),
    };
    if number == 1 && address.eq_ignore_ascii_case("address") {
        return None;
    }
    if let Some(note) = &note
        && let Err(hint) = rules::LINE.check(note)
    {
        return Some(Err((address, format!("note {hint}"))));
    }
    Some(Ok((address, note)))
}

fn unquote(field: &str) -> String {
    let field = field.trim();
    match field.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => field.to_owned(),
    }
}

/// Writes the pending rows: each address not suppressed yet is suppressed (`manual`, its note
/// as the source); the others are left as they are.
async fn apply(
    state: &AppState,
    tenant: &TenantId,
    pending: &mut Vec<(usize, String, String, Option<String>)>,
    report: &mut SuppressionImport,
) -> Result<(), ApiError> {
    if pending.is_empty() {
        return Ok(());
    }
    let addresses: Vec<String> = pending.iter().map(|(_, _, canonical, _)| canonical.clone()).collect();
    let mut suppressed: std::collections::HashSet<String> = state
        .store
        .suppressed_among(tenant, &addresses)
        .await?
        .into_iter()
        .collect();
    for (row, address, canonical, note) in pending.drain(..) {
        report.rows += 1;
        let outcome = if suppressed.contains(&canonical) {
            report.already += 1;
            "already"
        } else {
            state.store.suppress(&manual(tenant, canonical.clone(), note)).await?;
            suppressed.insert(canonical);
            report.added += 1;
            "added"
        };
        report.results.push(SuppressionImportRow {
            row,
            address,
            outcome,
            error: None,
        });
    }
    Ok(())
}

/// A recipient's opt-in, as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConsentView {
    /// The recipient.
    pub recipient: String,
    /// The channel consented to.
    pub channel: Channel,
    /// Where the consent was given.
    pub source: String,
    /// The wording the recipient agreed to.
    pub wording: Option<String>,
    /// When (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub given_at: OffsetDateTime,
}

impl From<Consent> for ConsentView {
    fn from(consent: Consent) -> Self {
        Self {
            recipient: consent.recipient,
            channel: consent.channel,
            source: consent.source,
            wording: consent.wording,
            given_at: consent.given_at,
        }
    }
}

/// `POST /v1/consents` fields.
const CONSENT_FIELDS: [Field; 5] = [
    Field::text(
        "recipient",
        &rules::RECIPIENT,
        true,
        "The recipient: an E.164 number for `sms` and `whatsapp`, an email address for `email`.",
    ),
    Field {
        name: "channel",
        kind: Kind::Choice(&["sms", "whatsapp", "email"]),
        required: true,
        description: "The channel consented to.",
    },
    Field::text_within(
        "source",
        &rules::LINE,
        1,
        200,
        true,
        "Where it was given: a web form's URL, a keyword, a paper form's reference.",
    ),
    Field::text_within(
        "wording",
        &rules::PROSE,
        1,
        2_000,
        false,
        "The wording the recipient agreed to.",
    ),
    Field::text(
        "given_at",
        &rules::TIMESTAMP,
        false,
        "When it was given (RFC 3339); now when absent.",
    ),
];

crate::openapi::body!(
    /// `POST /v1/consents` body.
    ConsentRequest => crate::openapi::form_schema(
        "A recipient's opt-in. A phone number consents to `sms` or `whatsapp`, an email address to `email`.",
        &CONSENT_FIELDS
    )
);

/// `POST /v1/consents`: records (or replaces) a recipient's opt-in to a channel; 201.
#[utoipa::path(
    operation_id = "consents_record",
    post,
    path = "/v1/consents",
    tag = "consent",
    request_body(content = ConsentRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "recorded", body = ConsentView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: every failing field is listed in `fields`; `recipient` when it is not the channel's kind of address", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn record(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Bytes,
) -> Result<(StatusCode, Json<ConsentView>), ApiError> {
    let fields = form::parse(&body, &CONSENT_FIELDS)?;
    let channel: Channel = fields
        .required("channel")?
        .parse()
        .map_err(|_| ApiError::invalid("channel", "must be sms, whatsapp or email"))?;
    // The channel's kind of address: an email address for email, a number otherwise.
    let recipient = Recipient::parse(channel, &fields.required("recipient")?)
        .map_err(|error| ApiError::invalid("recipient", error.to_string()))?
        .as_str()
        .to_owned();
    let given_at = match fields.text("given_at") {
        Some(at) => {
            OffsetDateTime::parse(&at, &Rfc3339).map_err(|error| ApiError::invalid("given_at", error.to_string()))?
        }
        None => now_ms(),
    };
    let consent = Consent {
        tenant_id: caller.tenant_id.clone(),
        recipient,
        channel,
        source: fields.required("source")?,
        wording: fields.text("wording"),
        given_at,
    };
    state.store.put_consent(&consent).await?;
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "consent.recorded",
        json!({ "recipient": consent.recipient, "channel": channel, "source": consent.source }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(consent.into())))
}

/// `GET /v1/consents` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsentQuery {
    /// The recipient: an E.164 number or an email address (anything else has none).
    pub recipient: String,
}

/// A recipient's consents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConsentList {
    /// One per channel consented to.
    pub consents: Vec<ConsentView>,
    /// Whether the recipient is suppressed (which wins over any consent).
    pub suppressed: bool,
}

/// `GET /v1/consents?recipient=...`: a recipient's opt-ins and whether it is suppressed.
#[utoipa::path(
    operation_id = "consents_list",
    get,
    path = "/v1/consents",
    tag = "consent",
    params(ConsentQuery),
    responses(
        (status = 200, description = "the recipient's consents", body = ConsentList),
        (status = 400, description = "the query string does not parse (`recipient` is required)", body = String, content_type = "text/plain"),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_consents(
    State(state): State<AppState>,
    caller: TenantCaller,
    Query(query): Query<ConsentQuery>,
) -> Result<Json<ConsentList>, ApiError> {
    // Not an address: nothing was ever recorded for it.
    let Ok(recipient) = canonical(&query.recipient) else {
        return Ok(Json(ConsentList {
            consents: Vec::new(),
            suppressed: false,
        }));
    };
    let consents = state.store.consents(&caller.tenant_id, &recipient).await?;
    let suppressed = state.store.suppression(&caller.tenant_id, &recipient).await?.is_some();
    Ok(Json(ConsentList {
        consents: consents.into_iter().map(ConsentView::from).collect(),
        suppressed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_read_with_their_quotes_and_the_header_skipped() {
        assert_eq!(parse_row(b"address,note\n", 1), None);
        assert_eq!(parse_row(b"\r\n", 2), None);
        assert_eq!(
            parse_row(b"+14155550100\r\n", 2),
            Some(Ok(("+14155550100".to_owned(), None)))
        );
        assert_eq!(
            parse_row(b"\"ana@example.com\",\"asked by phone, \"\"twice\"\"\"\n", 3),
            Some(Ok((
                "ana@example.com".to_owned(),
                Some("asked by phone, \"twice\"".to_owned())
            )))
        );
        assert!(matches!(parse_row(b"\xff\xfe\n", 4), Some(Err(_))));
        assert_eq!(
            canonical("ANA@Example.COM").as_deref(),
            Ok("ANA@example.com"),
            "domains in lowercase"
        );
        assert!(canonical("14155550100").is_err());
    }
}
