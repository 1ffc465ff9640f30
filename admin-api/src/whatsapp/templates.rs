//! WhatsApp templates of live tenants, kept in Twilio's Content API on the tenant's account
//! and approved by Meta through Twilio: `POST` and `GET /v1/templates/whatsapp`, `GET` and
//! `DELETE /v1/templates/whatsapp/{sid}`, `POST /v1/templates/whatsapp/{sid}/submit`, `POST
//! /v1/templates/whatsapp/import`, and the signed `POST /webhooks/twilio/content-status`.
//!
//! Nothing is kept here: Twilio holds each template and its approval, so templates made in
//! Twilio's console count too. A template is text, media, quick replies or call-to-action
//! buttons, with `{{1}}` or `{{name}}` variables, each with a sample value (Meta reviews the
//! samples). Creating one creates the Content resource and submits it for WhatsApp approval
//! with its category; its approval is read from Twilio on every `GET` (polling), and the
//! content-status webhook audits each change. A message naming a template is admitted only
//! when Twilio says it exists, is approved for WhatsApp, and the message gives every variable
//! it declares (`TEMPLATE_NOT_FOUND`, `TEMPLATE_NOT_APPROVED`, `TEMPLATE_VARIABLES_MISSING`
//! otherwise, before any send).
//!
//! The import takes templates in the shape EngageNinja kept them when it sent through Meta's
//! Cloud API (Meta's message template objects: `name`, `language`, `category`, `components`
//! with `BODY`, `HEADER` and `BUTTONS`) and creates and submits each, reporting per template.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use common::TenantId;
use common::rules::{
    CONTENT_SID, E164, LANGUAGE, LINE, PROSE, TextRule, VARIABLE_NAME as VARIABLE, WEBSITE,
    WHATSAPP_TEMPLATE_NAME as TEMPLATE_NAME,
};
use common::twilio::whatsapp::{Content, NewContent, WhatsappApproval};
use common::twilio::{AccountOpError, TwilioAccount};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::senders::SenderError;
use crate::auth::TenantCaller;
use crate::form::{self, Field, Kind, Values};
use crate::{ApiError, AppState};

/// The categories Meta approves templates in.
const CATEGORIES: &[&str] = &["MARKETING", "UTILITY", "AUTHENTICATION"];
/// The most templates one import takes.
const MAX_IMPORT: usize = 100;

/// The fields of `POST /v1/templates/whatsapp`.
const TEMPLATE_FIELDS: [Field; 12] = [
    Field::text(
        "name",
        &TEMPLATE_NAME,
        true,
        "The template's name (also its name at Meta).",
    ),
    Field::text("language", &LANGUAGE, true, "Its language."),
    Field {
        name: "category",
        kind: Kind::Choice(CATEGORIES),
        required: true,
        description: "The WhatsApp category it is submitted in.",
    },
    Field::text_within(
        "body",
        &PROSE,
        1,
        1_024,
        true,
        "The text, with `{{1}}` or `{{name}}` variables.",
    ),
    Field {
        name: "variables",
        kind: Kind::TextMap {
            key: &VARIABLE,
            value: &LINE,
            max_items: 100,
        },
        required: false,
        description: "A sample value for each variable of the body (Meta reviews them).",
    },
    Field {
        name: "media",
        kind: Kind::Texts {
            rule: &WEBSITE,
            min_chars: 10,
            max_chars: 2_048,
            min_items: 1,
            max_items: 1,
        },
        required: false,
        description: "A public URL of an image, video or document to send with the text.",
    },
    Field {
        name: "quick_replies",
        kind: Kind::Texts {
            rule: &LINE,
            min_chars: 1,
            max_chars: 20,
            min_items: 1,
            max_items: 10,
        },
        required: false,
        description: "Quick reply buttons' titles (not with call-to-action buttons or media).",
    },
    Field::text_within("url_button_title", &LINE, 1, 20, false, "A website button's title."),
    Field::text("url_button_url", &WEBSITE, false, "The website button's URL."),
    Field::text_within("phone_button_title", &LINE, 1, 20, false, "A call button's title."),
    Field::text("phone_button_number", &E164, false, "The call button's number, E.164."),
    Field {
        name: "allow_category_change",
        kind: Kind::Flag,
        required: false,
        description: "Unused by Twilio's approval request today; accepted and ignored.",
    },
];

