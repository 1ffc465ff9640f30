//! A tenant's business information, the form A2P 10DLC registration is built from:
//! `POST/GET/PUT /v1/business-info` and `GET /v1/business-info/status`.
//!
//! Every field of the seed's form (part 2, step 1, with its table in part 1) is checked at once
//! and every failing field is answered in one 422, against the rules the API document publishes
//! ([`FIELDS`], `crate::form`). Values are stored as given, but for email domains, kept in
//! lowercase. Saving the form for the
//! first time starts the onboarding workflow (`crate::onboarding`). The form stays editable
//! until the brand is approved (then `409 business_info_locked`); a change after a rejection
//! takes effect when the tenant resubmits (`POST /v1/channels/sms/resubmit`). Every change is
//! audited with a field-level diff (`{"field": {"from": old, "to": new}}`); nothing here is secret.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::address::EmailAddress;
use common::rules::{E164, EIN, EMAIL, LINE, PROSE, WEBSITE, ZIP};
use common::store::{AuditEntry, BrandStatus, BusinessInfoRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::auth::TenantCaller;
use crate::form::{self, Field, Kind};
use crate::{ApiError, AppState};

/// The shortest use-case description (Twilio's campaign `Description` minimum).
pub(crate) const MIN_USE_CASE_LEN: usize = 40;
/// The longest use-case description (Twilio's campaign `Description` maximum).
pub(crate) const MAX_USE_CASE_LEN: usize = 4_096;

/// US state, district and territory codes accepted in `state`.
pub(crate) const US_STATES: [&str; 56] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME",
    "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA",
    "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP",
];

/// Business types: ours, and Twilio's spelling in the customer profile.
pub(crate) const BUSINESS_TYPES: [(&str, &str); 6] = [
    ("sole_proprietor", "Sole Proprietorship"),
    ("partnership", "Partnership"),
    ("llc", "Limited Liability Corporation"),
    ("corporation", "Corporation"),
    ("co_operative", "Co-operative"),
    ("non_profit", "Non-profit Corporation"),
];

/// Industries (Twilio's `business_industry` values, in lowercase).
pub(crate) const INDUSTRIES: [&str; 31] = [
    "agriculture",
    "automotive",
    "banking",
    "construction",
    "consumer",
    "education",
    "engineering",
    "energy",
    "oil_and_gas",
    "fast_moving_consumer_goods",
    "financial",
    "fintech",
    "food_and_beverage",
    "government",
    "healthcare",
    "hospitality",
    "insurance",
    "legal",
    "manufacturing",
    "media",
    "online",
    "professional_services",
    "raw_materials",
    "real_estate",
    "religion",
    "retail",
    "jewelry",
    "technology",
    "telecommunications",
    "transportation",
    "travel",
];

/// Monthly SMS volume estimates (the form's dropdown).
pub(crate) const VOLUMES: [&str; 5] = [
    "under_1000",
    "1000_to_10000",
    "10000_to_100000",
    "100000_to_1000000",
    "over_1000000",
];

/// Campaign types and the Twilio A2P use case each registers.
pub(crate) const CAMPAIGN_TYPES: [(&str, &str); 4] = [
    ("marketing", "MARKETING"),
    ("transactional", "ACCOUNT_NOTIFICATION"),
    ("support", "CUSTOMER_CARE"),
    ("mixed", "MIXED"),
];

/// A validated, normalised business information form, as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct BusinessInfo {
    /// The legal business name.
    pub legal_business_name: String,
    /// "Doing business as", if different.
    pub dba_name: Option<String>,
    /// One of [`BUSINESS_TYPES`].
    pub business_type: String,
    /// The EIN, `NN-NNNNNNN`.
    pub ein: String,
    /// One of [`INDUSTRIES`].
    pub industry: String,
    /// The business website (http or https).
    pub website: Option<String>,
    /// Street address.
    pub address: String,
    /// City.
    pub city: String,
    /// US state code.
    pub state: String,
    /// ZIP code, 5 digits or ZIP+4.
    pub zip: String,
    /// Country: `US` (A2P 10DLC is a US registration).
    pub country: String,
    /// The owner's or principal's full name.
    pub owner_name: String,
    /// The owner's title.
    pub owner_title: String,
    /// The owner's email.
    pub owner_email: String,
    /// The owner's phone, E.164.
    pub owner_phone: String,
    /// A business contact, if not the owner.
    pub business_contact_name: Option<String>,
    /// The business contact's email.
    pub business_contact_email: Option<String>,
    /// The business contact's phone, E.164.
    pub business_contact_phone: Option<String>,
    /// One of [`VOLUMES`].
    pub monthly_volume: String,
    /// What will be sent, 40 to 4,096 characters (the campaign description).
    pub use_case_description: String,
    /// One of [`CAMPAIGN_TYPES`]; `mixed` when absent.
    pub campaign_type: String,
    /// How recipients opt in (the campaign's message flow), 40 to 2,048 characters.
    pub sms_opt_in_language: Option<String>,
    /// 2 to 5 sample messages, each 20 to 1,024 characters.
    pub message_samples: Option<Vec<String>>,
    /// The tenant attests TCPA compliance.
    pub tcpa_compliant: bool,
    /// The tenant attests GDPR compliance.
    pub gdpr_compliant: bool,
}

