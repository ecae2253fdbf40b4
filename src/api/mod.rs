//! The merchant REST API and the operational endpoints, served by warp.
//!
//! warp serves one catch-all filter; routing happens in [`dispatch`] by matching path
//! segments. That keeps every response (including 404, 405 and 413) in the contract's
//! error shape, gives each request its route template for metrics, and lets the request id
//! flow into handlers as a plain value.

pub mod admin;
mod auth;
mod chains;
pub mod checkout;
pub mod error;
mod health;
mod idempotent;
pub mod indexes;
pub mod input;
pub mod janitor;
pub mod key_cache;
pub mod metrics;
mod openapi;
mod payments;
pub mod server;
mod treasuries;
mod webhooks;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use serde::Serialize;
use slog::Logger;
use warp::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use warp::Filter;

use crate::config::{ChainSettings, Settings};
use crate::store::Store;
use crate::telemetry::trace;
use metrics::ApiMetrics;

pub use error::ApiError;

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// Configured chains by name.
    pub chains: Arc<HashMap<String, ChainSettings>>,
    /// Database.
    pub store: Store,
    /// Deposit addresses, from account public keys (no private key here).
    pub wallet: Arc<crate::custody::addresses::DepositAddresses>,
    /// What signs for this gateway (for its health check).
    pub signer: Arc<dyn crate::wallet::Signer>,
    /// Verified API keys.
    pub keys: Arc<key_cache::KeyCache>,
    /// Derivation indexes reserved for new payments.
    pub indexes: Arc<indexes::IndexReservations>,
    /// The payer pages following their payment live on this replica.
    pub changes: Arc<checkout::changes::PaymentChanges>,
    /// Prometheus metrics.
    pub metrics: ApiMetrics,
    /// Root logger.
    pub log: Logger,
    /// Actor heartbeats and restarts.
    pub registry: actors::HealthRegistry,
    /// Chain RPC and head status.
    pub chain_status: crate::chain::ChainStatusRegistry,
    /// Live supervisor references, for operator restarts.
    pub directory: crate::supervision::SupervisorDirectory,
    /// Test-only fault injection (inert in release builds).
    pub faults: Arc<crate::worker::Faults>,
    /// The `(chain, actor)` pairs the configuration runs (chain empty for the webhook
    /// pool), so an operator restart of an unknown actor is a 404.
    pub known_actors: Arc<Vec<(String, String)>>,
}

/// One parsed request, as handlers see it.
pub struct ApiRequest {
    /// Method.
    pub method: Method,
    /// Path, without the query.
    pub path: String,
    /// Raw query string ("" when absent).
    pub query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes (within the configured limit).
    pub body: Bytes,
    /// The request id echoed in `x-request-id`.
    pub request_id: String,
}

/// What handlers return.
pub type ApiResult = Result<Response<Bytes>, ApiError>;

/// What the server sends: a complete body, or a stream (a payer page's live nudges).
pub type Reply = warp::reply::Response;

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> ApiResult {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(bytes_response(status, "application/json", body.into()))
}

fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Parses a list's `limit` (1-100).
fn page_limit(v: &str) -> Result<u32, ApiError> {
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| ApiError::param("limit", "limit must be between 1 and 100"))
}

/// Parses a list's `starting_after` cursor: the id of the previous page's last object.
fn page_cursor(v: &str, object: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(v)
        .map_err(|_| ApiError::param("starting_after", format!("not a {object} id")))
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything (no `server.ops_bind`).
    All,
    /// The merchant API and the probes; `/metrics` and `/health/detail` live on the
    /// operator listener.
    Public,
    /// `/metrics` and the health endpoints only.
    Ops,
}

/// The warp filter serving the whole API.
pub fn routes(state: AppState) -> impl Filter<Extract = (Reply,), Error = Infallible> + Clone {
    routes_on(state, Surface::All)
}

