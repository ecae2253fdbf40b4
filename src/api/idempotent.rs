//! `Idempotency-Key` for every POST route, one rule for all: the key is claimed, the
//! operation runs and its response is stored in one database transaction, so a crash, a
//! failed write or a client that disconnects mid-request leaves either all three or none
//! (a later retry then runs the operation). Two requests are "the same" when method, path
//! and canonical JSON body match (object keys sorted, whitespace ignored). Keys are purged
//! a day after first use by the janitor worker.

use deadpool_postgres::{GenericClient, Transaction};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use warp::http::{header, StatusCode};

use super::auth::Caller;
use super::{bytes_response, ApiError, ApiRequest, ApiResult, AppState};
use crate::store::idempotency::{self, Claim};

/// The `Idempotency-Key` header, validated.
pub fn idempotency_key(req: &ApiRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => Ok(Some(k.to_string())),
        _ => Err(ApiError::param(
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// The body as compared between requests: JSON re-serialized with sorted keys, so key
/// order and whitespace do not matter; any other body as sent.
fn canonical_body(body: &[u8]) -> Vec<u8> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok())
        .unwrap_or_else(|| body.to_vec())
}

/// Hash of what makes two requests "the same": method, path and the canonical body.
pub fn request_hash(req: &ApiRequest) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(req.method.as_str().as_bytes());
    h.update(b" ");
    h.update(req.path.as_bytes());
    h.update(b"\n");
    h.update(canonical_body(&req.body));
    h.finalize().to_vec()
}

fn replay(status: u16, body: Vec<u8>, state: &AppState) -> ApiResult {
    state.metrics.http.idempotent_replays.inc();
    let status = StatusCode::from_u16(status).map_err(|e| ApiError::Internal(e.into()))?;
    let mut r = bytes_response(status, "application/json", body.into());
    r.headers_mut().insert(
        "idempotent-replayed",
        header::HeaderValue::from_static("true"),
    );
    Ok(r)
}

/// The answer to a request whose key was judged: `Ok(None)` when it was new (answer with
/// the fresh response), `Ok(Some(response))` for a replay, a conflict otherwise.
pub fn answer(
    state: &AppState,
    claim: Claim,
) -> Result<Option<warp::http::Response<bytes::Bytes>>, ApiError> {
    match claim {
        Claim::New => Ok(None),
        Claim::Replay { status, body } => replay(status, body, state).map(Some),
        Claim::Mismatch => Err(ApiError::Conflict(
            "Idempotency-Key was already used with a different request".into(),
        )),
        Claim::InProgress => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still in progress".into(),
        )),
    }
}

/// Claims an `Idempotency-Key` on `c` (a transaction that will also run the operation).
/// `Ok(Some(response))` when the request is a replay (answer with it), `Ok(None)` when it
/// is new (run it, then store its response in the same transaction).
async fn claim_key(
    state: &AppState,
    c: &impl GenericClient,
    merchant_id: Uuid,
    key: &str,
    hash: &[u8],
) -> Result<Option<warp::http::Response<bytes::Bytes>>, ApiError> {
    answer(state, idempotency::claim(c, merchant_id, key, hash).await?)
}

/// How a POST was answered.
pub enum Ran {
    /// The operation ran and committed now.
    Fresh(warp::http::Response<bytes::Bytes>),
    /// The stored response of an earlier request with the same key.
    Replayed(warp::http::Response<bytes::Bytes>),
}

impl Ran {
    /// The response to send.
    pub fn into_response(self) -> warp::http::Response<bytes::Bytes> {
        match self {
            Self::Fresh(r) | Self::Replayed(r) => r,
        }
    }
}

/// Runs `op` in one transaction with the key's claim and stored response. Without a key it
/// still runs in a transaction of its own. An error, a non-2xx answer or a dropped request
/// rolls everything back, the claim included. Validate the request before calling this, so
/// a malformed request is a 400 whatever key it carries.
pub async fn run(
    state: &AppState,
    req: &ApiRequest,
    merchant: &Caller,
    op: impl AsyncFnOnce(&Transaction<'_>) -> ApiResult,
) -> Result<Ran, ApiError> {
    let key = idempotency_key(req)?;
    let mut client = state.store.client().await?;
    let tx = client.transaction().await?;
    if let Some(key) = &key {
        if let Some(replayed) = claim_key(state, &tx, merchant.id, key, &request_hash(req)).await? {
            return Ok(Ran::Replayed(replayed));
        }
    }
    let resp = op(&tx).await?;
    if !resp.status().is_success() {
        return Ok(Ran::Fresh(resp));
    }
    if let Some(key) = &key {
        idempotency::complete(&tx, merchant.id, key, resp.status().as_u16(), resp.body()).await?;
    }
    tx.commit().await?;
    Ok(Ran::Fresh(resp))
}