impl BusinessInfo {
    /// Reads a stored form.
    pub(crate) fn from_record(record: &BusinessInfoRecord) -> Result<Self, serde_json::Error> {
        serde_json::from_value(record.data.clone())
    }

    /// Twilio's spelling of the business type.
    pub(crate) fn twilio_business_type(&self) -> &'static str {
        BUSINESS_TYPES
            .iter()
            .find(|(ours, _)| *ours == self.business_type)
            .map_or("Corporation", |(_, twilio)| twilio)
    }

    /// The Twilio A2P use case of the campaign type.
    pub(crate) fn twilio_use_case(&self) -> &'static str {
        CAMPAIGN_TYPES
            .iter()
            .find(|(ours, _)| *ours == self.campaign_type)
            .map_or("MIXED", |(_, twilio)| twilio)
    }

    /// The owner's first and last names (the last word is the last name).
    pub(crate) fn owner_names(&self) -> (String, String) {
        match self.owner_name.rsplit_once(' ') {
            Some((first, last)) => (first.trim().to_owned(), last.trim().to_owned()),
            None => (self.owner_name.clone(), self.owner_name.clone()),
        }
    }
}

/// The ids of [`BUSINESS_TYPES`].
const BUSINESS_TYPE_IDS: [&str; 6] = [
    "sole_proprietor",
    "partnership",
    "llc",
    "corporation",
    "co_operative",
    "non_profit",
];

/// The ids of [`CAMPAIGN_TYPES`].
const CAMPAIGN_TYPE_IDS: [&str; 4] = ["marketing", "transactional", "support", "mixed"];

const fn choice(
    name: &'static str,
    values: &'static [&'static str],
    required: bool,
    description: &'static str,
) -> Field {
    Field {
        name,
        kind: Kind::Choice(values),
        required,
        description,
    }
}

/// The form's fields, as parsed and as the API document describes them (POST and PUT alike).
pub(crate) const FIELDS: [Field; 25] = [
    Field::text("legal_business_name", &LINE, true, "The legal business name."),
    Field::text("dba_name", &LINE, false, "\"Doing business as\", if different."),
    choice("business_type", &BUSINESS_TYPE_IDS, true, "The business type."),
    Field::text("ein", &EIN, true, "The EIN, `NN-NNNNNNN`."),
    choice("industry", &INDUSTRIES, true, "The industry."),
    Field::text("website", &WEBSITE, false, "The business website (http or https)."),
    Field::text("address", &LINE, true, "Street address."),
    Field::text_within("city", &LINE, 1, 100, true, "City."),
    choice("state", &US_STATES, true, "US state, district or territory code."),
    Field::text("zip", &ZIP, true, "ZIP code, 5 digits or ZIP+4."),
    choice(
        "country",
        &["US"],
        false,
        "`US` (A2P 10DLC registers US businesses); the default.",
    ),
    Field::text("owner_name", &LINE, true, "The owner's or principal's full name."),
    Field::text_within("owner_title", &LINE, 1, 100, true, "The owner's title."),
    Field::text("owner_email", &EMAIL, true, "The owner's email."),
    Field::text("owner_phone", &E164, true, "The owner's phone, E.164."),
    Field::text(
        "business_contact_name",
        &LINE,
        false,
        "A business contact, if not the owner.",
    ),
    Field::text("business_contact_email", &EMAIL, false, "The business contact's email."),
    Field::text(
        "business_contact_phone",
        &E164,
        false,
        "The business contact's phone, E.164.",
    ),
    choice("monthly_volume", &VOLUMES, true, "Estimated SMS per month."),
    Field::text_within(
        "use_case_description",
        &PROSE,
        MIN_USE_CASE_LEN,
        MAX_USE_CASE_LEN,
        true,
        "What will be sent (the campaign description).",
    ),
    choice(
        "campaign_type",
        &CAMPAIGN_TYPE_IDS,
        false,
        "The campaign type; `mixed` when absent.",
    ),
    Field::text_within(
        "sms_opt_in_language",
        &PROSE,
        40,
        2_048,
        false,
        "How recipients opt in (the campaign's message flow).",
    ),
    Field {
        name: "message_samples",
        kind: Kind::Texts {
            rule: &PROSE,
            min_chars: 20,
            max_chars: 1_024,
            min_items: 2,
            max_items: 5,
        },
        required: false,
        description: "Sample messages.",
    },
    Field {
        name: "tcpa_compliant",
        kind: Kind::Flag,
        required: false,
        description: "The tenant attests TCPA compliance (`false` when absent).",
    },
    Field {
        name: "gdpr_compliant",
        kind: Kind::Flag,
        required: false,
        description: "The tenant attests GDPR compliance (`false` when absent).",
    },
];