crate::openapi::body!(
    /// `POST /v1/templates/whatsapp` body.
    NewWhatsappTemplateRequest => crate::openapi::form_schema("A WhatsApp template to create and submit for approval.", &TEMPLATE_FIELDS)
);

/// A template to create: what both the create route and the import give.
#[derive(Debug, Clone, PartialEq)]
struct TemplateSpec {
    name: String,
    language: String,
    category: String,
    body: String,
    variables: BTreeMap<String, String>,
    media: Option<String>,
    quick_replies: Vec<String>,
    url_button: Option<(String, String)>,
    phone_button: Option<(String, String)>,
}

/// The `{{name}}` placeholders of `text`, in order of first use.
fn placeholders(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if VARIABLE.matches(name) && !names.iter().any(|known| known == name) {
            names.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    names
}

impl TemplateSpec {
    /// Checks what Meta would refuse: each variable has a sample and is used; buttons of one
    /// kind.
    fn check(&self) -> Result<(), ApiError> {
        let used = placeholders(&self.body);
        if let Some(missing) = used.iter().find(|name| !self.variables.contains_key(*name)) {
            return Err(ApiError::invalid(
                "variables",
                format!("give a sample value for {{{{{missing}}}}}"),
            ));
        }
        if let Some(unused) = self.variables.keys().find(|name| !used.contains(name)) {
            return Err(ApiError::invalid(
                "variables",
                format!("{unused} is not a variable of the body"),
            ));
        }
        let buttons = self.url_button.is_some() || self.phone_button.is_some();
        if !self.quick_replies.is_empty() && (buttons || self.media.is_some()) {
            return Err(ApiError::invalid(
                "quick_replies",
                "quick replies cannot go with call-to-action buttons or media",
            ));
        }
        if buttons && self.media.is_some() {
            return Err(ApiError::invalid(
                "media",
                "media cannot go with call-to-action buttons",
            ));
        }
        Ok(())
    }

    /// The Content API's `types`.
    fn types(&self) -> Value {
        if !self.quick_replies.is_empty() {
            let actions: Vec<Value> = self
                .quick_replies
                .iter()
                .enumerate()
                .map(|(index, title)| json!({"title": title, "id": format!("reply_{}", index + 1)}))
                .collect();
            return json!({"twilio/quick-reply": {"body": self.body, "actions": actions}});
        }
        let mut actions = Vec::new();
        if let Some((title, url)) = &self.url_button {
            actions.push(json!({"type": "URL", "title": title, "url": url}));
        }
        if let Some((title, phone)) = &self.phone_button {
            actions.push(json!({"type": "PHONE_NUMBER", "title": title, "phone": phone}));
        }
        if !actions.is_empty() {
            return json!({"twilio/call-to-action": {"body": self.body, "actions": actions}});
        }
        match &self.media {
            Some(media) => json!({"twilio/media": {"body": self.body, "media": [media]}}),
            None => json!({"twilio/text": {"body": self.body}}),
        }
    }

    /// The spec of a create request's fields.
    fn of_fields(fields: &Values) -> Result<Self, ApiError> {
        let pair = |title: &str, target: &str| -> Result<Option<(String, String)>, ApiError> {
            match (fields.text(title), fields.text(target)) {
                (Some(title), Some(target)) => Ok(Some((title, target))),
                (None, None) => Ok(None),
                (Some(_), None) => Err(ApiError::invalid(target.to_owned(), "is required with its title")),
                (None, Some(_)) => Err(ApiError::invalid(title.to_owned(), "is required with its target")),
            }
        };
        Ok(Self {
            name: fields.required("name")?,
            language: fields.required("language")?,
            category: fields.required("category")?,
            body: fields.required("body")?,
            variables: fields.text_map("variables").unwrap_or_default(),
            media: fields.texts("media").and_then(|media| media.into_iter().next()),
            quick_replies: fields.texts("quick_replies").unwrap_or_default(),
            url_button: pair("url_button_title", "url_button_url")?,
            phone_button: pair("phone_button_title", "phone_button_number")?,
        })
    }
}

/// A template's WhatsApp approval, as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ApprovalView {
    /// `unsubmitted`, `received`, `pending`, `approved`, `rejected`, `paused` or `disabled`.
    pub status: String,
    /// The category Meta holds it in.
    pub category: Option<String>,
    /// Why Meta rejected it.
    pub rejection_reason: Option<String>,
}

