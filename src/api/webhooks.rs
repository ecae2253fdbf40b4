//! `/v1/webhook-endpoints` and `/v1/webhook-deliveries`.

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;
use warp::http::StatusCode;

use super::auth;
use super::{json, ApiError, ApiRequest, ApiResult, AppState};
use crate::models::rfc3339;
use deadpool_postgres::Transaction;

use crate::store::webhooks::{self as webhook_rows, DeliveryFilter, WebhookEndpoint};
use crate::webhook::signature::generate_secret;
use crate::webhook::ssrf::normalise;
use crate::webhook::ssrf::{check_target, TargetError};

/// Every event type an endpoint can subscribe to.
pub const EVENT_TYPES: [&str; 8] = [
    "payment.partially_paid",
    "payment.processing",
    "payment.confirmed",
    "payment.expired",
    "payment.canceled",
    "payment.reorged",
    "payment.late_funds",
    "payment.swept",
];

/// A webhook endpoint; `secret` only in the create and rotate responses.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointObject {
    id: String,
    object: &'static str,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    status: String,
    disabled_reason: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_secret_expires_at: Option<String>,
}

fn endpoint_object(e: WebhookEndpoint, secret: Option<String>) -> EndpointObject {
    EndpointObject {
        id: e.id.to_string(),
        object: "webhook_endpoint",
        url: e.url,
        events: e.events,
        description: e.description,
        status: e.status,
        disabled_reason: e.disabled_reason,
        created_at: rfc3339(&e.created_at),
        secret,
        previous_secret_expires_at: e
            .previous_expires_at
            .filter(|t| *t > chrono::Utc::now())
            .map(|t| rfc3339(&t)),
    }
}

fn body_object(req: &ApiRequest) -> Result<Map<String, Value>, ApiError> {
    if req.body.is_empty() {
        return Ok(Map::new());
    }
    match super::input::parse_json(&req.body)? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::invalid("the body must be a JSON object")),
    }
}

/// `POST /v1/webhook-endpoints` body, as documented; validated field by field below.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateEndpointBody {
    /// http(s) URL, at most 2048 characters; internal addresses are refused.
    url: String,
    /// Event types to receive; all when absent or empty.
    events: Option<Vec<String>>,
    /// Free text, at most 500 characters.
    description: Option<String>,
}

/// Fields of [`CreateEndpointBody`], as the parser accepts them.
const CREATE_ENDPOINT_FIELDS: [&str; 3] = ["url", "events", "description"];

/// `POST /v1/webhook-endpoints/{id}/rotate-secret` body.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RotateSecretBody {
    /// How long the previous secret keeps signing (0-604800, default `webhooks.rotation_grace_seconds`).
    grace_seconds: Option<u64>,
}

fn reject_unknown(obj: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::param(k, format!("unknown parameter {k}"))),
        None => Ok(()),
    }
}

/// `POST /v1/webhook-endpoints` `{url, events?, description?}`: 201 with the secret, shown once.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", request_body = CreateEndpointBody,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = EndpointObject), (status = 400, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn create_endpoint(state: &AppState, req: &ApiRequest) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    super::idempotent::run(state, req, &merchant, async |tx| {
        create_endpoint_once(state, req, merchant.id, tx).await
    })
    .await
    .map(super::idempotent::Ran::into_response)
}

async fn create_endpoint_once(
    state: &AppState,
    req: &ApiRequest,
    merchant_id: Uuid,
    client: &Transaction<'_>,
) -> ApiResult {
    let obj = body_object(req)?;
    reject_unknown(&obj, &CREATE_ENDPOINT_FIELDS)?;
    let url = match obj.get("url") {
        Some(Value::String(u)) if !u.is_empty() && u.chars().count() <= 2048 => {
            normalise(u, &state.settings.webhooks.allowed_ports)
                .map_err(|e| ApiError::param("url", e.to_string()))?
                .to_string()
        }
        _ => {
            return Err(ApiError::param(
                "url",
                "url must be an http(s) URL of at most 2048 characters",
            ))
        }
    };
    let events: Vec<String> = match obj.get("events") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => {
            let mut out = Vec::new();
            for e in list {
                match e.as_str() {
                    Some(t) if EVENT_TYPES.contains(&t) => {
                        if !out.iter().any(|x: &String| x == t) {
                            out.push(t.to_string());
                        }
                    }
                    _ => {
                        return Err(ApiError::param(
                            "events",
                            format!("events must be a list of: {}", EVENT_TYPES.join(", ")),
                        ))
                    }
                }
            }
            out
        }
        Some(_) => {
            return Err(ApiError::param(
                "events",
                "events must be a list of event types",
            ))
        }
    };
    let description = match obj.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => {
            super::input::text("description", d, 0, 500)?;
            Some(d.clone())
        }
        Some(_) => {
            return Err(ApiError::param(
                "description",
                "description must be a string of at most 500 characters",
            ))
        }
    };
    check_target(&url, state.settings.webhooks.allow_private_targets)
        .await
        .map_err(|e| match e {
            TargetError::Forbidden => ApiError::param(
                "url",
                "url resolves to a loopback, private, link-local or metadata address; such targets are refused",
            ),
            other => ApiError::param("url", other.to_string()),
        })?;
    // Counted under the merchant's row lock, so concurrent creates cannot pass the quota.
    let quota = state.settings.webhooks.max_endpoints_per_merchant;
    if webhook_rows::lock_and_count_endpoints(client, merchant_id).await? >= u64::from(quota) {
        return Err(ApiError::Conflict(format!(
            "webhook endpoint quota reached ({quota} per merchant); delete one first"
        )));
    }
    let secret = generate_secret();
    let endpoint = webhook_rows::create_endpoint(
        client,
        merchant_id,
        &url,
        &events,
        description.as_deref(),
        &secret,
    )
    .await?;
    slog::info!(state.log, "webhook endpoint created";
        "request_id" => &req.request_id, "endpoint_id" => %endpoint.id);
    json(
        StatusCode::CREATED,
        &endpoint_object(endpoint, Some(secret)),
    )
}