crate::openapi::body!(
    /// `POST` and `PUT /v1/business-info` body.
    BusinessInfoRequest => crate::openapi::form_schema("The business information form.", &FIELDS)
);

/// An email address as stored: its domain in lowercase.
fn canonical_email(raw: String) -> String {
    EmailAddress::parse(raw.clone()).map_or(raw, |address| address.as_str().to_owned())
}

/// Validates a request body; every failing field is listed in the 422.
pub(crate) fn parse(body: &[u8]) -> Result<BusinessInfo, ApiError> {
    let values = form::parse(body, &FIELDS)?;
    Ok(BusinessInfo {
        legal_business_name: values.required("legal_business_name")?,
        dba_name: values.text("dba_name"),
        business_type: values.required("business_type")?,
        ein: values.required("ein")?,
        industry: values.required("industry")?,
        website: values.text("website"),
        address: values.required("address")?,
        city: values.required("city")?,
        state: values.required("state")?,
        zip: values.required("zip")?,
        country: values.text("country").unwrap_or_else(|| "US".to_owned()),
        owner_name: values.required("owner_name")?,
        owner_title: values.required("owner_title")?,
        owner_email: canonical_email(values.required("owner_email")?),
        owner_phone: values.required("owner_phone")?,
        business_contact_name: values.text("business_contact_name"),
        business_contact_email: values.text("business_contact_email").map(canonical_email),
        business_contact_phone: values.text("business_contact_phone"),
        monthly_volume: values.required("monthly_volume")?,
        use_case_description: values.required("use_case_description")?,
        campaign_type: values.text("campaign_type").unwrap_or_else(|| "mixed".to_owned()),
        sms_opt_in_language: values.text("sms_opt_in_language"),
        message_samples: values.texts("message_samples"),
        tcpa_compliant: values.flag("tcpa_compliant"),
        gdpr_compliant: values.flag("gdpr_compliant"),
    })
}

/// The fields that differ between two forms: `{"field": {"from": old, "to": new}}`.
pub(crate) fn diff(before: &Value, after: &Value) -> Map<String, Value> {
    let empty = Map::new();
    let before = before.as_object().unwrap_or(&empty);
    let after = after.as_object().unwrap_or(&empty);
    let mut changes = Map::new();
    for field in before.keys().chain(after.keys()) {
        let old = before.get(field).unwrap_or(&Value::Null);
        let new = after.get(field).unwrap_or(&Value::Null);
        if old != new && !changes.contains_key(field) {
            changes.insert(field.clone(), json!({ "from": old, "to": new }));
        }
    }
    changes
}

/// The form as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BusinessInfoView {
    /// The form's fields.
    #[schema(value_type = BusinessInfo)]
    pub business_info: Value,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Whether it may still be changed (until the brand is approved).
    pub editable: bool,
    /// Whether the tenant is a demo tenant (its 10DLC approval is simulated).
    pub demo: bool,
}

/// Whether the caller's tenant is a demo tenant.
pub(crate) async fn is_demo(state: &AppState, tenant: &common::TenantId) -> Result<bool, ApiError> {
    Ok(state.store.tenant(tenant).await?.is_some_and(|tenant| tenant.is_demo))
}

async fn is_locked(state: &AppState, caller: &TenantCaller) -> Result<bool, ApiError> {
    let brand = state.store.brand(&caller.tenant_id).await?;
    Ok(brand.is_some_and(|brand| brand.status == BrandStatus::Approved))
}

async fn audit(
    state: &AppState,
    caller: &TenantCaller,
    action: &str,
    at: OffsetDateTime,
    changes: Map<String, Value>,
) -> Result<(), ApiError> {
    state
        .store
        .append_audit(&AuditEntry {
            tenant_id: Some(caller.tenant_id.clone()),
            at,
            actor: caller.key_id.clone(),
            action: action.to_owned(),
            detail: json!({ "changes": changes }),
        })
        .await?;
    Ok(())
}

fn to_value(info: &BusinessInfo) -> Result<Value, ApiError> {
    serde_json::to_value(info).map_err(|error| {
        tracing::error!(%error, "business info does not serialise");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the form could not be stored",
        )
    })
}