impl From<&WhatsappApproval> for ApprovalView {
    fn from(approval: &WhatsappApproval) -> Self {
        Self {
            status: approval.status.as_str().to_owned(),
            category: approval.category.clone(),
            rejection_reason: approval.rejection_reason.clone(),
        }
    }
}

/// A WhatsApp template as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WhatsappTemplateView {
    /// Its Content SID (`HX...`): an envelope's `template.id`.
    pub sid: String,
    /// Its name.
    pub name: String,
    /// Its language.
    pub language: String,
    /// Its variables with their sample values: a message must give each.
    pub variables: BTreeMap<String, String>,
    /// Its WhatsApp approval.
    pub approval: ApprovalView,
}

impl WhatsappTemplateView {
    fn of(content: Content, approval: &WhatsappApproval) -> Self {
        Self {
            sid: content.sid,
            name: content.friendly_name,
            language: content.language,
            variables: content.variables,
            approval: approval.into(),
        }
    }
}

/// The tenant's WhatsApp templates.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WhatsappTemplateList {
    /// Every template of the tenant's Twilio account (first 1,000).
    pub templates: Vec<WhatsappTemplateView>,
}

/// Twilio's failure as the API's error.
fn twilio_error(error: AccountOpError) -> ApiError {
    super::sender_error(SenderError::Twilio(error))
}

/// The tenant's Twilio account; demo tenants have none.
async fn account(state: &AppState, tenant: &TenantId) -> Result<TwilioAccount, ApiError> {
    super::live(state, tenant).await?;
    state.senders.account(tenant).await.map_err(super::sender_error)
}

/// Creates the template and submits it; a refused submission leaves it `unsubmitted` (submit
/// it again with `POST .../{sid}/submit`).
async fn create_and_submit(
    state: &AppState,
    caller: &TenantCaller,
    account: &TwilioAccount,
    spec: &TemplateSpec,
) -> Result<(WhatsappTemplateView, Option<String>), ApiError> {
    spec.check()?;
    // A retried create after a lost answer must not make a second template: names are unique.
    let existing = state.twilio.list_contents(account).await.map_err(twilio_error)?;
    if existing.iter().any(|(content, _)| content.friendly_name == spec.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "template_exists",
            "a template of that name exists in the twilio account",
        )
        .with_field("name"));
    }
    let request = NewContent {
        friendly_name: spec.name.clone(),
        language: spec.language.clone(),
        variables: spec.variables.clone(),
        types: spec.types(),
    };
    let content = state
        .twilio
        .create_content(account, &request)
        .await
        .map_err(twilio_error)?;
    crate::audit::record(
        state,
        &caller.tenant_id,
        &caller.key_id,
        "whatsapp_template.created",
        json!({ "sid": content.sid, "name": spec.name }),
    )
    .await?;
    let (approval, submit_error) = match state
        .twilio
        .submit_whatsapp_approval(account, &content.sid, &spec.name, &spec.category)
        .await
    {
        Ok(approval) => (approval, None),
        Err(error) => {
            tracing::warn!(tenant = %caller.tenant_id, sid = %content.sid, %error, "template created but not submitted");
            (WhatsappApproval::unsubmitted(), Some(error.to_string()))
        }
    };
    if submit_error.is_none() {
        crate::audit::record(
            state,
            &caller.tenant_id,
            &caller.key_id,
            "whatsapp_template.submitted",
            json!({ "sid": content.sid, "category": spec.category }),
        )
        .await?;
    }
    Ok((WhatsappTemplateView::of(content, &approval), submit_error))
}

