//! Platform-admin routes: tenants, plans and demo tenants, under `/v1/admin/`; and each
//! tenant's own API keys under `/v1/api-keys`.
//!
//! Platform routes take the platform-admin key (`admin.platform_admin_key`) as a bearer token;
//! without one configured they answer 401 to everyone. A tenant key on them is 403. Every
//! change is audited; secrets (API keys) are shown once, at creation, and never stored in the
//! clear.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use common::store::{ApiKeyRecord, Plan, Tenant, TenantStatus};
use common::{Channel, TenantId, rules};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::auth::{KEY_PREFIX, TenantCaller, bearer, create_api_key, hash_key};
use crate::error::FieldError;
use crate::form::{self, Field};
use crate::{ApiError, AppState};

/// The caller of a platform route, established from the platform-admin key.
#[derive(Debug, Clone, Copy)]
pub struct PlatformCaller;

/// The actor recorded in the audit log for platform actions.
const PLATFORM_ACTOR: &str = "platform";

impl FromRequestParts<AppState> for PlatformCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let secret = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        if let Some(expected) = &state.platform_key_hash
            && bool::from(hash_key(secret).as_bytes().ct_eq(expected.as_bytes()))
        {
            state.limits.request("platform")?;
            return Ok(PlatformCaller);
        }
        if secret.starts_with(KEY_PREFIX) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "platform_admin_only",
                "this route needs the platform-admin key, not a tenant key",
            ));
        }
        Err(ApiError::unauthorized())
    }
}

/// A tenant as the platform sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// `active` or `suspended`.
    #[schema(value_type = String, example = "active")]
    pub status: TenantStatus,
    /// Its plan.
    pub plan_id: Option<String>,
    /// Whether it is a demo tenant (simulated traffic).
    pub demo: bool,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<Tenant> for TenantView {
    fn from(tenant: Tenant) -> Self {
        Self {
            id: tenant.id.to_string(),
            name: tenant.name,
            status: tenant.status,
            plan_id: tenant.plan_id,
            demo: tenant.is_demo,
            created_at: tenant.created_at,
        }
    }
}

/// A key just made: the only time its secret is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewKeyView {
    /// The key's public id (for listing and revoking).
    pub key_id: String,
    /// The secret, to put in `Authorization: Bearer ...`; shown once.
    pub secret: String,
}

impl std::fmt::Debug for NewKeyView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKeyView")
            .field("key_id", &self.key_id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// A tenant and its first key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedTenant {
    /// The tenant.
    pub tenant: TenantView,
    /// Its first API key.
    pub api_key: NewKeyView,
    /// Whether it is a demo tenant.
    pub demo: bool,
}

/// Reads a JSON object body: 400 when it is not a JSON object, 422 naming the field when a
/// field is wrong.
pub(crate) fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    // serde reads a struct from an array too (`["suspended"]` as a tenant change): only an
    // object is a body here.
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::malformed("the body must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let field = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::malformed(inner.to_string())
        } else {
            ApiError::invalid_fields(vec![FieldError {
                field,
                message: inner.to_string(),
            }])
        }
    })
}

/// The most characters of a tenant's or plan's display name.
const MAX_NAME_CHARS: usize = 200;

/// `POST /v1/admin/tenants` body, as parsed and documented.
pub const NEW_TENANT_FIELDS: [Field; 3] = [
    Field::text("id", &rules::TENANT_ID, true, "The tenant's id."),
    Field::text_within("name", &rules::LINE, 1, MAX_NAME_CHARS, true, "Its display name."),
    Field::text(
        "plan_id",
        &rules::PLAN_ID,
        false,
        "Its plan (`PUT /v1/admin/plans/{id}`); none when absent. An unknown plan answers 404 plan_not_found.",
    ),
];

crate::openapi::body!(
    /// `POST /v1/admin/tenants` body.
    NewTenantRequest => crate::openapi::form_schema("A live tenant.", &NEW_TENANT_FIELDS)
);

