//! `/v1/payments`: create, get, list, cancel.

use std::collections::HashMap;
use std::str::FromStr;

use alloy::primitives::{Address, U256};
use chrono::{Duration, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;
use warp::http::{header, StatusCode};

use super::auth::{self, Caller};
use super::idempotent::{self, idempotency_key, Ran};
use super::input;
use super::{bytes_response, json, ApiError, ApiRequest, ApiResult, AppState};
use crate::config::{ChainSettings, PaymentSettings};
use crate::domain::lifecycle::{self, Cause};
use crate::domain::{parse_units, AmountError, Asset, HistoryEntry, Payment, PaymentStatus};
use crate::models::PaymentObject;
use crate::store::idempotency::Claim;
use crate::store::payments::{self as payment_rows, KeyClaim, ListFilter, NewPayment};

/// The create body, as documented in `/openapi.json`. [`parse_create`] validates the same
/// fields by hand so that every refusal can name its parameter; a unit test keeps the two
/// field lists equal.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreatePaymentBody {
    /// A configured chain's name.
    chain: String,
    /// `native`, a token symbol or a token contract address.
    asset: String,
    /// A positive decimal string with at most the asset's decimals, e.g. `"12.5"`.
    amount: String,
    /// Merchant's order reference (1-255 characters).
    order_id: Option<String>,
    /// Free-form object (at most 50 keys).
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// Payment window in seconds (default `payments.default_expires_in_seconds`).
    expires_in: Option<u64>,
    /// Required depth (default: the chain's `confirmations`).
    confirmations: Option<u32>,
    /// Where the payer's page sends the payer once the payment is confirmed: an absolute
    /// `https` (or `http`) URL of at most 2048 characters, without credentials.
    return_url: Option<String>,
}

const CREATE_FIELDS: [&str; 8] = [
    "chain",
    "asset",
    "amount",
    "order_id",
    "metadata",
    "expires_in",
    "confirmations",
    "return_url",
];

/// A validated create request.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateParams {
    /// Chain name.
    pub chain: String,
    /// Chain id.
    pub chain_id: u64,
    /// Resolved asset.
    pub asset: Asset,
    /// Amount in raw units.
    pub amount_raw: U256,
    /// Order reference.
    pub order_id: Option<String>,
    /// Metadata object.
    pub metadata: Option<Value>,
    /// Window length in seconds.
    pub expires_in: u64,
    /// Required depth.
    pub confirmations: u32,
    /// Where the payer's page sends the payer once confirmed.
    pub return_url: Option<String>,
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    hint: &str,
) -> Result<&'a str, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(ApiError::param(key, format!("{key} is required"))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::param(
            key,
            format!("{key} must be a string{hint}"),
        )),
    }
}

fn optional_u64(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::param(key, format!("{key} must be a positive integer"))),
        Some(_) => Err(ApiError::param(
            key,
            format!("{key} must be a positive integer"),
        )),
    }
}

/// Resolves `asset`: `native`, a token symbol (any case) or a token contract address.
fn resolve_asset(chain: &ChainSettings, asset: &str) -> Option<Asset> {
    if asset.eq_ignore_ascii_case("native") || asset.eq_ignore_ascii_case(&chain.native_symbol) {
        return Some(Asset {
            symbol: chain.native_symbol.clone(),
            contract: None,
            decimals: 18,
        });
    }
    let by_address = Address::from_str(asset).ok();
    chain
        .tokens
        .iter()
        .find(|t| t.symbol.eq_ignore_ascii_case(asset) || by_address == Some(t.address))
        .map(|t| Asset {
            symbol: t.symbol.clone(),
            contract: Some(t.address),
            decimals: t.decimals,
        })
}