/// `POST /v1/templates/whatsapp`: creates a template in the tenant's Twilio account and
/// submits it for WhatsApp approval.
#[utoipa::path(
    operation_id = "templates_whatsapp_create",
    post,
    path = "/v1/templates/whatsapp",
    tag = "templates",
    request_body(content = NewWhatsappTemplateRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "created and submitted (approval `received` or `pending`), or created but not submitted (`unsubmitted`: submit it again)", body = WhatsappTemplateView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 409, description = "template_exists (`field`: name); demo_tenant; channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: every failing field is listed in `fields`; provider_refused: Twilio refused the template", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Bytes,
) -> Result<(StatusCode, Json<WhatsappTemplateView>), ApiError> {
    let fields = form::parse(&body, &TEMPLATE_FIELDS)?;
    let account = account(&state, &caller.tenant_id).await?;
    let spec = TemplateSpec::of_fields(&fields)?;
    let (view, _) = create_and_submit(&state, &caller, &account, &spec).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/templates/whatsapp`: the templates of the tenant's Twilio account, with their
/// approvals.
#[utoipa::path(
    operation_id = "templates_whatsapp_list",
    get,
    path = "/v1/templates/whatsapp",
    tag = "templates",
    responses(
        (status = 200, description = "every template of the tenant's Twilio account (first 1,000)", body = WhatsappTemplateList),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 409, description = "demo_tenant, channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: TenantCaller,
) -> Result<Json<WhatsappTemplateList>, ApiError> {
    let account = account(&state, &caller.tenant_id).await?;
    let contents = state.twilio.list_contents(&account).await.map_err(twilio_error)?;
    Ok(Json(WhatsappTemplateList {
        templates: contents
            .into_iter()
            .map(|(content, approval)| WhatsappTemplateView::of(content, &approval))
            .collect(),
    }))
}

/// A Content SID from the path.
fn sid_of(raw: &str) -> Result<&str, ApiError> {
    CONTENT_SID.check(raw).map_err(|hint| ApiError::invalid("sid", hint))?;
    Ok(raw)
}

/// `GET /v1/templates/whatsapp/{sid}`: one template with its approval, read from Twilio now.
#[utoipa::path(
    operation_id = "templates_whatsapp_get",
    get,
    path = "/v1/templates/whatsapp/{sid}",
    tag = "templates",
    params(("sid" = String, Path, description = "The template's Content SID", pattern = "^HX[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "the template and where its approval stands", body = WhatsappTemplateView),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "template_not_found", body = crate::error::ErrorBody),
        (status = 409, description = "demo_tenant, channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: not a Content SID", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(sid): Path<String>,
) -> Result<Json<WhatsappTemplateView>, ApiError> {
    let sid = sid_of(&sid)?;
    let account = account(&state, &caller.tenant_id).await?;
    let content = state.twilio.fetch_content(&account, sid).await.map_err(not_found_or)?;
    let approval = state
        .twilio
        .fetch_approvals(&account, sid)
        .await
        .map_err(not_found_or)?;
    Ok(Json(WhatsappTemplateView::of(content, &approval)))
}

fn not_found_or(error: AccountOpError) -> ApiError {
    if error.is_not_found() {
        ApiError::not_found("template_not_found", "no template with that sid in the twilio account")
    } else {
        twilio_error(error)
    }
}

/// `DELETE /v1/templates/whatsapp/{sid}`: deletes a template from the tenant's Twilio account.
#[utoipa::path(
    operation_id = "templates_whatsapp_delete",
    delete,
    path = "/v1/templates/whatsapp/{sid}",
    tag = "templates",
    params(("sid" = String, Path, description = "The template's Content SID", pattern = "^HX[0-9a-fA-F]{32}$")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "template_not_found", body = crate::error::ErrorBody),
        (status = 409, description = "demo_tenant, channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: not a Content SID", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(sid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let sid = sid_of(&sid)?;
    let account = account(&state, &caller.tenant_id).await?;
    state.twilio.delete_content(&account, sid).await.map_err(not_found_or)?;
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "whatsapp_template.deleted",
        json!({ "sid": sid }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The fields of `POST /v1/templates/whatsapp/{sid}/submit`.
const SUBMIT_FIELDS: [Field; 1] = [Field {
    name: "category",
    kind: Kind::Choice(CATEGORIES),
    required: true,
    description: "The WhatsApp category it is submitted in.",
}];

crate::openapi::body!(
    /// `POST /v1/templates/whatsapp/{sid}/submit` body.
    SubmitWhatsappTemplateRequest => crate::openapi::form_schema("The category to submit in.", &SUBMIT_FIELDS)
);

/// `POST /v1/templates/whatsapp/{sid}/submit`: submits (again) a template for WhatsApp approval.
#[utoipa::path(
    operation_id = "templates_whatsapp_submit",
    post,
    path = "/v1/templates/whatsapp/{sid}/submit",
    tag = "templates",
    params(("sid" = String, Path, description = "The template's Content SID", pattern = "^HX[0-9a-fA-F]{32}$")),
    request_body(content = SubmitWhatsappTemplateRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "submitted", body = ApprovalView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "template_not_found", body = crate::error::ErrorBody),
        (status = 409, description = "demo_tenant, channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field; provider_refused: Twilio refused the submission", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn submit(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(sid): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ApprovalView>), ApiError> {
    let sid = sid_of(&sid)?;
    let fields = form::parse(&body, &SUBMIT_FIELDS)?;
    let category = fields.required("category")?;
    let account = account(&state, &caller.tenant_id).await?;
    let content = state.twilio.fetch_content(&account, sid).await.map_err(not_found_or)?;
    let approval = state
        .twilio
        .submit_whatsapp_approval(&account, sid, &content.friendly_name, &category)
        .await
        .map_err(not_found_or)?;
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "whatsapp_template.submitted",
        json!({ "sid": sid, "category": category }),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json((&approval).into())))
}

/// One template of an import, in Meta's message template shape.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct MetaTemplate {
    /// Its name.
    pub name: String,
    /// Its language (`en_US`).
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// Its components: `BODY` (`text`, `example.body_text`), `HEADER` (`format` `IMAGE`,
    /// `VIDEO` or `DOCUMENT` with `example.header_handle`), `BUTTONS` (`QUICK_REPLY`, `URL`,
    /// `PHONE_NUMBER`).
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<Value>,
}

/// `POST /v1/templates/whatsapp/import` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportRequest {
    /// The templates, at most 100.
    pub templates: Vec<MetaTemplate>,
}

/// One template's outcome in an import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ImportResult {
    /// The template's name.
    pub name: String,
    /// `submitted`, `created` (not submitted: `error` says why), `exists` or `failed`.
    pub outcome: String,
    /// The Content SID, when created.
    pub sid: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

/// The import's report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ImportReport {
    /// One entry per template, in order.
    pub results: Vec<ImportResult>,
}

/// Reads one of Meta's template objects.
fn spec_of_meta(template: &MetaTemplate) -> Result<TemplateSpec, String> {
    let checked =
        |rule: &TextRule, field: &str, value: &str| rule.check(value).map_err(|hint| format!("{field} {hint}"));
    checked(&TEMPLATE_NAME, "name", &template.name)?;
    checked(&LANGUAGE, "language", &template.language)?;
    let category = template.category.to_ascii_uppercase();
    if !CATEGORIES.contains(&category.as_str()) {
        return Err(format!("category must be one of {}", CATEGORIES.join(", ")));
    }
    let mut spec = TemplateSpec {
        name: template.name.clone(),
        language: template.language.clone(),
        category,
        body: String::new(),
        variables: BTreeMap::new(),
        media: None,
        quick_replies: Vec::new(),
        url_button: None,
        phone_button: None,
    };
    for component in &template.components {
        let text = |name: &str| component.get(name).and_then(Value::as_str).map(str::to_owned);
        match text("type").unwrap_or_default().to_ascii_uppercase().as_str() {
            "BODY" => {
                spec.body = text("text").ok_or("a BODY component has no text")?;
                let samples = component
                    .pointer("/example/body_text/0")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (name, sample) in placeholders(&spec.body).into_iter().zip(samples) {
                    if let Some(sample) = sample.as_str() {
                        spec.variables.insert(name, sample.to_owned());
                    }
                }
            }
            "HEADER" => match text("format").unwrap_or_default().to_ascii_uppercase().as_str() {
                "IMAGE" | "VIDEO" | "DOCUMENT" => {
                    spec.media = component
                        .pointer("/example/header_handle/0")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
                _ => return Err("only IMAGE, VIDEO and DOCUMENT headers are imported".to_owned()),
            },
            "BUTTONS" => {
                for button in component.get("buttons").and_then(Value::as_array).into_iter().flatten() {
                    let field = |name: &str| button.get(name).and_then(Value::as_str).map(str::to_owned);
                    let title = field("text").ok_or("a button has no text")?;
                    match field("type").unwrap_or_default().as_str() {
                        "QUICK_REPLY" => spec.quick_replies.push(title),
                        "URL" => spec.url_button = Some((title, field("url").ok_or("a URL button has no url")?)),
                        "PHONE_NUMBER" => {
                            spec.phone_button =
                                Some((title, field("phone_number").ok_or("a call button has no phone_number")?));
                        }
                        other => return Err(format!("{other} buttons are not imported")),
                    }
                }
            }
            "FOOTER" => {}
            other => return Err(format!("{other} components are not imported")),
        }
    }
    if spec.body.is_empty() {
        return Err("a template needs a BODY component".to_owned());
    }
    Ok(spec)
}

/// `POST /v1/templates/whatsapp/import`: creates and submits each template of an existing
/// installation (Meta's template objects), reporting per template.
#[utoipa::path(
    operation_id = "templates_whatsapp_import",
    post,
    path = "/v1/templates/whatsapp/import",
    tag = "templates",
    request_body(content = ImportRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "each template's outcome, in order", body = ImportReport),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 409, description = "demo_tenant, channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: more than 100 templates", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn import(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    let request: ImportRequest =
        serde_json::from_slice(&body).map_err(|error| ApiError::malformed(error.to_string()))?;
    if request.templates.len() > MAX_IMPORT {
        return Err(ApiError::invalid(
            "templates",
            format!("at most {MAX_IMPORT} per import"),
        ));
    }
    let account = account(&state, &caller.tenant_id).await?;
    let mut results = Vec::with_capacity(request.templates.len());
    for template in &request.templates {
        let result = match spec_of_meta(template) {
            Err(error) => ImportResult {
                name: template.name.clone(),
                outcome: "failed".to_owned(),
                sid: None,
                error: Some(error),
            },
            Ok(spec) => match create_and_submit(&state, &caller, &account, &spec).await {
                Ok((view, None)) => ImportResult {
                    name: spec.name,
                    outcome: "submitted".to_owned(),
                    sid: Some(view.sid),
                    error: None,
                },
                Ok((view, Some(error))) => ImportResult {
                    name: spec.name,
                    outcome: "created".to_owned(),
                    sid: Some(view.sid),
                    error: Some(error),
                },
                Err(error) if error.code == "store_unavailable" => return Err(error),
                Err(error) => ImportResult {
                    name: spec.name,
                    outcome: if error.code == "template_exists" {
                        "exists"
                    } else {
                        "failed"
                    }
                    .to_owned(),
                    sid: None,
                    error: Some(error.message),
                },
            },
        };
        tracing::info!(tenant = %caller.tenant_id, template = %result.name, outcome = %result.outcome, "whatsapp template imported");
        results.push(result);
    }
    Ok(Json(ImportReport { results }))
}

/// `POST /webhooks/twilio/content-status`: a template's approval changed (`AccountSid`,
/// `ContentSid`, `ApprovalStatus`; signed with the account's auth token). The approval is
/// fetched from Twilio and audited (`whatsapp_template.approval_changed`); the callback's own
/// claim is never trusted.
#[utoipa::path(
    operation_id = "whatsapp_content_status_webhook",
    post,
    path = "/webhooks/twilio/content-status",
    tag = "webhooks",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the public URL and the form, with the auth token of `AccountSid`")),
    request_body(content = crate::openapi::TwilioContentStatusForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 204, description = "acted on (the approval is fetched from Twilio and audited) or ignored"),
        (status = 403, description = "invalid_signature: X-Twilio-Signature does not verify with any stored token of AccountSid", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
)]
pub async fn content_status_webhook(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    const SOURCE: &str = "twilio_content_status";
    let form = crate::webhooks::twilio::verified(&state, SOURCE, &uri, &headers, &body).await?;
    let Some(sid) = form.get("ContentSid").filter(|sid| CONTENT_SID.matches(sid)) else {
        metrics::counter!("admin_webhooks_total", "source" => SOURCE, "outcome" => "ignored").increment(1);
        return Ok(StatusCode::NO_CONTENT);
    };
    for tenant in &form.tenants {
        // Only a tenant that already sends WhatsApp on this account: a webhook changes no
        // credentials.
        let row = state.store.credentials(tenant, common::Channel::Whatsapp).await?;
        let Some(account) = row.and_then(|row| common::twilio::open_account(&state.keyring, &row).ok()) else {
            continue;
        };
        match state.twilio.fetch_approvals(&account, sid).await {
            Ok(approval) => {
                crate::audit::record(
                    &state,
                    tenant,
                    "twilio",
                    "whatsapp_template.approval_changed",
                    json!({
                        "sid": sid,
                        "status": approval.status.as_str(),
                        "rejection_reason": approval.rejection_reason,
                    }),
                )
                .await?;
                metrics::counter!("admin_webhooks_total", "source" => SOURCE, "outcome" => "applied").increment(1);
            }
            Err(error) => tracing::warn!(%tenant, %error, "template approval not fetched"),
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(body: &str, variables: &[(&str, &str)]) -> TemplateSpec {
        TemplateSpec {
            name: "order_ready".into(),
            language: "en".into(),
            category: "UTILITY".into(),
            body: body.into(),
            variables: variables
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            media: None,
            quick_replies: Vec::new(),
            url_button: None,
            phone_button: None,
        }
    }

    #[test]
    fn every_variable_needs_a_sample_and_every_sample_a_variable() {
        assert_eq!(placeholders("Hi {{1}}, {{ name }} {{1}} {{bad-}}"), ["1", "name"]);
        assert!(spec("Hi {{1}}", &[("1", "Ana")]).check().is_ok());
        assert!(spec("Hi {{1}}", &[]).check().is_err());
        assert!(spec("Hi", &[("1", "Ana")]).check().is_err());
    }

    #[test]
    fn types_follow_what_the_template_holds() {
        let mut quick = spec("Hi", &[]);
        quick.quick_replies = vec!["Yes".into()];
        assert_eq!(
            quick.types(),
            json!({"twilio/quick-reply": {"body": "Hi", "actions": [{"title": "Yes", "id": "reply_1"}]}})
        );
        let mut cta = spec("Hi", &[]);
        cta.url_button = Some(("Track".into(), "https://acme.example/t".into()));
        assert_eq!(
            cta.types(),
            json!({"twilio/call-to-action": {"body": "Hi", "actions": [{"type": "URL", "title": "Track", "url": "https://acme.example/t"}]}})
        );
        assert_eq!(spec("Hi", &[]).types(), json!({"twilio/text": {"body": "Hi"}}));
        cta.quick_replies = vec!["Yes".into()];
        assert!(cta.check().is_err());
    }

    #[test]
    fn meta_templates_import_with_their_samples_and_buttons() {
        let template: MetaTemplate = serde_json::from_value(json!({
            "name": "spring_sale",
            "language": "en_US",
            "category": "marketing",
            "components": [
                {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["https://cdn.acme.example/s.png"]}},
                {"type": "BODY", "text": "Hi {{1}}, {{2}} off", "example": {"body_text": [["Ana", "20%"]]}},
                {"type": "FOOTER", "text": "Reply STOP to opt out"},
            ]
        }))
        .unwrap();
        let spec = spec_of_meta(&template).unwrap();
        assert_eq!(spec.category, "MARKETING");
        assert_eq!(spec.variables.get("2").map(String::as_str), Some("20%"));
        assert_eq!(spec.media.as_deref(), Some("https://cdn.acme.example/s.png"));
        assert!(spec.check().is_ok());
        let unknown = MetaTemplate {
            components: vec![json!({"type": "CAROUSEL"})],
            ..template
        };
        assert!(spec_of_meta(&unknown).unwrap_err().contains("CAROUSEL"));
    }
}
