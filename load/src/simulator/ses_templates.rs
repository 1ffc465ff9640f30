//! SES v2 email templates, per access key (one account each): `CreateEmailTemplate`
//! (`POST /v2/email/templates`), `ListEmailTemplates` (`GET`, `PageSize` and `NextToken`),
//! `GetEmailTemplate`, `UpdateEmailTemplate` and `DeleteEmailTemplate`
//! (`GET`/`PUT`/`DELETE /v2/email/templates/{TemplateName}`), with SES's answers: an existing
//! name is `AlreadyExistsException` (400), an unknown one `NotFoundException` (404), a
//! `TemplateContent` without a `Subject` or without both `Text` and `Html`
//! `BadRequestException`. Sends do not check that their template exists.

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use time::OffsetDateTime;

use super::ses::{AwsError, SesShared};

/// The template routes, merged into the SES side's router (`ses::router`).
pub(crate) fn routes() -> Router<Arc<SesShared>> {
    Router::new()
        .route("/v2/email/templates", post(create).get(list))
        .route("/v2/email/templates/{name}", get(fetch).put(update).delete(delete))
}

fn not_found(name: &str) -> AwsError {
    AwsError {
        status: StatusCode::NOT_FOUND,
        error_type: "NotFoundException",
        message: format!("Template {name} does not exist."),
    }
}

/// A valid `TemplateContent` of a request body.
fn template_content(body: &[u8]) -> Result<(Value, Value), AwsError> {
    let request: Value = serde_json::from_slice(body).map_err(|_| AwsError::bad_request("Invalid JSON body"))?;
    let content = request["TemplateContent"].clone();
    if content["Subject"].as_str().is_none_or(str::is_empty) {
        return Err(AwsError::bad_request("TemplateContent needs a Subject"));
    }
    if content["Text"].as_str().is_none() && content["Html"].as_str().is_none() {
        return Err(AwsError::bad_request("TemplateContent needs Text or Html"));
    }
    Ok((request, content))
}

/// The account of a checked request.
fn account(shared: &SesShared, headers: &HeaderMap) -> Result<String, AwsError> {
    super::ses::check_key(shared, headers)?;
    Ok(super::ses::access_key_id(headers).unwrap_or_default().to_owned())
}

async fn create(
    AxumState(shared): AxumState<Arc<SesShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AwsError> {
    let account = account(&shared, &headers)?;
    let (request, content) = template_content(&body)?;
    let name = request["TemplateName"].as_str().unwrap_or_default().to_owned();
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(AwsError::bad_request("TemplateName must be 1 to 64 of A-Z a-z 0-9 _ -"));
    }
    shared.templates().with(|templates| {
        if templates.contains_key(&(account.clone(), name.clone())) {
            return Err(AwsError {
                status: StatusCode::BAD_REQUEST,
                error_type: "AlreadyExistsException",
                message: format!("Template {name} already exists."),
            });
        }
        templates.insert((account, name), (content, OffsetDateTime::now_utc()));
        Ok(Json(json!({})))
    })
}

/// `PageSize` and `NextToken` of `ListEmailTemplates`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page {
    page_size: Option<usize>,
    next_token: Option<String>,
}

async fn list(
    AxumState(shared): AxumState<Arc<SesShared>>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Json<Value>, AwsError> {
    let account = account(&shared, &headers)?;
    let size = page.page_size.unwrap_or(10).clamp(1, 100);
    let start: usize = page
        .next_token
        .as_deref()
        .map_or(Ok(0), str::parse)
        .map_err(|_| AwsError::bad_request("Invalid NextToken"))?;
    let names: Vec<(String, i64)> = shared.templates().with(|templates| {
        templates
            .iter()
            .filter(|((owner, _), _)| *owner == account)
            .map(|((_, name), (_, created))| (name.clone(), created.unix_timestamp()))
            .collect()
    });
    let metadata: Vec<Value> = names
        .iter()
        .skip(start)
        .take(size)
        .map(|(name, created)| json!({"TemplateName": name, "CreatedTimestamp": created}))
        .collect();
    let mut body = json!({ "TemplatesMetadata": metadata });
    if start + size < names.len() {
        body["NextToken"] = Value::String((start + size).to_string());
    }
    Ok(Json(body))
}

async fn fetch(
    AxumState(shared): AxumState<Arc<SesShared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, AwsError> {
    let account = account(&shared, &headers)?;
    shared.templates().with(|templates| {
        let (content, _) = templates
            .get(&(account, name.clone()))
            .ok_or_else(|| not_found(&name))?;
        Ok(Json(json!({"TemplateName": name, "TemplateContent": content})))
    })
}

async fn update(
    AxumState(shared): AxumState<Arc<SesShared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AwsError> {
    let account = account(&shared, &headers)?;
    let (_, content) = template_content(&body)?;
    shared.templates().with(|templates| {
        let entry = templates
            .get_mut(&(account, name.clone()))
            .ok_or_else(|| not_found(&name))?;
        entry.0 = content;
        Ok(Json(json!({})))
    })
}

async fn delete(
    AxumState(shared): AxumState<Arc<SesShared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, AwsError> {
    let account = account(&shared, &headers)?;
    shared.templates().with(|templates| {
        templates
            .remove(&(account, name.clone()))
            .ok_or_else(|| not_found(&name))?;
        Ok(Json(json!({})))
    })
}