/// The warp filter serving `surface`.
pub fn routes_on(
    state: AppState,
    surface: Surface,
) -> impl Filter<Extract = (Reply,), Error = Infallible> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    // One shared handle per request rather than a copy of every field (dozens of
    // reference counts touched twice per request).
    let state = Arc::new(state);
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method, path: warp::path::FullPath, query, headers, body| {
                let state = state.clone();
                async move {
                    handle(
                        state,
                        surface,
                        method,
                        path.as_str().to_string(),
                        query,
                        headers,
                        body,
                    )
                    .await
                }
            },
        )
        .recover(|_| async { Ok::<_, Infallible>(fallback_response().map(Into::into)) })
        .unify()
}

/// Only reachable if warp rejects before our handler runs (it should not).
fn fallback_response() -> Response<Bytes> {
    bytes_response(
        StatusCode::BAD_REQUEST,
        "application/json",
        Bytes::from_static(
            br#"{"error":{"type":"invalid_request","message":"malformed request"}}"#,
        ),
    )
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        // Letters, digits and `-_.:` only: nothing that could forge a field in either log
        // format.
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        // From the thread's generator: `new_v4` would ask the kernel for every request.
        .unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .simple()
                .to_string()
        })
}

async fn read_body<S, B>(headers: &HeaderMap, body: S, limit: u64) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = body;
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| ApiError::invalid("could not read the request body"))?;
        if buf.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// Serves one request inside its server span (when tracing is on). The caller's
/// `traceparent` is linked, followed or ignored as `telemetry.inbound_trace` says: this is
/// a public endpoint, so by default a client cannot choose our trace ids or sampling.
async fn handle<S, B>(
    state: Arc<AppState>,
    surface: Surface,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: S,
) -> Reply
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    if !trace::enabled() {
        return serve(state, surface, method, path, query, headers, body).await;
    }
    let caller = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let (parent, links) = trace::inbound(state.settings.telemetry.inbound_trace, caller);
    let cx = trace::start(
        "HTTP request",
        SpanKind::Server,
        &parent,
        vec![KeyValue::new("http.request.method", method.to_string())],
        links,
    );
    serve(state, surface, method, path, query, headers, body)
        .with_context(cx)
        .await
}

async fn serve<S, B>(
    state: Arc<AppState>,
    surface: Surface,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: S,
) -> Reply
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let start = Instant::now();
    let rid = request_id(&headers);
    let limit = state.settings.server.request_body_limit_bytes;
    let method_label = method.clone();
    let read_timeout = state.settings.server.request_timeout;
    let body = tokio::time::timeout(read_timeout, read_body(&headers, body, limit))
        .await
        .unwrap_or(Err(ApiError::RequestTimeout));
    let (route, result) = match body {
        Ok(body) => {
            let req = ApiRequest {
                method,
                path,
                query,
                headers,
                body,
                request_id: rid.clone(),
            };
            if surface_serves(surface, &req.path) {
                match takes_query(&req) {
                    Ok(()) => dispatch(&state, &req).await,
                    Err(e) => ("unmatched", Err(e)),
                }
            } else {
                (
                    "unmatched",
                    Err(ApiError::NotFound("no such endpoint".into())),
                )
            }
        }
        Err(e) => ("unmatched", Err(e)),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            let status = e.status();
            match &e {
                ApiError::Internal(cause) => slog::error!(state.log, "request failed";
                    "request_id" => &rid, "route" => route, "error" => format!("{cause:#}")),
                ApiError::Unavailable => {
                    slog::warn!(state.log, "request failed: database unavailable";
                    "request_id" => &rid, "route" => route)
                }
                _ => slog::debug!(state.log, "request refused";
                    "request_id" => &rid, "route" => route, "status" => status.as_u16()),
            }
            match serde_json::to_vec(&e.body(&rid)) {
                Ok(b) => bytes_response(status, "application/json", b.into()),
                Err(_) => fallback_response(),
            }
            .map(Into::into)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if trace::enabled() {
        let cx = Context::current();
        let span = cx.span();
        span.update_name(format!("{} {route}", method_label.as_str()));
        span.set_attribute(KeyValue::new("http.route", route));
        let status = resp.status().as_u16();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            trace::fail(&cx, "server error");
        }
    }
    let elapsed = start.elapsed();
    state.metrics.http.observe(
        route,
        method_label.as_str(),
        resp.status().as_u16(),
        elapsed.as_secs_f64(),
    );
    access_log(
        &state,
        &rid,
        route,
        method_label.as_str(),
        resp.status().as_u16(),
        elapsed,
    );
    resp
}

