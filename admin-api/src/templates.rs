//! A tenant's email templates, kept in its own SES account: `POST` and `GET
//! /v1/templates/email`, `PUT` and `DELETE /v1/templates/email/{name}`.
//!
//! Each call goes to SES with the tenant's saved email credentials (`CreateEmailTemplate`,
//! `ListEmailTemplates`, `UpdateEmailTemplate`, `DeleteEmailTemplate`); nothing is kept here,
//! so templates made in the SES console count too. A template has a subject and a text part,
//! an HTML part, or both, with `{{placeholders}}` that an envelope's `template.variables`
//! fill. A message naming a template the account does not hold is refused at admission with
//! `TEMPLATE_NOT_FOUND`, before any send. Every change is audited.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use common::Channel;
use common::rules;
use common::ses::SesAccount;
use common::ses::templates::{EmailTemplate, TemplateError};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema, Type};

use crate::auth::TenantCaller;
use crate::form::{self, Field, Values};
use crate::{ApiError, AppState};

/// The most characters of a template's text or HTML part accepted here: with both parts at
/// the most, the request still fits `admin.max_body_bytes`' default (1 MiB) however its
/// characters are escaped. A larger template can be made in SES directly; it counts the same.
const MAX_PART_CHARS: usize = 40_000;

/// A template's subject.
const SUBJECT: Field = Field::text(
    "subject",
    &rules::SUBJECT,
    true,
    "The subject line, with `{{placeholders}}`.",
);
/// A template's text part.
const TEXT: Field = Field::text_within(
    "text",
    &rules::PROSE,
    1,
    MAX_PART_CHARS,
    false,
    "The text part (give `text`, `html` or both).",
);
/// A template's HTML part.
const HTML: Field = Field::text_within(
    "html",
    &rules::PROSE,
    1,
    MAX_PART_CHARS,
    false,
    "The HTML part (give `text`, `html` or both).",
);

/// The content fields of a template, as parsed and documented.
const CONTENT_FIELDS: [Field; 3] = [SUBJECT, TEXT, HTML];

/// The fields of a new template: its name, then its content.
const NEW_TEMPLATE_FIELDS: [Field; 4] = [
    Field::text_within(
        "name",
        &rules::TEMPLATE_ID,
        1,
        64,
        true,
        "The template's name, as envelopes' `template.id` gives it.",
    ),
    SUBJECT,
    TEXT,
    HTML,
];

crate::openapi::body!(
    /// `POST /v1/templates/email` body.
    NewEmailTemplateRequest => with_a_part(crate::openapi::form_schema("A new email template.", &NEW_TEMPLATE_FIELDS))
);

crate::openapi::body!(
    /// `PUT /v1/templates/email/{name}` body.
    EmailTemplateRequest => with_a_part(crate::openapi::form_schema("An email template's new content.", &CONTENT_FIELDS))
);

/// `schema`, which must also have a `text` or an `html` string (what [`template_of`] checks).
fn with_a_part(schema: RefOr<Schema>) -> RefOr<Schema> {
    let present = |part: &str| {
        ObjectBuilder::new()
            .property(part, ObjectBuilder::new().schema_type(Type::String))
            .required(part)
    };
    AllOfBuilder::new()
        .item(schema)
        .item(AnyOfBuilder::new().item(present("text")).item(present("html")))
        .into()
}

/// A template as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TemplateView {
    /// Its name.
    pub name: String,
    /// When SES created it, where known.
    #[serde(with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
}

/// The templates of the tenant's account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TemplateList {
    /// Every template, by name.
    pub templates: Vec<TemplateView>,
}

/// The template `name` with the content of `fields`: text, HTML or both.
fn template_of(name: String, fields: &Values) -> Result<EmailTemplate, ApiError> {
    let (text, html) = (fields.text("text"), fields.text("html"));
    if text.is_none() && html.is_none() {
        return Err(ApiError::invalid("text", "give text, html or both"));
    }
    Ok(EmailTemplate {
        name,
        subject: fields.required("subject")?,
        text,
        html,
    })
}

/// A template name from the path.
fn name_of(raw: String) -> Result<String, ApiError> {
    if raw.len() > 64 || rules::TEMPLATE_ID.check(&raw).is_err() {
        return Err(ApiError::invalid("name", "must be 1 to 64 of A-Z a-z 0-9 _ -"));
    }
    Ok(raw)
}

