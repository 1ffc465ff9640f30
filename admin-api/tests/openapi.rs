//! The OpenAPI document matches the routes: every route served is documented and every
//! documented operation is served, with its security scheme and its error responses.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;

/// Every route `admin_api::router` serves, as in lib.rs: adding a route means adding it here,
/// and the document must list it.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/messages"),
    ("GET", "/v1/messages/{id}"),
    ("DELETE", "/v1/messages/{id}"),
    ("DELETE", "/v1/campaigns/{id}/schedule"),
    ("POST", "/v1/business-info"),
    ("GET", "/v1/business-info"),
    ("PUT", "/v1/business-info"),
    ("GET", "/v1/business-info/status"),
    ("GET", "/v1/channels/sms/status"),
    ("POST", "/v1/channels/sms/resubmit"),
    ("POST", "/webhooks/twilio/brand-status"),
    // Served by `/v1/channels/{channel}`, documented once per channel (the body depends on it).
    ("POST", "/v1/channels/sms"),
    ("GET", "/v1/channels/sms"),
    ("DELETE", "/v1/channels/sms"),
    ("POST", "/v1/channels/whatsapp"),
    ("GET", "/v1/channels/whatsapp"),
    ("DELETE", "/v1/channels/whatsapp"),
    ("POST", "/v1/channels/email"),
    ("GET", "/v1/channels/email"),
    ("DELETE", "/v1/channels/email"),
    ("GET", "/v1/usage"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/suppressions"),
    ("POST", "/v1/suppressions"),
    ("DELETE", "/v1/suppressions/{address}"),
    ("POST", "/v1/suppressions/import"),
    ("POST", "/v1/consents"),
    ("GET", "/v1/consents"),
    ("GET", "/v1/settings"),
    ("PUT", "/v1/settings"),
    ("GET", "/v1/inbound"),
    ("POST", "/v1/campaigns/{id}/preflight"),
    ("POST", "/v1/campaigns/{id}/send"),
    ("GET", "/v1/campaigns/{id}/events"),
    ("POST", "/v1/api-keys"),
    ("GET", "/v1/api-keys"),
    ("DELETE", "/v1/api-keys/{key_id}"),
    ("POST", "/v1/admin/tenants"),
    ("GET", "/v1/admin/tenants/{id}"),
    ("PATCH", "/v1/admin/tenants/{id}"),
    ("POST", "/v1/admin/tenants/{id}/api-keys"),
    ("PUT", "/v1/admin/plans/{id}"),
    ("GET", "/v1/admin/plans/{id}"),
    ("POST", "/v1/admin/demo-tenants"),
    ("GET", "/v1/admin/demo-tenants"),
    ("DELETE", "/v1/admin/demo-tenants/{id}"),
    ("POST", "/webhooks/twilio/status"),
    ("POST", "/webhooks/twilio/inbound"),
    ("POST", "/webhooks/ses"),
    ("POST", "/unsubscribe/{token}"),
    ("POST", "/v1/templates/email"),
    ("GET", "/v1/templates/email"),
    ("PUT", "/v1/templates/email/{name}"),
    ("DELETE", "/v1/templates/email/{name}"),
    ("GET", "/unsubscribe/{token}"),
    ("POST", "/v1/channels/whatsapp/senders"),
    ("GET", "/v1/channels/whatsapp/senders"),
    ("GET", "/v1/channels/whatsapp/senders/{number}"),
    ("DELETE", "/v1/channels/whatsapp/senders/{number}"),
    ("POST", "/v1/channels/whatsapp/senders/{number}/verify"),
    ("POST", "/webhooks/twilio/sender-status"),
    ("POST", "/v1/templates/whatsapp"),
    ("GET", "/v1/templates/whatsapp"),
    ("GET", "/v1/templates/whatsapp/{sid}"),
    ("DELETE", "/v1/templates/whatsapp/{sid}"),
    ("POST", "/v1/templates/whatsapp/{sid}/submit"),
    ("POST", "/v1/templates/whatsapp/import"),
    ("POST", "/webhooks/twilio/content-status"),
    ("GET", "/openapi.json"),
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn document() -> Value {
    let json = admin_api::openapi().to_json().expect("the document serialises");
    serde_json::from_str(&json).expect("the document is JSON")
}

/// Every (method, path, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, operation) in item.as_object().expect("a path item is an object") {
            let method = method.to_uppercase();
            if METHODS.contains(&method.as_str()) || ["HEAD", "OPTIONS", "TRACE"].contains(&method.as_str()) {
                operations.push((method, path.clone(), operation.clone()));
            }
        }
    }
    operations
}

