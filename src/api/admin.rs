//! Operator endpoints under `/admin/v1`, guarded by `admin.token`.

use serde_json::json;
use subtle::ConstantTimeEq;
use warp::http::StatusCode;

use super::{json, ApiError, ApiRequest, ApiResult, AppState};

fn authorize(state: &AppState, req: &ApiRequest) -> Result<(), ApiError> {
    let presented = req
        .headers
        .get(warp::http::header::AUTHORIZATION)
        .and_then(super::auth::bearer)
        .ok_or(ApiError::Authentication("missing admin token"))?;
    let expected = state.settings.admin.token.expose().as_bytes();
    // Compare fixed-size digests so that neither content nor length leaks through timing.
    let a = crate::domain::apikey::hash_key(presented.trim());
    let b = crate::domain::apikey::hash_key(std::str::from_utf8(expected).unwrap_or(""));
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(ApiError::Authentication("invalid admin token"))
    }
}

/// `POST /admin/v1/actors/{chain}/{actor}/restart`: stops one actor; its supervisor
/// restarts it at once (reason `manual`). `chain` is a chain name or `webhooks`.
pub async fn restart_actor(
    state: &AppState,
    req: &ApiRequest,
    chain: &str,
    actor: &str,
) -> ApiResult {
    authorize(state, req)?;
    // 404 for an actor the configuration does not have; 409 for one that exists but is not
    // running right now (restarting, or its chain melted down).
    let known = state
        .known_actors
        .iter()
        .any(|(c, a)| a == actor && (c == chain || (c.is_empty() && chain == "webhooks")));
    if !known {
        return Err(ApiError::NotFound(format!("no actor {chain}.{actor}")));
    }
    match state.directory.restart(chain, actor).await {
        Some(true) => {
            slog::warn!(state.log, "operator restarted an actor";
                "request_id" => &req.request_id, "chain" => chain, "actor" => actor);
            json(
                StatusCode::ACCEPTED,
                &json!({"chain": chain, "actor": actor, "restarting": true}),
            )
        }
        Some(false) => Err(ApiError::Conflict(format!(
            "{chain}.{actor} is not running (it is restarting)"
        ))),
        None => Err(ApiError::Conflict(format!(
            "{chain}.{actor} is not running (its supervisor is down or restarting)"
        ))),
    }
}

/// `GET /admin/v1/payments/{id}/timeline`: the payment's transitions, transfers, events,
/// delivery attempts and sweeps in time order, with their trace ids. Any merchant's
/// payment: this is the operator's view.
pub async fn payment_timeline(state: &AppState, req: &ApiRequest, id: &str) -> ApiResult {
    authorize(state, req)?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| ApiError::NotFound("no such payment".into()))?;
    let c = state.store.client().await?;
    let steps = crate::store::timeline::timeline(&c, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such payment".into()))?;
    json(StatusCode::OK, &timeline_object(id, steps))
}

/// The JSON shape of a timeline (shared with `ctrip payment timeline`).
pub fn timeline_object(
    id: uuid::Uuid,
    steps: Vec<crate::store::timeline::TimelineEntry>,
) -> crate::models::TimelineObject {
    crate::models::TimelineObject {
        object: "timeline",
        payment_id: id.to_string(),
        steps: steps
            .into_iter()
            .map(|s| crate::models::TimelineStep {
                at: crate::models::rfc3339(&s.at),
                kind: s.kind,
                trace_id: s.trace_id,
                detail: s.detail,
            })
            .collect(),
    }
}