/// The tenant's SES account, from its saved email credentials. A demo tenant has none: its
/// email goes to the simulated provider, which takes any template name.
async fn account(state: &AppState, caller: &TenantCaller) -> Result<SesAccount, ApiError> {
    if state
        .store
        .tenant(&caller.tenant_id)
        .await?
        .is_some_and(|tenant| tenant.is_demo)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "demo_tenant",
            "a demo tenant has no SES account: its email is simulated and takes any template name",
        ));
    }
    let Some(row) = state.store.credentials(&caller.tenant_id, Channel::Email).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "channel_not_configured",
            "save the email channel's credentials with POST /v1/channels/email first",
        ));
    };
    common::ses::open_account(&state.keyring, &row).map_err(|error| {
        tracing::warn!(tenant = %caller.tenant_id, %error, "stored email credentials do not open");
        ApiError::new(
            StatusCode::CONFLICT,
            "credentials_unusable",
            "the saved email credentials cannot be used: save them again",
        )
    })
}

/// SES's refusal as the API's error.
fn refused(error: TemplateError) -> ApiError {
    match error {
        TemplateError::NotFound => ApiError::not_found("template_not_found", "no template of that name"),
        TemplateError::AlreadyExists => ApiError::new(
            StatusCode::CONFLICT,
            "template_exists",
            "a template of that name exists",
        )
        .with_field("name"),
        TemplateError::Refused(reason) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "template_refused",
            format!("ses refused it: {reason}"),
        ),
        TemplateError::Auth => ApiError::new(
            StatusCode::CONFLICT,
            "credentials_refused",
            "ses refused the saved email credentials: save correct ones with POST /v1/channels/email",
        ),
        TemplateError::Unavailable(reason) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unavailable",
            format!("ses is unavailable, retry later: {reason}"),
        ),
    }
}

/// `POST /v1/templates/email`: creates a template in the tenant's SES account.
#[utoipa::path(
    operation_id = "templates_email_create",
    post,
    path = "/v1/templates/email",
    tag = "templates",
    request_body(content = NewEmailTemplateRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "created in the tenant's SES account", body = TemplateView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 409, description = "template_exists (`field`: name); demo_tenant; channel_not_configured, credentials_unusable or credentials_refused: the email channel must be saved (again)", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: every failing field is listed in `fields`; template_refused: SES refused the content", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Bytes,
) -> Result<(StatusCode, Json<TemplateView>), ApiError> {
    let fields = form::parse(&body, &NEW_TEMPLATE_FIELDS)?;
    let template = template_of(fields.required("name")?, &fields)?;
    let account = account(&state, &caller).await?;
    state.ses.create_template(&account, &template).await.map_err(refused)?;
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "email_template.created",
        json!({ "name": template.name }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(TemplateView {
            name: template.name,
            created_at: Some(OffsetDateTime::now_utc()),
        }),
    ))
}

/// `GET /v1/templates/email`: the templates of the tenant's SES account.
#[utoipa::path(
    operation_id = "templates_email_list",
    get,
    path = "/v1/templates/email",
    tag = "templates",
    responses(
        (status = 200, description = "every template of the tenant's SES account", body = TemplateList),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 409, description = "demo_tenant, channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<TemplateList>, ApiError> {
    let account = account(&state, &caller).await?;
    let templates = state.ses.list_templates(&account).await.map_err(refused)?;
    Ok(Json(TemplateList {
        templates: templates
            .into_iter()
            .map(|summary| TemplateView {
                name: summary.name,
                created_at: summary.created_at,
            })
            .collect(),
    }))
}

/// `PUT /v1/templates/email/{name}`: replaces a template's content.
#[utoipa::path(
    operation_id = "templates_email_update",
    put,
    path = "/v1/templates/email/{name}",
    tag = "templates",
    params(("name" = String, Path, description = "the template's name: 1-64 of `A-Z a-z 0-9 _ -`", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    request_body(content = EmailTemplateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = TemplateView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "template_not_found", body = crate::error::ErrorBody),
        (status = 409, description = "demo_tenant, channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field (the name, or the fields listed in `fields`); template_refused", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<TemplateView>, ApiError> {
    let name = name_of(name)?;
    let fields = form::parse(&body, &CONTENT_FIELDS)?;
    let template = template_of(name, &fields)?;
    let account = account(&state, &caller).await?;
    state.ses.update_template(&account, &template).await.map_err(refused)?;
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "email_template.updated",
        json!({ "name": template.name }),
    )
    .await?;
    Ok(Json(TemplateView {
        name: template.name,
        created_at: None,
    }))
}

/// `DELETE /v1/templates/email/{name}`: deletes a template.
#[utoipa::path(
    operation_id = "templates_email_delete",
    delete,
    path = "/v1/templates/email/{name}",
    tag = "templates",
    params(("name" = String, Path, description = "the template's name: 1-64 of `A-Z a-z 0-9 _ -`", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "template_not_found", body = crate::error::ErrorBody),
        (status = 409, description = "demo_tenant, channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: name", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = name_of(name)?;
    let account = account(&state, &caller).await?;
    state.ses.delete_template(&account, &name).await.map_err(refused)?;
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "email_template.deleted",
        json!({ "name": name }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