/// One line per request, so an operator can follow a request id from the response header
/// into the logs. The route is the template, never the raw path (ids stay out of it).
fn access_log(
    state: &AppState,
    rid: &str,
    route: &str,
    method: &str,
    status: u16,
    elapsed: std::time::Duration,
) {
    let Some(level) = state.settings.telemetry.access_log_level.0 else {
        return;
    };
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    // One arm per level: the macros check the level before any field is rendered, so a
    // filtered-out access log costs nothing per request.
    match crate::telemetry::slog_level(level) {
        slog::Level::Trace => slog::trace!(state.log, "request";
            "request_id" => rid, "route" => route, "method" => method,
            "status" => status, "latency_ms" => latency_ms),
        slog::Level::Debug => slog::debug!(state.log, "request";
            "request_id" => rid, "route" => route, "method" => method,
            "status" => status, "latency_ms" => latency_ms),
        slog::Level::Info => slog::info!(state.log, "request";
            "request_id" => rid, "route" => route, "method" => method,
            "status" => status, "latency_ms" => latency_ms),
        slog::Level::Warning => slog::warn!(state.log, "request";
            "request_id" => rid, "route" => route, "method" => method,
            "status" => status, "latency_ms" => latency_ms),
        slog::Level::Error => slog::error!(state.log, "request";
            "request_id" => rid, "route" => route, "method" => method,
            "status" => status, "latency_ms" => latency_ms),
        slog::Level::Critical => slog::crit!(state.log, "request";
            "request_id" => rid, "route" => route, "method" => method,
            "status" => status, "latency_ms" => latency_ms),
    }
}

/// Only the two list routes take query parameters (and parse them themselves); on every
/// other route a parameter is unknown.
fn takes_query(req: &ApiRequest) -> Result<(), ApiError> {
    let lists = req.method == Method::GET
        && matches!(
            req.path.trim_end_matches('/'),
            "/v1/payments" | "/v1/webhook-deliveries"
        );
    if lists {
        return Ok(());
    }
    input::query(&req.query, &[]).map(|_| ())
}

/// Whether a listener for `surface` serves `path`.
fn surface_serves(surface: Surface, path: &str) -> bool {
    let ops = matches!(path.trim_end_matches('/'), "/metrics" | "/health/detail");
    let probe = matches!(
        path.trim_end_matches('/'),
        "/health" | "/health/live" | "/health/ready"
    );
    match surface {
        Surface::All => true,
        Surface::Public => !ops,
        Surface::Ops => ops || probe,
    }
}

/// Routes a request to its handler; returns the route template for metrics. Only a payer
/// page's event stream is not a complete body.
async fn dispatch(state: &AppState, req: &ApiRequest) -> (&'static str, Result<Reply, ApiError>) {
    if let Some(id) = req
        .path
        .strip_prefix("/pay/")
        .and_then(|rest| rest.trim_end_matches('/').strip_suffix("/events"))
        .filter(|id| !id.contains('/'))
    {
        let route = "/pay/{id}/events";
        return if req.method == Method::GET {
            (route, checkout::events(state, req, id).await)
        } else {
            (route, Err(ApiError::MethodNotAllowed))
        };
    }
    let (route, result) = dispatch_complete(state, req).await;
    (route, result.map(|r| r.map(Into::into)))
}

