//! `GET /openapi.json`: an OpenAPI 3.1 document generated from the handlers' annotations and
//! the response types themselves (utoipa), never kept by hand.

use bytes::Bytes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use warp::http::StatusCode;

use super::{bytes_response, ApiError, ApiResult};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = doc.components.as_mut() {
            c.add_security_scheme(
                "api_key",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("A merchant API key, ck_live_…"))
                        .build(),
                ),
            );
        }
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "cTrip Gateway", description = "Merchant REST API"),
    paths(
        super::chains::list,
        super::payments::create,
        super::payments::list,
        super::payments::get,
        super::payments::cancel,
        super::webhooks::create_endpoint,
        super::webhooks::list_endpoints,
        super::webhooks::delete_endpoint,
        super::webhooks::rotate_secret,
        super::webhooks::list_deliveries,
        super::webhooks::redeliver,
        super::treasuries::list,
        super::treasuries::set,
        super::treasuries::delete,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The document as served: the generated one, completed with the statuses every
/// operation of a kind can return (so no client meets an undocumented one) and with
/// operation ids made unique from method and path.
pub fn document_json() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    complete(&mut doc);
    doc
}

fn error_response(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

fn complete(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let slug: String = path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| s.trim_matches(|c| c == '{' || c == '}').replace('-', "_"))
                .collect::<Vec<_>>()
                .join("_");
            op.insert(
                "operationId".into(),
                serde_json::Value::String(format!("{method}_{slug}")),
            );
            let secured = op.get("security").is_some();
            let idempotent = op
                .get("parameters")
                .and_then(|p| p.as_array())
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"));
            let has_body = method == "post";
            let responses = op
                .entry("responses")
                .or_insert_with(|| serde_json::json!({}));
            let Some(responses) = responses.as_object_mut() else {
                continue;
            };
            let mut add = |code: &str, description: &str| {
                responses
                    .entry(code.to_string())
                    .or_insert_with(|| error_response(description));
            };
            add(
                "400",
                "Invalid input: a malformed parameter or body, or an unknown or repeated query parameter",
            );
            add(
                "500",
                "Internal error (logged with its cause, never echoed)",
            );
            add("503", "The database is unavailable right now; retry");
            if secured {
                add("401", "Missing, invalid or revoked API key");
            }
            if has_body {
                add("408", "The request body did not arrive in time");
                add(
                    "413",
                    "The request body is larger than the configured limit",
                );
            }
            if idempotent {
                add(
                    "409",
                    "Idempotency-Key reused with another request, or still in progress",
                );
            }
            if path.contains('{') {
                add("404", "No such object for this merchant");
            }
        }
    }
}

/// `GET /openapi.json` (no auth).
pub async fn document() -> ApiResult {
    let json = serde_json::to_vec(&document_json()).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(bytes_response(
        StatusCode::OK,
        "application/json",
        Bytes::from(json),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_lists_its_statuses_under_a_unique_id() {
        let doc = document_json();
        let mut ids = std::collections::HashSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let id = op["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_string()), "operationId {id} twice");
                let r = &op["responses"];
                for code in ["400", "500", "503"] {
                    assert!(r.get(code).is_some(), "{method} {path}: {code}");
                }
                if op.get("security").is_some() {
                    assert!(r.get("401").is_some(), "{method} {path}: 401");
                }
            }
        }
        assert!(ids.len() >= 11);
        let cancel = &doc["paths"]["/v1/payments/{id}/cancel"]["post"]["responses"];
        for code in ["200", "400", "401", "404", "408", "409", "413"] {
            assert!(cancel.get(code).is_some(), "cancel {code}");
        }
    }

    #[test]
    fn documents_every_v1_endpoint() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/v1/chains",
            "/v1/payments",
            "/v1/payments/{id}",
            "/v1/payments/{id}/cancel",
            "/v1/webhook-endpoints",
            "/v1/webhook-endpoints/{id}",
            "/v1/webhook-endpoints/{id}/rotate-secret",
            "/v1/webhook-deliveries",
            "/v1/webhook-deliveries/{id}/redeliver",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        assert!(schemas.contains_key("Payment"));
        let payment = &schemas["Payment"]["properties"];
        for f in [
            "amount_raw",
            "address",
            "transfers",
            "history",
            "settlement",
            "exception",
        ] {
            assert!(payment.get(f).is_some(), "Payment.{f}");
        }
    }
}