/// Validates a create body. Pure: every refusal names its parameter.
pub fn parse_create(
    body: &Value,
    chains: &HashMap<String, ChainSettings>,
    limits: &PaymentSettings,
) -> Result<CreateParams, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("the body must be a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::param(
            unknown,
            format!("unknown parameter {unknown}"),
        ));
    }
    let chain_name = required_str(obj, "chain", "")?;
    let chain = chains
        .get(chain_name)
        .ok_or_else(|| ApiError::param("chain", "unknown chain; see GET /v1/chains"))?;
    let asset_name = required_str(obj, "asset", "")?;
    let asset = resolve_asset(chain, asset_name).ok_or_else(|| {
        ApiError::param("asset", "unknown asset on this chain; see GET /v1/chains")
    })?;
    let amount = required_str(obj, "amount", " such as \"12.5\"")?;
    let amount_raw = parse_units(amount, asset.decimals).map_err(|e| {
        let msg = match e {
            AmountError::TooManyDecimals(d) => {
                format!(
                    "amount has more than {d} decimal places for {}",
                    asset.symbol
                )
            }
            other => other.to_string(),
        };
        ApiError::param("amount", msg)
    })?;
    let order_id = match obj.get("order_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            input::text("order_id", s, 1, 255)?;
            Some(s.clone())
        }
        Some(_) => {
            return Err(ApiError::param(
                "order_id",
                "order_id must be a string of 1 to 255 characters",
            ))
        }
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(m)) if m.len() <= 50 => {
            input::no_control_in("metadata", v)?;
            Some(v.clone())
        }
        Some(_) => {
            return Err(ApiError::param(
                "metadata",
                "metadata must be an object with at most 50 keys",
            ))
        }
    };
    let return_url = match obj.get("return_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(input::return_url("return_url", s)?),
        Some(_) => {
            return Err(ApiError::param(
                "return_url",
                "return_url must be an http or https URL",
            ))
        }
    };
    let max_expires_in = limits.max_expires_in.as_secs();
    let expires_in =
        optional_u64(obj, "expires_in")?.unwrap_or(limits.default_expires_in.as_secs());
    if !(60..=max_expires_in).contains(&expires_in) {
        return Err(ApiError::param(
            "expires_in",
            format!("expires_in must be between 60 and {max_expires_in} seconds",),
        ));
    }
    let confirmations = match optional_u64(obj, "confirmations")? {
        None => chain.confirmations,
        Some(n @ 1..=10_000) => n as u32,
        Some(_) => {
            return Err(ApiError::param(
                "confirmations",
                "confirmations must be between 1 and 10000",
            ))
        }
    };
    Ok(CreateParams {
        chain: chain.name.clone(),
        chain_id: chain.chain_id,
        asset,
        amount_raw,
        order_id,
        metadata,
        expires_in,
        confirmations,
        return_url,
    })
}

fn parse_json_body(req: &ApiRequest) -> Result<Value, ApiError> {
    let is_json = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::invalid("Content-Type must be application/json"));
    }
    input::parse_json(&req.body)
}

/// The best head this process knows for a chain (from its own scanner), if any.
fn head_of(state: &AppState, chain: &str) -> Option<u64> {
    state.chain_status.get(chain).and_then(|s| s.best_head())
}

