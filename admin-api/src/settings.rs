//! A tenant's messaging settings (`GET` and `PUT /v1/settings`): whether marketing messages
//! need the recipient's recorded opt-in (`/v1/consents`), and the replies sent to the HELP,
//! STOP and START keywords (`webhooks::twilio`). Admission reads them within a few seconds of a
//! change; every change is audited.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use common::rules;
use common::store::TenantSettings;
use serde::Serialize;
use serde_json::json;

use crate::auth::TenantCaller;
use crate::form::{self, Field, Kind};
use crate::{ApiError, AppState};

/// The longest keyword reply, in characters (two GSM-7 segments).
const MAX_REPLY_CHARS: usize = 306;

/// `PUT /v1/settings` fields.
const SETTINGS_FIELDS: [Field; 4] = [
    Field {
        name: "require_consent_for_marketing",
        kind: Kind::Flag,
        required: false,
        description: "Whether a marketing message needs the recipient's opt-in to its channel \
                      (`POST /v1/consents`); without one it ends `rejected` with `CONSENT_MISSING`. \
                      Transactional messages never do. `false` when absent.",
    },
    Field::text_within(
        "help_reply",
        &rules::PROSE,
        1,
        MAX_REPLY_CHARS,
        false,
        "The reply to HELP or INFO: carriers expect the business name, how to get help and how to \
         opt out. The default names the tenant and says how to opt out.",
    ),
    Field::text_within(
        "stop_reply",
        &rules::PROSE,
        1,
        MAX_REPLY_CHARS,
        false,
        "The confirmation of an opt-out keyword (STOP, UNSUBSCRIBE, ...), sent once.",
    ),
    Field::text_within(
        "start_reply",
        &rules::PROSE,
        1,
        MAX_REPLY_CHARS,
        false,
        "The confirmation of an opt-in keyword (START, YES, UNSTOP).",
    ),
];

crate::openapi::body!(
    /// `PUT /v1/settings` body.
    SettingsRequest => crate::openapi::form_schema(
        "A tenant's messaging settings; a field left out takes its default.",
        &SETTINGS_FIELDS
    )
);

/// A tenant's messaging settings, as answered: the replies as recipients receive them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SettingsView {
    /// Whether a marketing message needs the recipient's opt-in to its channel.
    pub require_consent_for_marketing: bool,
    /// The reply to HELP.
    pub help_reply: String,
    /// The confirmation of an opt-out.
    pub stop_reply: String,
    /// The confirmation of an opt-in.
    pub start_reply: String,
}

impl SettingsView {
    fn new(settings: &TenantSettings, tenant_name: &str) -> Self {
        Self {
            require_consent_for_marketing: settings.require_consent_for_marketing,
            help_reply: settings.help_reply(tenant_name),
            stop_reply: settings.stop_reply(tenant_name),
            start_reply: settings.start_reply(tenant_name),
        }
    }
}

/// The caller's tenant's name and settings.
async fn current(state: &AppState, caller: &TenantCaller) -> Result<(String, TenantSettings), ApiError> {
    // A key outlives its tenant only for the moment the tenant is being deleted.
    let tenant = state
        .store
        .tenant(&caller.tenant_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let settings = state
        .store
        .tenant_settings(&caller.tenant_id)
        .await?
        .unwrap_or_default();
    Ok((tenant.name, settings))
}

/// `GET /v1/settings`: the tenant's messaging settings.
#[utoipa::path(
    operation_id = "settings_get",
    get,
    path = "/v1/settings",
    tag = "consent",
    responses(
        (status = 200, description = "the settings", body = SettingsView),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<SettingsView>, ApiError> {
    let (name, settings) = current(&state, &caller).await?;
    Ok(Json(SettingsView::new(&settings, &name)))
}

/// `PUT /v1/settings`: replaces the tenant's messaging settings (audited).
#[utoipa::path(
    operation_id = "settings_put",
    put,
    path = "/v1/settings",
    tag = "consent",
    request_body(content = SettingsRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the settings now", body = SettingsView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: every failing field is listed in `fields`", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn put(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Bytes,
) -> Result<Json<SettingsView>, ApiError> {
    let fields = form::parse(&body, &SETTINGS_FIELDS)?;
    let settings = TenantSettings {
        require_consent_for_marketing: fields.flag("require_consent_for_marketing"),
        help_reply: fields.text("help_reply"),
        stop_reply: fields.text("stop_reply"),
        start_reply: fields.text("start_reply"),
    };
    let (name, before) = current(&state, &caller).await?;
    if !state.store.set_tenant_settings(&caller.tenant_id, &settings).await? {
        return Err(ApiError::unauthorized());
    }
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "settings.updated",
        json!({
            "require_consent_for_marketing": {
                "from": before.require_consent_for_marketing,
                "to": settings.require_consent_for_marketing,
            },
            "help_reply_changed": before.help_reply != settings.help_reply,
            "stop_reply_changed": before.stop_reply != settings.stop_reply,
            "start_reply_changed": before.start_reply != settings.start_reply,
        }),
    )
    .await?;
    tracing::info!(tenant = %caller.tenant_id, "messaging settings updated");
    Ok(Json(SettingsView::new(&settings, &name)))
}
