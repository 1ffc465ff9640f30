//! A tenant's business information, the form A2P 10DLC registration is built from:
//! `POST/GET/PUT /v1/business-info` and `GET /v1/business-info/status`.
//!
//! Every field of the seed's form (part 2, step 1, with its table in part 1) is checked at once
//! and every failing field is answered in one 422. Values are stored normalised (trimmed, the
//! EIN as `NN-NNNNNNN`, phones in E.164, email domains in lowercase). Saving the form for the
//! first time starts the onboarding workflow (`crate::onboarding`). The form stays editable
//! until the brand is approved (then `409 business_info_locked`); a change after a rejection
//! takes effect when the tenant resubmits (`POST /v1/channels/sms/resubmit`). Every change is
//! audited with a field-level diff (`{"field": {"from": old, "to": new}}`); nothing here is secret.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::address::{EmailAddress, PhoneNumber};
use common::store::{AuditEntry, BrandStatus, BusinessInfoRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::auth::TenantCaller;
use crate::error::FieldError;
use crate::onboarding::status::{SmsStatus, sms_status};
use crate::{ApiError, AppState};

/// The shortest use-case description (Twilio's campaign `Description` minimum).
pub const MIN_USE_CASE_LEN: usize = 40;
/// The longest use-case description (Twilio's campaign `Description` maximum).
pub const MAX_USE_CASE_LEN: usize = 4_096;

/// US state, district and territory codes accepted in `state`.
pub const US_STATES: [&str; 56] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME",
    "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA",
    "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP",
];

/// Business types: ours, and Twilio's spelling in the customer profile.
pub const BUSINESS_TYPES: [(&str, &str); 6] = [
    ("sole_proprietor", "Sole Proprietorship"),
    ("partnership", "Partnership"),
    ("llc", "Limited Liability Corporation"),
    ("corporation", "Corporation"),
    ("co_operative", "Co-operative"),
    ("non_profit", "Non-profit Corporation"),
];

/// Industries (Twilio's `business_industry` values, in lowercase).
pub const INDUSTRIES: [&str; 31] = [
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
pub const VOLUMES: [&str; 5] = [
    "under_1000",
    "1000_to_10000",
    "10000_to_100000",
    "100000_to_1000000",
    "over_1000000",
];

/// Campaign types and the Twilio A2P use case each registers.
pub const CAMPAIGN_TYPES: [(&str, &str); 4] = [
    ("marketing", "MARKETING"),
    ("transactional", "ACCOUNT_NOTIFICATION"),
    ("support", "CUSTOMER_CARE"),
    ("mixed", "MIXED"),
];

/// A validated, normalised business information form, as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BusinessInfo {
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
    pub fn from_record(record: &BusinessInfoRecord) -> Result<Self, serde_json::Error> {
        serde_json::from_value(record.data.clone())
    }

    /// Twilio's spelling of the business type.
    pub fn twilio_business_type(&self) -> &'static str {
        BUSINESS_TYPES
            .iter()
            .find(|(ours, _)| *ours == self.business_type)
            .map_or("Corporation", |(_, twilio)| twilio)
    }

    /// The Twilio A2P use case of the campaign type.
    pub fn twilio_use_case(&self) -> &'static str {
        CAMPAIGN_TYPES
            .iter()
            .find(|(ours, _)| *ours == self.campaign_type)
            .map_or("MIXED", |(_, twilio)| twilio)
    }

    /// The owner's first and last names (the last word is the last name).
    pub fn owner_names(&self) -> (String, String) {
        match self.owner_name.rsplit_once(' ') {
            Some((first, last)) => (first.trim().to_owned(), last.trim().to_owned()),
            None => (self.owner_name.clone(), self.owner_name.clone()),
        }
    }
}

/// Every field the form knows.
const FIELDS: [&str; 25] = [
    "legal_business_name",
    "dba_name",
    "business_type",
    "ein",
    "industry",
    "website",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "owner_name",
    "owner_title",
    "owner_email",
    "owner_phone",
    "business_contact_name",
    "business_contact_email",
    "business_contact_phone",
    "monthly_volume",
    "use_case_description",
    "campaign_type",
    "sms_opt_in_language",
    "message_samples",
    "tcpa_compliant",
    "gdpr_compliant",
];

