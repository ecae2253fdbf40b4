//! `GET /v1/chains`

use serde::Serialize;
use warp::http::StatusCode;

use super::{auth, json, ApiRequest, ApiResult, AppState};

#[derive(Serialize, utoipa::ToSchema)]
struct ChainObject<'a> {
    object: &'static str,
    name: &'a str,
    chain_id: u64,
    confirmations: u32,
    block_time_ms: u64,
    assets: Vec<AssetObject<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AssetObject<'a> {
    asset: &'a str,
    symbol: &'a str,
    contract: Option<String>,
    decimals: u8,
}

/// Configured chains.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChainList<'a> {
    object: &'static str,
    data: Vec<ChainObject<'a>>,
}

/// Lists configured chains with their assets.
#[utoipa::path(get, path = "/v1/chains", tag = "chains",
    responses((status = 200, body = ChainList<'_>)), security(("api_key" = [])))]
pub async fn list(state: &AppState, req: &ApiRequest) -> ApiResult {
    auth::authenticate(state, req).await?;
    let data = state
        .settings
        .chains
        .iter()
        .map(|c| {
            let mut assets = vec![AssetObject {
                asset: "native",
                symbol: &c.native_symbol,
                contract: None,
                decimals: 18,
            }];
            for t in &c.tokens {
                assets.push(AssetObject {
                    asset: &t.symbol,
                    symbol: &t.symbol,
                    contract: Some(t.address.to_checksum(None)),
                    decimals: t.decimals,
                });
            }
            ChainObject {
                object: "chain",
                name: &c.name,
                chain_id: c.chain_id,
                confirmations: c.confirmations,
                block_time_ms: u64::try_from(c.block_time.as_millis()).unwrap_or(u64::MAX),
                assets,
            }
        })
        .collect();
    json(
        StatusCode::OK,
        &ChainList {
            object: "list",
            data,
        },
    )
}