async fn create_tenant(state: &AppState, tenant: Tenant) -> Result<CreatedTenant, ApiError> {
    state.store.create_tenant(&tenant).await.map_err(|error| match error {
        common::store::StoreError::Conflict(_) => {
            ApiError::new(StatusCode::CONFLICT, "tenant_exists", "a tenant with this id exists").with_field("id")
        }
        other => other.into(),
    })?;
    let key = create_api_key(state.store.as_ref(), &tenant.id).await?;
    let action = if tenant.is_demo {
        "demo_tenant.created"
    } else {
        "tenant.created"
    };
    crate::audit::record(
        state,
        &tenant.id,
        PLATFORM_ACTOR,
        action,
        json!({ "api_key_id": key.record.key_id, "plan_id": tenant.plan_id }),
    )
    .await?;
    tracing::info!(tenant = %tenant.id, demo = tenant.is_demo, "tenant created");
    let demo = tenant.is_demo;
    Ok(CreatedTenant {
        tenant: tenant.into(),
        api_key: NewKeyView {
            key_id: key.record.key_id,
            secret: key.secret,
        },
        demo,
    })
}

/// `POST /v1/admin/tenants`: a live tenant and its first API key (shown once).
#[utoipa::path(
    operation_id = "platform_create",
    post,
    path = "/v1/admin/tenants",
    tag = "platform",
    request_body(content = NewTenantRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "the tenant and its first API key (shown once)", body = CreatedTenant),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid platform-admin key (or none is configured)", body = crate::error::ErrorBody),
        (status = 403, description = "platform_admin_only: a tenant key on a platform route", body = crate::error::ErrorBody),
        (status = 409, description = "tenant_exists", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 404, description = "plan_not_found: no plan with the given `plan_id`", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: `field` and `fields` name what is wrong", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("platform_admin" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    _: PlatformCaller,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedTenant>), ApiError> {
    let fields = form::parse(&body, &NEW_TENANT_FIELDS)?;
    let id = TenantId::parse(fields.required("id")?).map_err(|error| ApiError::invalid("id", error.to_string()))?;
    let plan_id = fields.text("plan_id");
    if let Some(plan) = &plan_id
        && state.store.plan(plan).await?.is_none()
    {
        return Err(ApiError::not_found("plan_not_found", "no plan with that id").with_field("plan_id"));
    }
    let tenant = Tenant {
        name: fields.required("name")?,
        plan_id,
        created_by: Some(PLATFORM_ACTOR.to_owned()),
        ..Tenant::live(id)
    };
    Ok((StatusCode::CREATED, Json(create_tenant(&state, tenant).await?)))
}

fn tenant_id(raw: String) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).map_err(|_| ApiError::not_found("tenant_not_found", "no tenant with that id"))
}

/// `GET /v1/admin/tenants/{id}`.
#[utoipa::path(
    operation_id = "platform_get",
    get,
    path = "/v1/admin/tenants/{id}",
    tag = "platform",
    params(("id" = String, Path, description = "the tenant id")),
    responses(
        (status = 200, description = "the tenant", body = TenantView),
        (status = 401, description = "unauthorized: no valid platform-admin key (or none is configured)", body = crate::error::ErrorBody),
        (status = 403, description = "platform_admin_only: a tenant key on a platform route", body = crate::error::ErrorBody),
        (status = 404, description = "tenant_not_found", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("platform_admin" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    _: PlatformCaller,
    Path(id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    let id = tenant_id(id)?;
    let tenant = state
        .store
        .tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant_not_found", "no tenant with that id"))?;
    Ok(Json(tenant.into()))
}

/// `POST /v1/admin/tenants/{id}/api-keys`: a key for an existing tenant (shown once), for a
/// tenant brought over by `import legacy` or one that lost its keys; audited.
#[utoipa::path(
    operation_id = "platform_create_tenant_key",
    post,
    path = "/v1/admin/tenants/{id}/api-keys",
    tag = "platform",
    params(("id" = String, Path, description = "the tenant id")),
    responses(
        (status = 201, description = "the new key; its secret is shown only now", body = NewKeyView),
        (status = 401, description = "unauthorized: no valid platform-admin key (or none is configured)", body = crate::error::ErrorBody),
        (status = 403, description = "platform_admin_only: a tenant key on a platform route", body = crate::error::ErrorBody),
        (status = 404, description = "tenant_not_found", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("platform_admin" = [])),
)]
pub async fn create_tenant_key(
    State(state): State<AppState>,
    _: PlatformCaller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<NewKeyView>), ApiError> {
    let id = tenant_id(id)?;
    if state.store.tenant(&id).await?.is_none() {
        return Err(ApiError::not_found("tenant_not_found", "no tenant with that id"));
    }
    Ok((StatusCode::CREATED, Json(issue_key(&state, &id, PLATFORM_ACTOR).await?)))
}

/// A new key for `tenant`, audited as made by `actor`.
async fn issue_key(state: &AppState, tenant: &TenantId, actor: &str) -> Result<NewKeyView, ApiError> {
    let key = create_api_key(state.store.as_ref(), tenant).await?;
    crate::audit::record(
        state,
        tenant,
        actor,
        "api_key.created",
        json!({ "api_key_id": key.record.key_id }),
    )
    .await?;
    Ok(NewKeyView {
        key_id: key.record.key_id,
        secret: key.secret,
    })
}

/// `PATCH /v1/admin/tenants/{id}` body: the subscription state.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TenantChange {
    #[serde(default)]
    #[schema(example = "suspended")]
    status: Option<TenantStatus>,
    /// `Some(None)` (JSON `null`) takes the tenant off any plan.
    #[serde(default, with = "serde_with_null")]
    #[schema(value_type = Option<String>)]
    plan_id: Option<Option<String>>,
}

/// Tells an absent field from an explicit `null`.
mod serde_with_null {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(deserializer).map(Some)
    }
}