#[test]
fn the_document_lists_every_route_and_no_other() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(served.len(), ROUTES.len(), "the table lists a route twice");
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(missing.is_empty(), "routes missing from the document: {missing:?}");
    assert!(extra.is_empty(), "documented operations no route serves: {extra:?}");
    assert_eq!(operations(&doc).len(), ROUTES.len());
}

#[test]
fn each_channel_save_names_its_own_body() {
    let doc = document();
    let body = |channel: &str| {
        doc["paths"][format!("/v1/channels/{channel}")]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"]
            .clone()
    };
    assert_eq!(body("sms"), "#/components/schemas/TwilioCredentialsRequest");
    assert_eq!(body("whatsapp"), "#/components/schemas/TwilioCredentialsRequest");
    assert_eq!(body("email"), "#/components/schemas/SesCredentialsRequest");
    let ses = &doc["components"]["schemas"]["SesCredentialsRequest"];
    assert_eq!(ses["additionalProperties"], false);
    assert!(ses["properties"]["from_address"]["allOf"].is_array(), "{ses}");
}

#[test]
fn the_document_is_openapi_3_1_with_its_title_and_version() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1."), "openapi {version}");
    assert_eq!(doc["info"]["title"], "EngageNinja Dispatch admin API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let ids: Vec<String> = operations(&doc)
        .into_iter()
        .map(|(_, _, operation)| operation["operationId"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "operation ids are not unique: {ids:?}");
    assert!(ids.iter().all(|id| !id.is_empty()), "an operation has no id");
}

#[test]
fn every_api_operation_documents_its_errors_and_security() {
    let doc = document();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["platform_admin"]["scheme"], "bearer");
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().expect("responses");
        let security: Vec<String> = operation["security"]
            .as_array()
            .map(|requirements| {
                requirements
                    .iter()
                    .flat_map(|requirement| requirement.as_object().into_iter().flat_map(|r| r.keys().cloned()))
                    .collect()
            })
            .unwrap_or_default();
        if path.starts_with("/v1/") || path.starts_with("/webhooks/") {
            assert!(
                responses.keys().any(|status| status.starts_with('4')),
                "{method} {path} documents no 4xx"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"].is_object(),
                        "{method} {path} {status} has no body schema"
                    );
                }
            }
        }
        let expected: &[&str] = if path.starts_with("/v1/admin/") {
            &["platform_admin"]
        } else if path.starts_with("/v1/") {
            &["bearer"]
        } else {
            &[]
        };
        assert_eq!(security, expected, "{method} {path} security");
        if path.starts_with("/webhooks/twilio/") {
            let parameters = operation["parameters"].as_array().expect("the signature header");
            assert!(
                parameters
                    .iter()
                    .any(|p| p["in"] == "header" && p["name"] == "X-Twilio-Signature"),
                "{method} {path} does not document X-Twilio-Signature"
            );
        }
    }
}

/// A router on a fresh embedded store, answering on a local port.
/// `{param}` segments filled with a value the handler's path extractor takes.
fn concrete(path: &str) -> String {
    path.replace("{channel}", "sms")
        .replace("{id}", "x1")
        .replace("{key_id}", "x1")
        .replace("{token}", "k1.AAAA")
        .replace("{name}", "welcome")
}

#[tokio::test]
async fn the_router_serves_exactly_the_documented_methods() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = support::spawn(common::testing::settings(dir.path())).await;
    let base = api.url("");
    let client = reqwest::Client::new();
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, path)| *path).collect();
    for path in paths {
        for method in METHODS {
            let served = ROUTES.contains(&(method, path));
            let response = client
                .request(method.parse().expect("method"), format!("{base}{}", concrete(path)))
                .send()
                .await
                .expect("an answer");
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let fell_through = status == 404 && body.contains("route_not_found");
            if served {
                assert!(
                    status != 405 && !fell_through,
                    "{method} {path} is documented but not served: {status} {body}"
                );
            } else {
                assert!(status == 405, "{method} {path} is served ({status}) but not documented");
            }
        }
    }
    let doc: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(doc, document(), "GET /openapi.json answers the document");
    // The operational endpoints are on their own listener, never on the public port.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let answer = client.get(format!("{base}{path}")).send().await.expect("an answer");
        assert_eq!(answer.status().as_u16(), 404, "{path} is served on the API port");
    }
    api.shutdown().await;
}
