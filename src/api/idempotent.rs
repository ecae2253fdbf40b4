//! `Idempotency-Key` for POST operations that do not run in one database transaction with
//! their work (webhook endpoint management): the key is claimed first, the operation runs,
//! then the response is stored; a failed operation releases the key so a retry runs it.
//! Payment creation and cancellation claim the key inside their own transaction instead.

use std::future::Future;

use super::auth::Merchant;
use super::payments::{claim_key, idempotency_key, request_hash};
use super::{ApiRequest, ApiResult, AppState};
use crate::store::idempotency;

/// Runs `op` at most once per `Idempotency-Key`.
pub async fn run<F, Fut>(
    state: &AppState,
    req: &ApiRequest,
    merchant: &Merchant,
    op: F,
) -> ApiResult
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult>,
{
    let Some(key) = idempotency_key(req)? else {
        return op().await;
    };
    let hash = request_hash(req, &req.body);
    {
        let client = state.store.client().await?;
        if let Some(replayed) = claim_key(state, &client, merchant.id, &key, &hash).await? {
            return Ok(replayed);
        }
    }
    let result = op().await;
    let client = state.store.client().await?;
    match &result {
        Ok(resp) if resp.status().is_success() => {
            idempotency::complete(
                &client,
                merchant.id,
                &key,
                resp.status().as_u16(),
                resp.body(),
            )
            .await?;
        }
        _ => idempotency::release(&client, merchant.id, &key).await?,
    }
    result
}