/// `PATCH /v1/admin/tenants/{id}`: suspends or reactivates a tenant (a suspended tenant's
/// sending routes answer 402), or changes its plan.
#[utoipa::path(
    operation_id = "platform_update",
    patch,
    path = "/v1/admin/tenants/{id}",
    tag = "platform",
    params(("id" = String, Path, description = "the tenant id")),
    request_body(content = TenantChange, content_type = "application/json"),
    responses(
        (status = 200, description = "the changed tenant", body = TenantView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid platform-admin key (or none is configured)", body = crate::error::ErrorBody),
        (status = 403, description = "platform_admin_only: a tenant key on a platform route", body = crate::error::ErrorBody),
        (status = 404, description = "tenant_not_found, or plan_not_found (`field`: plan_id)", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: `field` and `fields` name what is wrong", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("platform_admin" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    _: PlatformCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<TenantView>, ApiError> {
    let id = tenant_id(id)?;
    let change: TenantChange = json_body(&body)?;
    let not_found = || ApiError::not_found("tenant_not_found", "no tenant with that id");
    if state.store.tenant(&id).await?.is_none() {
        return Err(not_found());
    }
    if let Some(Some(plan)) = &change.plan_id
        && state.store.plan(plan).await?.is_none()
    {
        return Err(ApiError::not_found("plan_not_found", "no plan with that id").with_field("plan_id"));
    }
    if let Some(status) = change.status {
        state.store.set_tenant_status(&id, status).await?;
    }
    if let Some(plan) = &change.plan_id {
        state.store.set_tenant_plan(&id, plan.as_deref()).await?;
    }
    crate::audit::record(
        &state,
        &id,
        PLATFORM_ACTOR,
        "tenant.updated",
        json!({ "status": change.status, "plan_id": change.plan_id }),
    )
    .await?;
    let tenant = state.store.tenant(&id).await?.ok_or_else(not_found)?;
    Ok(Json(tenant.into()))
}

/// A plan: monthly quotas per channel.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanView {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Monthly quota per channel (SMS in segments, others in messages); a channel left out
    /// has no quota.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub monthly_quota: BTreeMap<Channel, u64>,
}

/// `PUT /v1/admin/plans/{id}` body (the path names the plan).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPlan {
    name: String,
    #[serde(deserialize_with = "whole_numbers")]
    monthly_quota: BTreeMap<Channel, u64>,
}

/// Quotas as JSON numbers with no fraction: `5` and `5.0` alike (JSON Schema's `integer`).
fn whole_numbers<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<Channel, u64>, D::Error> {
    let numbers = BTreeMap::<Channel, serde_json::Number>::deserialize(deserializer)?;
    numbers
        .into_iter()
        .map(|(channel, number)| match number.as_u64() {
            Some(whole) => Ok((channel, whole)),
            None => number
                .as_f64()
                // `u64::MAX as f64` is 2^64, one past the largest quota.
                .filter(|float| float.fract() == 0.0 && (0.0..u64::MAX as f64).contains(float))
                .map(|float| (channel, float as u64))
                .ok_or_else(|| serde::de::Error::custom(format!("{number}: expected a whole number of at least 0"))),
        })
        .collect()
}