/// A page of objects.
#[derive(Serialize, utoipa::ToSchema)]
pub struct List<T: utoipa::ToSchema> {
    object: &'static str,
    data: Vec<T>,
    has_more: bool,
}

/// `GET /v1/webhook-endpoints`
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks",
    responses((status = 200, body = List<EndpointObject>)), security(("api_key" = [])))]
pub async fn list_endpoints(state: &AppState, req: &ApiRequest) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let client = state.store.client().await?;
    let data = webhook_rows::list_endpoints(&client, merchant.id)
        .await?
        .into_iter()
        .map(|e| endpoint_object(e, None))
        .collect();
    json(
        StatusCode::OK,
        &List {
            object: "list",
            data,
            has_more: false,
        },
    )
}

fn parse_id(id: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound(format!("no such {what}")))
}

/// `DELETE /v1/webhook-endpoints/{id}`
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, description = "Deleted"), (status = 404, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn delete_endpoint(state: &AppState, req: &ApiRequest, id: &str) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let id = parse_id(id, "webhook endpoint")?;
    let mut client = state.store.client().await?;
    let tx = client.transaction().await?;
    if !webhook_rows::delete_endpoint(&tx, merchant.id, id).await? {
        return Err(ApiError::NotFound("no such webhook endpoint".into()));
    }
    tx.commit().await?;
    json(
        StatusCode::OK,
        &serde_json::json!({"id": id.to_string(), "object": "webhook_endpoint", "deleted": true}),
    )
}

/// `POST /v1/webhook-endpoints/{id}/rotate-secret` `{grace_seconds?}`: a new secret; the
/// old one keeps signing (both signatures sent) during the grace period.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = RotateSecretBody, content_type = "application/json"),
    responses((status = 200, body = EndpointObject), (status = 404, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn rotate_secret(state: &AppState, req: &ApiRequest, id: &str) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let id = parse_id(id, "webhook endpoint")?;
    super::idempotent::run(state, req, &merchant, async |tx| {
        rotate_secret_once(state, req, merchant.id, id, tx).await
    })
    .await
    .map(super::idempotent::Ran::into_response)
}

async fn rotate_secret_once(
    state: &AppState,
    req: &ApiRequest,
    merchant_id: Uuid,
    id: Uuid,
    client: &Transaction<'_>,
) -> ApiResult {
    let obj = body_object(req)?;
    reject_unknown(&obj, &["grace_seconds"])?;
    let grace = match obj.get("grace_seconds") {
        None | Some(Value::Null) => state.settings.webhooks.rotation_grace.as_secs(),
        Some(v) => v.as_u64().filter(|g| *g <= 7 * 86_400).ok_or_else(|| {
            ApiError::param(
                "grace_seconds",
                "grace_seconds must be an integer from 0 to 604800",
            )
        })?,
    };
    let secret = generate_secret();
    let endpoint = webhook_rows::rotate_secret(client, merchant_id, id, &secret, grace)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such webhook endpoint".into()))?;
    slog::info!(state.log, "webhook secret rotated";
        "request_id" => &req.request_id, "endpoint_id" => %id, "grace_seconds" => grace);
    json(StatusCode::OK, &endpoint_object(endpoint, Some(secret)))
}

#[derive(Serialize, utoipa::ToSchema)]
struct AttemptObject {
    at: String,
    http_status: Option<i16>,
    latency_ms: i32,
    error: Option<String>,
}

/// A delivery of one event to one endpoint, with its attempts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryObject {
    id: String,
    object: &'static str,
    endpoint: String,
    event: String,
    event_type: String,
    payment: String,
    status: String,
    next_attempt_at: Option<String>,
    created_at: String,
    completed_at: Option<String>,
    attempts: Vec<AttemptObject>,
}