/// Collects every problem of a form.
struct Form {
    object: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Form {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// A string field, trimmed; `None` (an error recorded when required) if absent or unusable.
    fn text(&mut self, field: &str, required: bool, max_chars: usize) -> Option<String> {
        match self.object.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.fail(field, "is required");
                }
                None
            }
            Some(Value::String(text)) => {
                let text = text.trim();
                if text.is_empty() {
                    if required {
                        self.fail(field, "must not be empty");
                    }
                    None
                } else if text.chars().count() > max_chars {
                    self.fail(field, format!("must be at most {max_chars} characters"));
                    None
                } else {
                    Some(text.to_owned())
                }
            }
            Some(_) => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    /// A string field that must be one of `allowed` (compared in lowercase).
    fn choice(&mut self, field: &str, required: bool, allowed: &[&str]) -> Option<String> {
        let value = self.text(field, required, 64)?.to_ascii_lowercase();
        if allowed.contains(&value.as_str()) {
            Some(value)
        } else {
            self.fail(field, format!("must be one of: {}", allowed.join(", ")));
            None
        }
    }

    fn phone(&mut self, field: &str, required: bool) -> Option<String> {
        let raw = self.text(field, required, 16)?;
        match PhoneNumber::parse(raw) {
            Ok(number) => Some(number.as_str().to_owned()),
            Err(error) => {
                self.fail(field, error.to_string());
                None
            }
        }
    }

    fn email(&mut self, field: &str, required: bool) -> Option<String> {
        let raw = self.text(field, required, 254)?;
        match EmailAddress::parse(raw) {
            Ok(address) => Some(address.as_str().to_owned()),
            Err(error) => {
                self.fail(field, error.to_string());
                None
            }
        }
    }

    fn flag(&mut self, field: &str) -> bool {
        match self.object.get(field) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(value)) => *value,
            Some(_) => {
                self.fail(field, "must be true or false");
                false
            }
        }
    }

    fn samples(&mut self) -> Option<Vec<String>> {
        const FIELD: &str = "message_samples";
        match self.object.get(FIELD) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let texts: Option<Vec<String>> = items
                    .iter()
                    .map(|item| item.as_str().map(|text| text.trim().to_owned()))
                    .collect();
                let Some(texts) = texts else {
                    self.fail(FIELD, "must be a list of strings");
                    return None;
                };
                if !(2..=5).contains(&texts.len()) {
                    self.fail(FIELD, "must hold 2 to 5 sample messages");
                    return None;
                }
                if texts.iter().any(|text| !(20..=1_024).contains(&text.chars().count())) {
                    self.fail(FIELD, "each sample must be 20 to 1,024 characters");
                    return None;
                }
                Some(texts)
            }
            Some(_) => {
                self.fail(FIELD, "must be a list of strings");
                None
            }
        }
    }
}

/// Whether `raw` is an EIN: `NN-NNNNNNN`.
pub fn is_ein(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.len() == 10
        && bytes[2] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(index, byte)| index == 2 || byte.is_ascii_digit())
}

/// Whether `raw` is a ZIP code: 5 digits, or ZIP+4 (`NNNNN-NNNN`).
pub fn is_zip(raw: &str) -> bool {
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    match raw.split_once('-') {
        None => raw.len() == 5 && all_digits(raw),
        Some((five, four)) => five.len() == 5 && four.len() == 4 && all_digits(five) && all_digits(four),
    }
}

/// Whether `raw` is an http(s) URL with a dotted host.
pub fn is_website(raw: &str) -> bool {
    url::Url::parse(raw).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|host| host.contains('.'))
    })
}

