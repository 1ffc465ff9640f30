//! A tenant's messaging settings (`GET` and `PUT /v1/settings`): quiet hours (the window of the
//! recipient's local time in which texts go; outside it they are held until it opens), whether
//! marketing messages need the recipient's recorded opt-in (`/v1/consents`), and the replies
//! sent to the HELP, STOP and START keywords (`webhooks::twilio`). The dispatcher reads them
//! within a few seconds of a change; every change is audited.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use common::quiet_hours::{TENANT_ZONES, Window, Zone};
use common::rules;
use common::store::{DEFAULT_ZONE, TenantSettings};
use serde::Serialize;
use serde_json::json;

use crate::auth::TenantCaller;
use crate::form::{self, Field, Kind};
use crate::{ApiError, AppState};

/// The longest keyword reply, in characters (two GSM-7 segments).
const MAX_REPLY_CHARS: usize = 306;

/// `PUT /v1/settings` fields.
const SETTINGS_FIELDS: [Field; 9] = [
    Field::text(
        "quiet_hours_start",
        &rules::CLOCK_TIME,
        false,
        "When texts may start going each day, in the recipient's local time (from the number's \
         area code, else `time_zone`). 08:00 when absent.",
    ),
    Field::text(
        "quiet_hours_end",
        &rules::CLOCK_TIME,
        false,
        "When texts stop going each day (exclusive), in the recipient's local time; a window that \
         ends before it starts spans midnight, one that ends where it starts is the whole day. \
         21:00 when absent. Outside the window a text is held until it opens, never refused; \
         marketing texts to some states keep that state's stricter window too.",
    ),
    Field {
        name: "disable_quiet_hours",
        kind: Kind::Flag,
        required: false,
        description: "`true`: texts go at any hour (the tenant answers for the TCPA). `false` when absent.",
    },
    Field {
        name: "quiet_hours_transactional",
        kind: Kind::Flag,
        required: false,
        description: "Whether transactional texts keep quiet hours too (marketing texts always do). \
                      `false` when absent.",
    },
    Field {
        name: "time_zone",
        kind: Kind::Choice(&TENANT_ZONES),
        required: false,
        description: "The zone of recipients whose number's area code names none. America/New_York \
                      when absent.",
    },
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
    /// When texts may start going each day in the recipient's local time; `null` when quiet
    /// hours are off.
    pub quiet_hours_start: Option<String>,
    /// When they stop (exclusive); `null` when quiet hours are off.
    pub quiet_hours_end: Option<String>,
    /// Whether transactional texts keep quiet hours too.
    pub quiet_hours_transactional: bool,
    /// The zone of recipients whose number names none.
    pub time_zone: String,
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
            quiet_hours_start: settings.quiet_hours.map(Window::start),
            quiet_hours_end: settings.quiet_hours.map(Window::end),
            quiet_hours_transactional: settings.quiet_hours_transactional,
            time_zone: settings.time_zone.name().to_owned(),
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
    let window = Window::from_times(
        &fields.text("quiet_hours_start").unwrap_or_else(|| Window::TCPA.start()),
        &fields.text("quiet_hours_end").unwrap_or_else(|| Window::TCPA.end()),
    )
    .map_err(|error| ApiError::invalid("quiet_hours_end", error.to_string()))?;
    let zone = fields.text("time_zone").unwrap_or_else(|| DEFAULT_ZONE.to_owned());
    let settings = TenantSettings {
        quiet_hours: (!fields.flag("disable_quiet_hours")).then_some(window),
        quiet_hours_transactional: fields.flag("quiet_hours_transactional"),
        time_zone: Zone::named(&zone).map_err(|error| ApiError::invalid("time_zone", error.to_string()))?,
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
            "quiet_hours": {
                "from": before.quiet_hours.map(|window| window.to_string()),
                "to": settings.quiet_hours.map(|window| window.to_string()),
            },
            "quiet_hours_transactional": settings.quiet_hours_transactional,
            "time_zone": { "from": before.time_zone.name(), "to": settings.time_zone.name() },
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