/// `POST /v1/business-info`: saves the form for the first time and starts onboarding; 201.
/// 409 `business_info_exists` if there is one already (change it with PUT).
#[utoipa::path(
    operation_id = "business_info_create",
    post,
    path = "/v1/business-info",
    tag = "business-info",
    request_body(content = BusinessInfoRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "saved; onboarding starts", body = BusinessInfoView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 409, description = "business_info_exists: change it with PUT", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: every failing field is listed in `fields`", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Bytes,
) -> Result<(StatusCode, Json<BusinessInfoView>), ApiError> {
    let info = parse(&body)?;
    if state.store.business_info(&caller.tenant_id).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "business_info_exists",
            "business information was already submitted; change it with PUT /v1/business-info",
        ));
    }
    let data = to_value(&info)?;
    let record = BusinessInfoRecord {
        tenant_id: caller.tenant_id.clone(),
        data: data.clone(),
        updated_at: OffsetDateTime::now_utc(),
    };
    state.store.put_business_info(&record).await?;
    audit(
        &state,
        &caller,
        "business_info.created",
        record.updated_at,
        diff(&Value::Null, &data),
    )
    .await?;
    state.onboarding.start(&caller.tenant_id, &caller.key_id).await?;
    tracing::info!(tenant = %caller.tenant_id, "business info submitted");
    Ok((
        StatusCode::CREATED,
        Json(BusinessInfoView {
            business_info: data,
            updated_at: record.updated_at,
            editable: true,
            demo: is_demo(&state, &caller.tenant_id).await?,
        }),
    ))
}

/// `GET /v1/business-info`: the tenant's form; 404 `business_info_not_found` if none.
#[utoipa::path(
    operation_id = "business_info_get",
    get,
    path = "/v1/business-info",
    tag = "business-info",
    responses(
        (status = 200, description = "the tenant's form", body = BusinessInfoView),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "business_info_not_found", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
) -> Result<Json<BusinessInfoView>, ApiError> {
    let record = state
        .store
        .business_info(&caller.tenant_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(BusinessInfoView {
        business_info: record.data,
        updated_at: record.updated_at,
        editable: !is_locked(&state, &caller).await?,
        demo: is_demo(&state, &caller.tenant_id).await?,
    }))
}

fn not_found() -> ApiError {
    ApiError::not_found(
        "business_info_not_found",
        "no business information yet; submit it with POST /v1/business-info",
    )
}

/// `PUT /v1/business-info`: replaces the form (every field, as in POST). 404 if there is none;
/// 409 `business_info_locked` once the brand is approved.
#[utoipa::path(
    operation_id = "business_info_update",
    put,
    path = "/v1/business-info",
    tag = "business-info",
    request_body(content = BusinessInfoRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced (or unchanged)", body = BusinessInfoView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "business_info_not_found", body = crate::error::ErrorBody),
        (status = 409, description = "business_info_locked: the brand is approved", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: every failing field is listed in `fields`", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Bytes,
) -> Result<Json<BusinessInfoView>, ApiError> {
    let info = parse(&body)?;
    let existing = state
        .store
        .business_info(&caller.tenant_id)
        .await?
        .ok_or_else(not_found)?;
    if is_locked(&state, &caller).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "business_info_locked",
            "the 10DLC brand is approved: business information can no longer be changed",
        ));
    }
    let data = to_value(&info)?;
    let changes = diff(&existing.data, &data);
    if changes.is_empty() {
        return Ok(Json(BusinessInfoView {
            business_info: existing.data,
            updated_at: existing.updated_at,
            editable: true,
            demo: is_demo(&state, &caller.tenant_id).await?,
        }));
    }
    let record = BusinessInfoRecord {
        tenant_id: caller.tenant_id.clone(),
        data: data.clone(),
        updated_at: OffsetDateTime::now_utc(),
    };
    state.store.put_business_info(&record).await?;
    audit(&state, &caller, "business_info.updated", record.updated_at, changes).await?;
    // Starts the workflow if the first save could not (a no-op once it exists).
    state.onboarding.start(&caller.tenant_id, &caller.key_id).await?;
    tracing::info!(tenant = %caller.tenant_id, "business info updated");
    Ok(Json(BusinessInfoView {
        business_info: data,
        updated_at: record.updated_at,
        editable: true,
        demo: is_demo(&state, &caller.tenant_id).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_lists_follow_the_tables() {
        let types: Vec<&str> = BUSINESS_TYPES.iter().map(|(ours, _)| *ours).collect();
        assert_eq!(types, BUSINESS_TYPE_IDS);
        let campaigns: Vec<&str> = CAMPAIGN_TYPES.iter().map(|(ours, _)| *ours).collect();
        assert_eq!(campaigns, CAMPAIGN_TYPE_IDS);
    }

    #[test]
    fn diffs_list_changed_fields_only() {
        let before = json!({"a": 1, "b": "x", "c": null});
        let after = json!({"a": 1, "b": "y", "d": true});
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes["b"], json!({"from": "x", "to": "y"}));
        assert_eq!(changes["d"], json!({"from": null, "to": true}));
    }
}