/// `POST /v1/payments`
#[utoipa::path(post, path = "/v1/payments", tag = "payments",
    request_body = CreatePaymentBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays return the first response")),
    responses((status = 201, description = "Created", body = crate::models::PaymentObject),
        (status = 400, body = super::error::ErrorBody<'_>), (status = 401, body = super::error::ErrorBody<'_>),
        (status = 409, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn create(state: &AppState, req: &ApiRequest) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let key = idempotency_key(req)?;
    let body = parse_json_body(req)?;
    let params = parse_create(&body, &state.chains, &state.settings.payments)?;
    let account = merchant.account_index;
    state.wallet.ensure(account).await?;
    let client = state.store.client().await?;
    let index = state.indexes.next(&client, account).await?;
    let new = new_payment(state, &merchant, params, index).await?;
    let payment = pending_payment(new.clone());
    let bytes = serde_json::to_vec(&PaymentObject::new(&payment, None))
        .map_err(|e| ApiError::Internal(e.into()))?;
    // The response is known before the insert, so an idempotency key's claim and stored
    // response travel in the same single statement as the payment.
    let claim = key.map(|key| KeyClaim {
        key,
        request_hash: idempotent::request_hash(req),
        status: StatusCode::CREATED.as_u16(),
        body: bytes.clone(),
    });
    let claimed = payment_rows::create(&client, &new, claim.as_ref()).await?;
    if !matches!(claimed, Claim::New) {
        // Nothing was inserted, so the index is still unused.
        state.indexes.give_back(account, index);
    }
    match idempotent::answer(state, claimed)? {
        Some(replayed) => Ok(replayed),
        None => {
            state
                .metrics
                .payments
                .created
                .with_label_values(&[payment.chain.as_str()])
                .inc();
            slog::info!(state.log, "payment created";
                "request_id" => &req.request_id, "payment_id" => %payment.id, "chain" => &payment.chain);
            Ok(bytes_response(
                StatusCode::CREATED,
                "application/json",
                bytes.into(),
            ))
        }
    }
}

/// The row of a new payment at the deposit address of `index`.
async fn new_payment(
    state: &AppState,
    merchant: &Caller,
    params: CreateParams,
    index: u32,
) -> Result<NewPayment, ApiError> {
    let address = state.wallet.address(merchant.account_index, index).await?;
    let now = Utc::now();
    // expires_in is bounded by validated settings, so this cannot overflow in practice;
    // still, an overflow is a 400, never a panic.
    let expires_at = i64::try_from(params.expires_in)
        .ok()
        .and_then(Duration::try_seconds)
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| ApiError::param("expires_in", "expires_in is too large"))?;
    Ok(NewPayment {
        id: Uuid::now_v7(),
        merchant_id: merchant.id,
        chain: params.chain,
        chain_id: params.chain_id,
        asset: params.asset,
        address,
        derivation_index: index,
        amount_raw: params.amount_raw,
        confirmations_required: params.confirmations,
        order_id: params.order_id,
        metadata: params.metadata,
        created_at: now,
        expires_at,
        return_url: params.return_url,
    })
}

/// The aggregate of a payment that was just inserted, without reading it back.
fn pending_payment(p: NewPayment) -> Payment {
    Payment {
        id: p.id,
        merchant_id: p.merchant_id,
        chain: p.chain,
        chain_id: p.chain_id,
        asset: p.asset,
        address: p.address,
        amount_raw: p.amount_raw,
        amount_received_raw: U256::ZERO,
        status: PaymentStatus::Pending,
        exception: None,
        confirmations_required: p.confirmations_required,
        confirmations: 0,
        order_id: p.order_id,
        metadata: p.metadata,
        created_at: p.created_at,
        expires_at: p.expires_at,
        detected_at: None,
        confirmed_at: None,
        settlement_status: "unswept".into(),
        settlement_tx_hash: None,
        settlement_reason: None,
        return_url: p.return_url,
        transfers: vec![],
        history: vec![HistoryEntry {
            from: None,
            to: PaymentStatus::Pending,
            at: p.created_at,
            reason: "created".into(),
        }],
    }
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound("no such payment".into()))
}

