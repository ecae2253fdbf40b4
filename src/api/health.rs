//! `/health/live`, `/health/ready` and `/metrics`.

use bytes::Bytes;
use serde_json::json;
use warp::http::StatusCode;

use super::{bytes_response, ApiResult, AppState};
use crate::store::Store;

fn health_json(status: StatusCode, body: serde_json::Value) -> ApiResult {
    let bytes = serde_json::to_vec(&body).map_err(|e| super::ApiError::Internal(e.into()))?;
    Ok(bytes_response(
        status,
        "application/health+json",
        bytes.into(),
    ))
}

/// Liveness: the process answers. No external checks, so a database outage never gets the
/// gateway restarted by an orchestrator.
pub async fn live(_state: &AppState) -> ApiResult {
    health_json(StatusCode::OK, json!({"status": "pass"}))
}

/// Readiness: PostgreSQL answers and the schema is at the version this binary expects.
pub async fn ready(state: &AppState) -> ApiResult {
    let expected = Store::latest_migration();
    let (status, output) = match state.store.ping().await {
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unreachable".to_string(),
        ),
        Ok(_) => match state.store.applied_migration().await {
            Ok(Some(v)) if v >= expected => (StatusCode::OK, String::new()),
            Ok(v) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("schema at version {}, expected {expected}", v.unwrap_or(0)),
            ),
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database unreachable".to_string(),
            ),
        },
    };
    if status == StatusCode::OK {
        health_json(status, json!({"status": "pass"}))
    } else {
        health_json(status, json!({"status": "fail", "output": output}))
    }
}

/// Prometheus text format; pool gauges are refreshed at scrape time.
pub async fn metrics(state: &AppState) -> ApiResult {
    let pool = state.store.pool_status();
    let db = &state.metrics.db;
    let idle = pool.available as i64;
    db.connections.with_label_values(&["idle"]).set(idle);
    db.connections
        .with_label_values(&["in_use"])
        .set(pool.size as i64 - idle);
    db.waiting.set(pool.waiting as i64);
    Ok(bytes_response(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        Bytes::from(state.metrics.render()),
    ))
}
