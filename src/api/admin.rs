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