/// Routes a request whose answer is a complete body.
async fn dispatch_complete(state: &AppState, req: &ApiRequest) -> (&'static str, ApiResult) {
    let segments: Vec<&str> = req
        .path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    let m = &req.method;
    macro_rules! only {
        ($route:expr, $method:expr, $call:expr) => {
            if *m == $method {
                ($route, $call.await)
            } else {
                ($route, Err(ApiError::MethodNotAllowed))
            }
        };
    }
    match segments.as_slice() {
        ["health"] => only!("/health", Method::GET, health::live(state)),
        ["health", "live"] => only!("/health/live", Method::GET, health::live(state)),
        ["health", "ready"] => only!("/health/ready", Method::GET, health::ready(state)),
        ["health", "detail"] => only!("/health/detail", Method::GET, health::detail(state)),
        ["admin", "v1", "actors", chain, actor, "restart"] => only!(
            "/admin/v1/actors/{chain}/{actor}/restart",
            Method::POST,
            admin::restart_actor(state, req, chain, actor)
        ),
        ["admin", "v1", "payments", id, "timeline"] => only!(
            "/admin/v1/payments/{id}/timeline",
            Method::GET,
            admin::payment_timeline(state, req, id)
        ),
        ["metrics"] => only!("/metrics", Method::GET, health::metrics(state)),
        ["pay", "assets", name] => only!("/pay/assets/{name}", Method::GET, checkout::asset(name)),
        ["pay", id] => only!("/pay/{id}", Method::GET, checkout::show(state, req, id)),
        ["pay", id, "status"] => only!(
            "/pay/{id}/status",
            Method::GET,
            checkout::status(state, req, id)
        ),
        ["openapi.json"] => only!("/openapi.json", Method::GET, openapi::document()),
        ["v1", "chains"] => only!("/v1/chains", Method::GET, chains::list(state, req)),
        ["v1", "payments"] => match *m {
            Method::POST => ("/v1/payments", payments::create(state, req).await),
            Method::GET => ("/v1/payments", payments::list(state, req).await),
            _ => ("/v1/payments", Err(ApiError::MethodNotAllowed)),
        },
        ["v1", "payments", id] => only!(
            "/v1/payments/{id}",
            Method::GET,
            payments::get(state, req, id)
        ),
        ["v1", "payments", id, "cancel"] => {
            only!(
                "/v1/payments/{id}/cancel",
                Method::POST,
                payments::cancel(state, req, id)
            )
        }
        ["v1", "webhook-endpoints"] => match *m {
            Method::POST => (
                "/v1/webhook-endpoints",
                webhooks::create_endpoint(state, req).await,
            ),
            Method::GET => (
                "/v1/webhook-endpoints",
                webhooks::list_endpoints(state, req).await,
            ),
            _ => ("/v1/webhook-endpoints", Err(ApiError::MethodNotAllowed)),
        },
        ["v1", "webhook-endpoints", id] => only!(
            "/v1/webhook-endpoints/{id}",
            Method::DELETE,
            webhooks::delete_endpoint(state, req, id)
        ),
        ["v1", "webhook-endpoints", id, "rotate-secret"] => only!(
            "/v1/webhook-endpoints/{id}/rotate-secret",
            Method::POST,
            webhooks::rotate_secret(state, req, id)
        ),
        ["v1", "treasuries"] => only!("/v1/treasuries", Method::GET, treasuries::list(state, req)),
        ["v1", "treasuries", chain] => match *m {
            Method::PUT => (
                "/v1/treasuries/{chain}",
                treasuries::set(state, req, chain).await,
            ),
            Method::DELETE => (
                "/v1/treasuries/{chain}",
                treasuries::delete(state, req, chain).await,
            ),
            _ => ("/v1/treasuries/{chain}", Err(ApiError::MethodNotAllowed)),
        },
        ["v1", "webhook-deliveries"] => only!(
            "/v1/webhook-deliveries",
            Method::GET,
            webhooks::list_deliveries(state, req)
        ),
        ["v1", "webhook-deliveries", id, "redeliver"] => only!(
            "/v1/webhook-deliveries/{id}/redeliver",
            Method::POST,
            webhooks::redeliver(state, req, id)
        ),
        _ => (
            "unmatched",
            Err(ApiError::NotFound("no such endpoint".into())),
        ),
    }
}