/// Validates a request body; every failing field is listed in the 422.
pub fn parse(body: &[u8]) -> Result<BusinessInfo, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| ApiError::malformed(error.to_string()))?;
    let Value::Object(object) = value else {
        return Err(ApiError::malformed("the body must be a JSON object"));
    };
    let errors = object
        .keys()
        .filter(|key| !FIELDS.contains(&key.as_str()))
        .map(|key| FieldError {
            field: key.clone(),
            message: "unknown field".to_owned(),
        })
        .collect();
    let mut form = Form { object, errors };
    let types: Vec<&str> = BUSINESS_TYPES.iter().map(|(ours, _)| *ours).collect();
    let campaign_types: Vec<&str> = CAMPAIGN_TYPES.iter().map(|(ours, _)| *ours).collect();

    let legal_business_name = form.text("legal_business_name", true, 255);
    let dba_name = form.text("dba_name", false, 255);
    let business_type = form.choice("business_type", true, &types);
    let ein = form.text("ein", true, 16);
    if ein.as_deref().is_some_and(|ein| !is_ein(ein)) {
        form.fail("ein", "must be an EIN such as 12-3456789");
    }
    let industry = form.choice("industry", true, &INDUSTRIES);
    let website = form.text("website", false, 2_048);
    if website.as_deref().is_some_and(|website| !is_website(website)) {
        form.fail("website", "must be an http or https URL such as https://example.com");
    }
    let address = form.text("address", true, 255);
    let city = form.text("city", true, 100);
    let state = form.text("state", true, 8).map(|state| state.to_ascii_uppercase());
    if state.as_deref().is_some_and(|state| !US_STATES.contains(&state)) {
        form.fail("state", "must be a two-letter US state code such as CA");
    }
    let zip = form.text("zip", true, 10);
    if zip.as_deref().is_some_and(|zip| !is_zip(zip)) {
        form.fail("zip", "must be a ZIP code: 5 digits, or ZIP+4 such as 94105-1234");
    }
    let country = form
        .text("country", false, 8)
        .map(|country| country.to_ascii_uppercase())
        .unwrap_or_else(|| "US".to_owned());
    if country != "US" {
        form.fail("country", "must be US: A2P 10DLC registers US businesses");
    }
    let owner_name = form.text("owner_name", true, 255);
    let owner_title = form.text("owner_title", true, 100);
    let owner_email = form.email("owner_email", true);
    let owner_phone = form.phone("owner_phone", true);
    let business_contact_name = form.text("business_contact_name", false, 255);
    let business_contact_email = form.email("business_contact_email", false);
    let business_contact_phone = form.phone("business_contact_phone", false);
    let monthly_volume = form.choice("monthly_volume", true, &VOLUMES);
    let use_case_description = form.text("use_case_description", true, MAX_USE_CASE_LEN);
    if use_case_description
        .as_deref()
        .is_some_and(|text| text.chars().count() < MIN_USE_CASE_LEN)
    {
        form.fail(
            "use_case_description",
            format!("must be at least {MIN_USE_CASE_LEN} characters: describe what you will send"),
        );
    }
    let campaign_type = form
        .choice("campaign_type", false, &campaign_types)
        .unwrap_or_else(|| "mixed".to_owned());
    let sms_opt_in_language = form.text("sms_opt_in_language", false, 2_048);
    if sms_opt_in_language
        .as_deref()
        .is_some_and(|text| text.chars().count() < 40)
    {
        form.fail(
            "sms_opt_in_language",
            "must be at least 40 characters: say how recipients opt in",
        );
    }
    let message_samples = form.samples();
    let tcpa_compliant = form.flag("tcpa_compliant");
    let gdpr_compliant = form.flag("gdpr_compliant");

    if !form.errors.is_empty() {
        return Err(ApiError::invalid_fields(form.errors));
    }
    let (
        Some(legal_business_name),
        Some(business_type),
        Some(ein),
        Some(industry),
        Some(address),
        Some(city),
        Some(state),
        Some(zip),
        Some(owner_name),
        Some(owner_title),
        Some(owner_email),
        Some(owner_phone),
        Some(monthly_volume),
        Some(use_case_description),
    ) = (
        legal_business_name,
        business_type,
        ein,
        industry,
        address,
        city,
        state,
        zip,
        owner_name,
        owner_title,
        owner_email,
        owner_phone,
        monthly_volume,
        use_case_description,
    )
    else {
        return Err(ApiError::malformed("required fields are missing"));
    };
    Ok(BusinessInfo {
        legal_business_name,
        dba_name,
        business_type,
        ein,
        industry,
        website,
        address,
        city,
        state,
        zip,
        country,
        owner_name,
        owner_title,
        owner_email,
        owner_phone,
        business_contact_name,
        business_contact_email,
        business_contact_phone,
        monthly_volume,
        use_case_description,
        campaign_type,
        sms_opt_in_language,
        message_samples,
        tcpa_compliant,
        gdpr_compliant,
    })
}

/// The fields that differ between two forms: `{"field": {"from": old, "to": new}}`.
pub fn diff(before: &Value, after: &Value) -> Map<String, Value> {
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
pub struct BusinessInfoView {
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
    request_body(content = BusinessInfo, content_type = "application/json"),
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
pub async fn create(
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
pub async fn get(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<BusinessInfoView>, ApiError> {
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
    request_body(content = BusinessInfo, content_type = "application/json"),
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
pub async fn update(
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

/// `GET /v1/business-info/status`: where the 10DLC registration stands (the same answer as
/// `GET /v1/channels/sms/status`).
#[utoipa::path(
    operation_id = "business_info_status",
    get,
    path = "/v1/business-info/status",
    tag = "onboarding",
    responses(
        (status = 200, description = "where the 10DLC registration stands", body = SmsStatus),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn status(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<SmsStatus>, ApiError> {
    Ok(Json(sms_status(&state, &caller.tenant_id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eins_zips_and_websites() {
        assert!(is_ein("12-3456789"));
        assert!(!is_ein("123456789"));
        assert!(!is_ein("12-345678a"));
        assert!(!is_ein("1-23456789"));
        assert!(is_zip("94105"));
        assert!(is_zip("94105-1234"));
        assert!(!is_zip("9410"));
        assert!(!is_zip("94105-12"));
        assert!(!is_zip("abcde"));
        assert!(is_website("https://acme.example.com/about"));
        assert!(!is_website("ftp://acme.example.com"));
        assert!(!is_website("acme.example.com"));
        assert!(!is_website("http://localhost"));
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