/// `PUT /v1/admin/plans/{id}`: creates or replaces a plan.
#[utoipa::path(
    operation_id = "platform_put_plan",
    put,
    path = "/v1/admin/plans/{id}",
    tag = "platform",
    params(("id" = String, Path, description = "the plan id: 1-64 of letters, digits, `-` and `_`", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    request_body(content = crate::openapi::PlanRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the saved plan", body = PlanView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid platform-admin key (or none is configured)", body = crate::error::ErrorBody),
        (status = 403, description = "platform_admin_only: a tenant key on a platform route", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: `field` and `fields` name what is wrong", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("platform_admin" = [])),
)]
pub async fn put_plan(
    State(state): State<AppState>,
    _: PlatformCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<PlanView>, ApiError> {
    let valid_id = rules::PLAN_ID.matches(&id);
    if !valid_id {
        return Err(ApiError::invalid("id", rules::PLAN_ID.hint));
    }
    let request: NewPlan = json_body(&body)?;
    if !rules::LINE.matches_within(&request.name, 1, MAX_NAME_CHARS) {
        return Err(ApiError::invalid(
            "name",
            "must be 1 to 200 characters on one line, starting with a visible one",
        ));
    }
    let plan = PlanView {
        id,
        name: request.name,
        monthly_quota: request.monthly_quota,
    };
    state
        .store
        .put_plan(&Plan {
            id: plan.id.clone(),
            name: plan.name.clone(),
            monthly_quota: plan.monthly_quota.clone(),
        })
        .await?;
    tracing::info!(plan = plan.id, "plan saved");
    Ok(Json(plan))
}

/// `GET /v1/admin/plans/{id}`.
#[utoipa::path(
    operation_id = "platform_get_plan",
    get,
    path = "/v1/admin/plans/{id}",
    tag = "platform",
    params(("id" = String, Path, description = "the plan id: 1-64 of letters, digits, `-` and `_`", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "the plan", body = PlanView),
        (status = 401, description = "unauthorized: no valid platform-admin key (or none is configured)", body = crate::error::ErrorBody),
        (status = 403, description = "platform_admin_only: a tenant key on a platform route", body = crate::error::ErrorBody),
        (status = 404, description = "plan_not_found", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("platform_admin" = [])),
)]
pub async fn get_plan(
    State(state): State<AppState>,
    _: PlatformCaller,
    Path(id): Path<String>,
) -> Result<Json<PlanView>, ApiError> {
    let plan = state
        .store
        .plan(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("plan_not_found", "no plan with that id"))?;
    Ok(Json(PlanView {
        id: plan.id,
        name: plan.name,
        monthly_quota: plan.monthly_quota,
    }))
}

/// `POST /v1/admin/demo-tenants` body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDemoTenant {
    #[serde(default)]
    name: Option<String>,
}

/// `POST /v1/admin/demo-tenants`: a demo tenant (simulated traffic, deleted after the
/// retention period) and its API key (shown once).
#[utoipa::path(
    operation_id = "platform_create_demo",
    post,
    path = "/v1/admin/demo-tenants",
    tag = "platform",
    request_body(content = Option<NewDemoTenant>, description = "optional", content_type = "application/json"),
    responses(
        (status = 201, description = "the demo tenant and its API key (shown once)", body = CreatedTenant),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid platform-admin key (or none is configured)", body = crate::error::ErrorBody),
        (status = 403, description = "platform_admin_only: a tenant key on a platform route", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: `field` and `fields` name what is wrong", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("platform_admin" = [])),
)]
pub async fn create_demo(
    State(state): State<AppState>,
    _: PlatformCaller,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedTenant>), ApiError> {
    let request: NewDemoTenant = if body.trim_ascii().is_empty() || body.trim_ascii() == b"null" {
        NewDemoTenant::default()
    } else {
        json_body(&body)?
    };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let id = TenantId::parse(format!("demo-{suffix}")).map_err(|error| ApiError::invalid("id", error.to_string()))?;
    let tenant = Tenant {
        name: request.name.unwrap_or_else(|| format!("Demo {suffix}")),
        id,
        is_demo: true,
        status: TenantStatus::Active,
        plan_id: Some(crate::demo::DEMO_PLAN.to_owned()),
        created_by: Some(PLATFORM_ACTOR.to_owned()),
        created_at: OffsetDateTime::now_utc(),
    };
    Ok((StatusCode::CREATED, Json(create_tenant(&state, tenant).await?)))
}