/// `GET /v1/webhook-deliveries?endpoint=&event=&status=&limit=&starting_after=`
#[utoipa::path(get, path = "/v1/webhook-deliveries", tag = "webhooks",
    params(("endpoint" = Option<String>, Query), ("event" = Option<String>, Query),
        ("status" = Option<String>, Query, description = "pending, succeeded, failed or dead"),
        ("limit" = Option<u32>, Query), ("starting_after" = Option<String>, Query)),
    responses((status = 200, body = List<DeliveryObject>), (status = 400, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn list_deliveries(state: &AppState, req: &ApiRequest) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let mut f = DeliveryFilter {
        limit: 20,
        ..Default::default()
    };
    let params = super::input::query(
        &req.query,
        &["endpoint", "event", "status", "limit", "starting_after"],
    )?;
    for (k, v) in params {
        match k.as_str() {
            "endpoint" => {
                f.endpoint = Some(
                    Uuid::parse_str(&v)
                        .map_err(|_| ApiError::param("endpoint", "not an endpoint id"))?,
                )
            }
            "event" => f.event = Some(v),
            "status" => {
                if !["pending", "succeeded", "failed", "dead"].contains(&v.as_str()) {
                    return Err(ApiError::param(
                        "status",
                        "status must be pending, succeeded, failed or dead",
                    ));
                }
                f.status = Some(v);
            }
            "limit" => f.limit = super::page_limit(&v)?,
            "starting_after" => f.starting_after = Some(super::page_cursor(&v, "delivery")?),
            other => return Err(ApiError::param(other, format!("unknown parameter {other}"))),
        }
    }
    let client = state.store.client().await?;
    let (page, has_more) = webhook_rows::list_deliveries(&client, merchant.id, &f).await?;
    let data = page
        .into_iter()
        .map(|d| {
            let open = d.status == "pending" || d.status == "failed";
            DeliveryObject {
                id: d.id.to_string(),
                object: "webhook_delivery",
                endpoint: d.endpoint_id.to_string(),
                event: d.event_id,
                event_type: d.event_type,
                payment: d.payment_id.to_string(),
                status: d.status,
                next_attempt_at: open.then(|| rfc3339(&d.next_attempt_at)),
                created_at: rfc3339(&d.created_at),
                completed_at: d.completed_at.as_ref().map(rfc3339),
                attempts: d
                    .attempts
                    .into_iter()
                    .map(|a| AttemptObject {
                        at: rfc3339(&a.at),
                        http_status: a.http_status,
                        latency_ms: a.latency_ms,
                        error: a.error,
                    })
                    .collect(),
            }
        })
        .collect();
    json(
        StatusCode::OK,
        &List {
            object: "list",
            data,
            has_more,
        },
    )
}

/// `POST /v1/webhook-deliveries/{id}/redeliver`: due now, from any state; the next attempt
/// carries the same event id.
#[utoipa::path(post, path = "/v1/webhook-deliveries/{id}/redeliver", tag = "webhooks",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, description = "Due now"), (status = 404, body = super::error::ErrorBody<'_>),
        (status = 409, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn redeliver(state: &AppState, req: &ApiRequest, id: &str) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let id = parse_id(id, "webhook delivery")?;
    super::idempotent::run(state, req, &merchant, async |tx| {
        redeliver_once(merchant.id, id, tx).await
    })
    .await
    .map(super::idempotent::Ran::into_response)
}

async fn redeliver_once(merchant_id: Uuid, id: Uuid, client: &Transaction<'_>) -> ApiResult {
    match webhook_rows::redeliver(client, merchant_id, id).await? {
        None => Err(ApiError::NotFound("no such webhook delivery".into())),
        Some(false) => Err(ApiError::Conflict(
            "the delivery's endpoint is disabled or deleted".into(),
        )),
        Some(true) => json(
            StatusCode::ACCEPTED,
            &serde_json::json!({"id": id.to_string(), "object": "webhook_delivery", "status": "pending"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_endpoint_fields_are_the_parsed_ones() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(CreateEndpointBody::schema()).expect("schema");
        let mut documented: Vec<String> = schema["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        documented.sort();
        let mut parsed: Vec<String> = CREATE_ENDPOINT_FIELDS
            .iter()
            .map(|f| f.to_string())
            .collect();
        parsed.sort();
        assert_eq!(documented, parsed);
    }
}
