//! `GET /v1/treasuries`, `PUT /v1/treasuries/{chain}`, `DELETE /v1/treasuries/{chain}`:
//! where a merchant's swept funds go on each chain. Without a treasury of its own, a
//! merchant's funds go to the chain's configured `treasury`.

use std::str::FromStr;

use alloy::primitives::Address;
use serde::Serialize;
use serde_json::Value;
use warp::http::StatusCode;

use super::{auth, json, ApiError, ApiRequest, ApiResult, AppState};
use crate::config::ChainSettings;
use crate::store::treasuries;

/// Where one chain's swept funds go for the merchant.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TreasuryObject {
    object: &'static str,
    chain: String,
    /// EIP-55 address; null when neither the merchant nor the chain has one (no sweeping).
    address: Option<String>,
    /// `merchant` (set through this API), `chain` (the configured default) or null.
    source: Option<&'static str>,
}

/// Every configured chain's treasury for the merchant.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TreasuryList {
    object: &'static str,
    data: Vec<TreasuryObject>,
}

/// `PUT /v1/treasuries/{chain}` body.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SetTreasuryBody {
    /// 20-byte hex address (not the zero address).
    address: String,
}

fn object(chain: &ChainSettings, own: Option<Address>) -> TreasuryObject {
    let (address, source) = match (own, chain.treasury) {
        (Some(a), _) => (Some(a), Some("merchant")),
        (None, Some(a)) => (Some(a), Some("chain")),
        (None, None) => (None, None),
    };
    TreasuryObject {
        object: "treasury",
        chain: chain.name.clone(),
        address: address.map(|a| a.to_checksum(None)),
        source,
    }
}

fn chain<'a>(state: &'a AppState, name: &str) -> Result<&'a ChainSettings, ApiError> {
    state
        .chains
        .get(name)
        .ok_or_else(|| ApiError::NotFound("no such chain".into()))
}

/// `GET /v1/treasuries`
#[utoipa::path(get, path = "/v1/treasuries", tag = "treasuries",
    responses((status = 200, body = TreasuryList), (status = 401, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn list(state: &AppState, req: &ApiRequest) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let client = state.store.client().await?;
    let own = treasuries::list(&client, merchant.id).await?;
    let data = state
        .settings
        .chains
        .iter()
        .map(|c| {
            let mine = own
                .iter()
                .find(|(name, _)| *name == c.name)
                .map(|(_, a)| *a);
            object(c, mine)
        })
        .collect();
    json(
        StatusCode::OK,
        &TreasuryList {
            object: "list",
            data,
        },
    )
}

/// `PUT /v1/treasuries/{chain}` `{address}`: the merchant's own treasury on that chain.
/// Sweeps signed from now on use it; sweeps already in flight keep theirs.
#[utoipa::path(put, path = "/v1/treasuries/{chain}", tag = "treasuries", request_body = SetTreasuryBody,
    params(("chain" = String, Path)),
    responses((status = 200, body = TreasuryObject), (status = 400, body = super::error::ErrorBody<'_>),
        (status = 404, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn set(state: &AppState, req: &ApiRequest, name: &str) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let chain = chain(state, name)?;
    let body = match super::input::parse_json(&req.body)? {
        Value::Object(m) => m,
        _ => return Err(ApiError::invalid("the body must be a JSON object")),
    };
    if let Some(k) = body.keys().find(|k| k.as_str() != "address") {
        return Err(ApiError::param(k, format!("unknown parameter {k}")));
    }
    let address = match body.get("address") {
        Some(Value::String(s)) => Address::from_str(s)
            .ok()
            .filter(|a| !a.is_zero())
            .ok_or_else(|| {
                ApiError::param("address", "address must be a 20-byte hex address, not zero")
            })?,
        _ => return Err(ApiError::param("address", "address is required")),
    };
    let client = state.store.client().await?;
    treasuries::set(&client, merchant.id, &chain.name, &address).await?;
    json(StatusCode::OK, &object(chain, Some(address)))
}

/// `DELETE /v1/treasuries/{chain}`: back to the chain's configured treasury.
#[utoipa::path(delete, path = "/v1/treasuries/{chain}", tag = "treasuries",
    params(("chain" = String, Path)),
    responses((status = 200, body = TreasuryObject), (status = 404, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn delete(state: &AppState, req: &ApiRequest, name: &str) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let chain = chain(state, name)?;
    let client = state.store.client().await?;
    treasuries::delete(&client, merchant.id, &chain.name).await?;
    json(StatusCode::OK, &object(chain, None))
}