/// `GET /v1/payments/{id}`
#[utoipa::path(get, path = "/v1/payments/{id}", tag = "payments",
    params(("id" = String, Path, description = "Payment id")),
    responses((status = 200, body = crate::models::PaymentObject), (status = 404, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn get(state: &AppState, req: &ApiRequest, id: &str) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let id = parse_id(id)?;
    let client = state.store.client().await?;
    let payment = payment_rows::get(&client, merchant.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such payment".into()))?;
    json(
        StatusCode::OK,
        &PaymentObject::new(&payment, head_of(state, &payment.chain)),
    )
}

/// A page of payments.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PaymentList {
    object: &'static str,
    data: Vec<crate::models::PaymentObject>,
    has_more: bool,
}

/// Parses the list query string. Pure.
pub fn parse_list_query(
    query: &str,
    chains: &HashMap<String, ChainSettings>,
) -> Result<ListFilter, ApiError> {
    let mut f = ListFilter {
        limit: 20,
        ..Default::default()
    };
    let params = input::query(
        query,
        &["status", "chain", "order_id", "limit", "starting_after"],
    )?;
    for (k, v) in params {
        match k.as_str() {
            "status" => {
                f.status = Some(
                    v.parse()
                        .map_err(|_| ApiError::param("status", "unknown status"))?,
                )
            }
            "chain" => {
                if !chains.contains_key(v.as_str()) {
                    return Err(ApiError::param("chain", "unknown chain"));
                }
                f.chain = Some(v);
            }
            "order_id" => f.order_id = Some(v),
            "limit" => f.limit = super::page_limit(&v)?,
            "starting_after" => f.starting_after = Some(super::page_cursor(&v, "payment")?),
            other => return Err(ApiError::param(other, format!("unknown parameter {other}"))),
        }
    }
    Ok(f)
}

/// `GET /v1/payments`
#[utoipa::path(get, path = "/v1/payments", tag = "payments",
    params(("status" = Option<String>, Query), ("chain" = Option<String>, Query), ("order_id" = Option<String>, Query),
        ("limit" = Option<u32>, Query, description = "1-100, default 20"),
        ("starting_after" = Option<String>, Query, description = "Last id of the previous page")),
    responses((status = 200, body = PaymentList), (status = 400, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn list(state: &AppState, req: &ApiRequest) -> ApiResult {
    let merchant = auth::authenticate(state, req).await?;
    let filter = parse_list_query(&req.query, &state.chains)?;
    let client = state.store.client().await?;
    let (page, has_more) = payment_rows::list(&client, merchant.id, &filter).await?;
    json(
        StatusCode::OK,
        &PaymentList {
            object: "list",
            data: page
                .iter()
                .map(|p| PaymentObject::new(p, head_of(state, &p.chain)))
                .collect(),
            has_more,
        },
    )
}

/// `POST /v1/payments/{id}/cancel`
#[utoipa::path(post, path = "/v1/payments/{id}/cancel", tag = "payments",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = crate::models::PaymentObject), (status = 404, body = super::error::ErrorBody<'_>),
        (status = 409, body = super::error::ErrorBody<'_>)),
    security(("api_key" = [])))]
pub async fn cancel(state: &AppState, req: &ApiRequest, id: &str) -> ApiResult {
    let merchant: Caller = auth::authenticate(state, req).await?;
    idempotency_key(req)?;
    let id = parse_id(id)?;
    let mut canceled = None;
    let ran = idempotent::run(state, req, &merchant, async |tx| {
        let locked = payment_rows::lock(tx, merchant.id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such payment".into()))?;
        // Funds may sit in blocks the scanner has not read yet: cancel only once it has
        // read the chain up to the head it last saw. A chain never scanned has no such
        // blocks to wait for, and funds that still arrive are announced as late funds.
        let chain_scanned = crate::store::chain::progress(tx, &locked.chain)
            .await?
            .is_none_or(|p| p.caught_up());
        let change = lifecycle::apply(&locked.facts, Cause::Cancel { chain_scanned })
            .map_err(|e| ApiError::Conflict(e.to_string()))?
            .ok_or_else(|| ApiError::Conflict("the payment is already canceled".into()))?;
        let payment =
            payment_rows::write_change(tx, merchant.id, id, locked.facts.status, &change).await?;
        let bytes = serde_json::to_vec(&PaymentObject::new(&payment, None))
            .map_err(|e| ApiError::Internal(e.into()))?;
        canceled = Some(payment.chain);
        Ok(bytes_response(
            StatusCode::OK,
            "application/json",
            bytes.into(),
        ))
    })
    .await?;
    if let (Ran::Fresh(_), Some(chain)) = (&ran, canceled) {
        state
            .metrics
            .payments
            .transitions
            .with_label_values(&[chain.as_str(), "canceled"])
            .inc();
        slog::info!(state.log, "payment canceled";
            "request_id" => &req.request_id, "payment_id" => %id, "chain" => &chain);
    }
    Ok(ran.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RpcUrl, StartBlock, TokenSettings};
    use serde_json::json;

    fn chains() -> HashMap<String, ChainSettings> {
        let c = ChainSettings {
            name: "eth".into(),
            chain_id: 1,
            rpc_urls: vec![RpcUrl::parse("http://127.0.0.1:8545").unwrap()],
            poll_interval: None,
            max_head_lag_blocks: 5,
            scan_batch_blocks: 500,
            native_symbol: "ETH".into(),
            confirmations: 12,
            block_time: std::time::Duration::from_millis(12000),
            start_block: StartBlock::Latest,
            treasury: None,
            tokens: vec![TokenSettings {
                symbol: "USDC".into(),
                address: alloy::primitives::address!("A0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
                decimals: 6,
                min_sweep_raw: None,
            }],
            sweep: Default::default(),
        };
        HashMap::from([("eth".to_string(), c)])
    }

    fn limits() -> PaymentSettings {
        PaymentSettings {
            default_expires_in: std::time::Duration::from_secs(3600),
            max_expires_in: std::time::Duration::from_secs(86400),
            late_funds_window: std::time::Duration::from_secs(86400),
            address_reservation: 16,
        }
    }

    fn param_of(body: Value) -> Option<String> {
        match parse_create(&body, &chains(), &limits()) {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn resolves_assets_by_symbol_and_address() {
        let p = parse_create(
            &json!({"chain": "eth", "asset": "usdc", "amount": "12.5"}),
            &chains(),
            &limits(),
        )
        .expect("valid");
        assert_eq!(p.amount_raw, U256::from(12_500_000u64));
        assert_eq!(p.confirmations, 12);
        let p = parse_create(
            &json!({"chain": "eth", "asset": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "amount": "1"}),
            &chains(),
            &limits(),
        )
        .expect("valid");
        assert_eq!(p.asset.symbol, "USDC");
    }

    #[test]
    fn refusals_name_the_parameter() {
        let cases = [
            (
                json!({"chain": "eth", "asset": "native", "amount": "0"}),
                "amount",
            ),
            (
                json!({"chain": "eth", "asset": "native", "amount": "-1"}),
                "amount",
            ),
            (
                json!({"chain": "eth", "asset": "USDC", "amount": "1.0000001"}),
                "amount",
            ),
            (
                json!({"chain": "eth", "asset": "native", "amount": 5}),
                "amount",
            ),
            (
                json!({"chain": "eth", "asset": "native", "amount": "lots"}),
                "amount",
            ),
            (json!({"chain": "eth", "asset": "native"}), "amount"),
            (
                json!({"chain": "nope", "asset": "native", "amount": "1"}),
                "chain",
            ),
            (
                json!({"chain": "eth", "asset": "DOGE", "amount": "1"}),
                "asset",
            ),
            (
                json!({"chain": "eth", "asset": "native", "amount": "1", "x": 1}),
                "x",
            ),
            (
                json!({"chain": "eth", "asset": "native", "amount": "1", "expires_in": 5}),
                "expires_in",
            ),
            (
                json!({"chain": "eth", "asset": "native", "amount": "1", "confirmations": 0}),
                "confirmations",
            ),
            (
                json!({"chain": "eth", "asset": "native", "amount": "1", "metadata": [1]}),
                "metadata",
            ),
            (
                json!({"chain": "eth", "asset": "native", "amount": "1", "order_id": 7}),
                "order_id",
            ),
        ];
        for (body, param) in cases {
            assert_eq!(param_of(body.clone()).as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn documented_create_fields_are_the_parsed_ones() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(CreatePaymentBody::schema()).expect("schema");
        let mut documented: Vec<String> = schema["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        documented.sort();
        let mut parsed: Vec<String> = CREATE_FIELDS.iter().map(|f| f.to_string()).collect();
        parsed.sort();
        assert_eq!(documented, parsed);
    }

    #[test]
    fn list_query_validation() {
        let f = parse_list_query("status=pending&limit=5", &chains()).expect("valid");
        assert_eq!(f.limit, 5);
        assert_eq!(f.status, Some(PaymentStatus::Pending));
        for bad in [
            "limit=0",
            "limit=101",
            "status=paid",
            "chain=x",
            "starting_after=1",
            "foo=1",
            "limit=1&limit=2",
        ] {
            assert!(parse_list_query(bad, &chains()).is_err(), "{bad}");
        }
    }
}
