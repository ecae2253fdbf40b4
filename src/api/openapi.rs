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
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// `GET /openapi.json` (no auth).
pub async fn document() -> ApiResult {
    let json = ApiDoc::openapi()
        .to_json()
        .map_err(|e| ApiError::Internal(e.into()))?;
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