/// The demo tenants.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DemoTenants {
    /// Every demo tenant, oldest first.
    pub tenants: Vec<TenantView>,
    /// Always true: these are demo tenants.
    pub demo: bool,
}

/// `GET /v1/admin/demo-tenants`.
#[utoipa::path(
    operation_id = "platform_list_demo",
    get,
    path = "/v1/admin/demo-tenants",
    tag = "platform",
    responses(
        (status = 200, description = "every demo tenant, oldest first", body = DemoTenants),
        (status = 401, description = "unauthorized: no valid platform-admin key (or none is configured)", body = crate::error::ErrorBody),
        (status = 403, description = "platform_admin_only: a tenant key on a platform route", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("platform_admin" = [])),
)]
pub async fn list_demo(State(state): State<AppState>, _: PlatformCaller) -> Result<Json<DemoTenants>, ApiError> {
    let far_future = OffsetDateTime::now_utc() + time::Duration::days(36_500);
    let tenants = state.store.demo_tenants_created_before(far_future).await?;
    Ok(Json(DemoTenants {
        tenants: tenants.into_iter().map(TenantView::from).collect(),
        demo: true,
    }))
}

/// `DELETE /v1/admin/demo-tenants/{id}`: deletes a demo tenant and every row it owns (a live
/// tenant's id answers 404).
#[utoipa::path(
    operation_id = "platform_delete_demo",
    delete,
    path = "/v1/admin/demo-tenants/{id}",
    tag = "platform",
    params(("id" = String, Path, description = "the tenant id")),
    responses(
        (status = 204, description = "deleted with every row it owned"),
        (status = 401, description = "unauthorized: no valid platform-admin key (or none is configured)", body = crate::error::ErrorBody),
        (status = 403, description = "platform_admin_only: a tenant key on a platform route", body = crate::error::ErrorBody),
        (status = 404, description = "tenant_not_found: no demo tenant with that id", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("platform_admin" = [])),
)]
pub async fn delete_demo(
    State(state): State<AppState>,
    _: PlatformCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = tenant_id(id)?;
    let is_demo = state.store.tenant(&id).await?.is_some_and(|tenant| tenant.is_demo);
    if !is_demo {
        return Err(ApiError::not_found("tenant_not_found", "no demo tenant with that id"));
    }
    crate::demo::delete_demo_tenant(state.store.as_ref(), &id, PLATFORM_ACTOR).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One API key of the caller's tenant, without its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// The key's public id.
    pub key_id: String,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(key: ApiKeyRecord) -> Self {
        Self {
            key_id: key.key_id,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// `POST /v1/api-keys`: another key for the caller's tenant (shown once).
#[utoipa::path(
    operation_id = "platform_create_key",
    post,
    path = "/v1/api-keys",
    tag = "api-keys",
    responses(
        (status = 201, description = "the new key; its secret is shown only now", body = NewKeyView),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create_key(
    State(state): State<AppState>,
    caller: TenantCaller,
) -> Result<(StatusCode, Json<NewKeyView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(issue_key(&state, &caller.tenant_id, &caller.key_id).await?),
    ))
}

/// The caller's keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// Every key, revoked ones included, oldest first.
    pub keys: Vec<KeyView>,
}

/// `GET /v1/api-keys`.
#[utoipa::path(
    operation_id = "platform_list_keys",
    get,
    path = "/v1/api-keys",
    tag = "api-keys",
    responses(
        (status = 200, description = "the tenant's keys, revoked ones included", body = KeyList),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_keys(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<KeyList>, ApiError> {
    let keys = state.store.api_keys(&caller.tenant_id).await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(KeyView::from).collect(),
    }))
}

/// `DELETE /v1/api-keys/{key_id}`: revokes a key of the caller's tenant at once.
#[utoipa::path(
    operation_id = "platform_revoke_key",
    delete,
    path = "/v1/api-keys/{key_id}",
    tag = "api-keys",
    params(("key_id" = String, Path, description = "the key's public id")),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "api_key_not_found", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let now = OffsetDateTime::now_utc();
    if !state.store.revoke_api_key(&caller.tenant_id, &key_id, now).await? {
        return Err(ApiError::not_found(
            "api_key_not_found",
            "no key with that id for this tenant",
        ));
    }
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "api_key.revoked",
        json!({ "api_key_id": key_id }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
