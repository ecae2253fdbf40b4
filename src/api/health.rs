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
    match readiness(state).await {
        Ok(()) => health_json(StatusCode::OK, json!({"status": "pass"})),
        Err(output) => health_json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "fail", "output": output}),
        ),
    }
}

/// Whether the gateway can serve: the database answers and holds the current schema.
async fn readiness(state: &AppState) -> Result<(), String> {
    let expected = Store::latest_migration();
    state
        .store
        .ping()
        .await
        .map_err(|_| "database unreachable".to_string())?;
    match state.store.applied_migration().await {
        Ok(Some(v)) if v >= expected => Ok(()),
        Ok(v) => Err(format!(
            "schema at version {}, expected {expected}",
            v.unwrap_or(0)
        )),
        Err(_) => Err("database unreachable".to_string()),
    }
}

/// Prometheus text format; pool gauges are refreshed at scrape time.
pub async fn metrics(state: &AppState) -> ApiResult {
    let chains: Vec<String> = state
        .settings
        .chains
        .iter()
        .map(|c| c.name.clone())
        .collect();
    state.metrics.actors.refresh(&state.registry, &chains);
    state.metrics.db.refresh(&state.store);
    let ready = readiness(state).await.is_ok();
    state.metrics.http.ready.set(i64::from(ready));
    if let Some(c) = state.store.client().await.ok().filter(|_| ready) {
        if let Ok((n, age)) = crate::store::webhooks::backlog(&c).await {
            let w = &state.metrics.webhooks;
            w.queue_depth.set(i64::try_from(n).unwrap_or(i64::MAX));
            w.oldest_pending_age.set(age);
        }
    }
    Ok(bytes_response(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        Bytes::from(crate::telemetry::metrics::render(&state.metrics.registry)),
    ))
}

fn check(
    component_id: &str,
    component_type: &str,
    value: serde_json::Value,
    unit: &str,
    status: &str,
    time: &str,
    output: Option<String>,
) -> serde_json::Value {
    let mut c = json!({
        "componentId": component_id,
        "componentType": component_type,
        "observedValue": value,
        "observedUnit": unit,
        "status": status,
        "time": time,
    });
    if let (Some(o), Some(map)) = (output, c.as_object_mut()) {
        map.insert("output".into(), json!(o));
    }
    c
}

fn rfc3339_of(t: std::time::SystemTime) -> String {
    crate::models::rfc3339(&chrono::DateTime::<chrono::Utc>::from(t))
}

/// `GET /health/detail`: the IETF health-check format. `fail` (503) only when the database
/// is unreachable; a stalled or restarting actor, or a failing RPC endpoint, is `warn`.
pub async fn detail(state: &AppState) -> ApiResult {
    use actors::ActorState;
    use std::time::Duration;

    let now = crate::models::rfc3339(&chrono::Utc::now());
    let mut checks = serde_json::Map::new();
    let mut warn = false;

    let ping = tokio::time::timeout(Duration::from_secs(3), state.store.ping()).await;
    let db_ok = matches!(ping, Ok(Ok(_)));
    checks.insert(
        "postgres:responseTime".into(),
        json!([match ping {
            Ok(Ok(d)) => check(
                "postgres",
                "datastore",
                json!(d.as_secs_f64() * 1000.0),
                "ms",
                "pass",
                &now,
                None
            ),
            _ => check(
                "postgres",
                "datastore",
                json!(null),
                "ms",
                "fail",
                &now,
                Some("database unreachable".into())
            ),
        }]),
    );
    let pool = state.store.pool_status();
    let in_use = pool.size.saturating_sub(pool.available);
    checks.insert(
        "postgres:connections".into(),
        json!([check(
            "postgres",
            "datastore",
            json!(in_use),
            "connections",
            if pool.waiting > 0 { "warn" } else { "pass" },
            &now,
            Some(format!(
                "{in_use} in use, {} idle, {} max, {} waiting",
                pool.available, pool.max_size, pool.waiting
            )),
        )]),
    );
    warn |= pool.waiting > 0;

    // The signer: a separate one must answer, or sweeps wait (payments still get their
    // addresses from the stored account keys).
    if state.signer.is_separate() {
        let started = std::time::Instant::now();
        let answered = state.signer.ping().await;
        let (st, value, out) = match answered {
            Ok(()) => (
                "pass",
                json!(started.elapsed().as_secs_f64() * 1000.0),
                None,
            ),
            Err(e) => (
                "warn",
                json!(null),
                Some(format!("{e}; sweeps wait until it is back")),
            ),
        };
        warn |= st == "warn";
        checks.insert(
            "signer:responseTime".into(),
            json!([check("signer", "component", value, "ms", st, &now, out)]),
        );
    } else {
        checks.insert(
            "signer:location".into(),
            json!([check(
                "signer",
                "component",
                json!("in-process"),
                "",
                "pass",
                &now,
                Some("this process holds the keys (no signer.socket)".into())
            )]),
        );
    }

    // Chain leadership as the lease table says (any replica shows the same).
    let leases = match state.store.client().await {
        Ok(c) if db_ok => crate::store::leases::list(&c).await.unwrap_or_default(),
        _ => Vec::new(),
    };
    let db_now = chrono::Utc::now();
    for c in &state.settings.chains {
        let name = format!("chain:{}", c.name);
        let lease = leases.iter().find(|l| l.name == name);
        let (st, value, out) = match lease {
            Some(l) if l.expires_at > db_now => (
                "pass",
                json!({
                    "holder": l.holder,
                    "token": l.token,
                    "age_seconds": (db_now - l.acquired_at).num_milliseconds() as f64 / 1000.0,
                    "expires_in_seconds": (l.expires_at - db_now).num_milliseconds() as f64 / 1000.0,
                }),
                None,
            ),
            Some(l) => (
                "warn",
                json!({"holder": l.holder, "token": l.token}),
                Some("no leader: the lease lapsed and no replica has taken it yet".to_string()),
            ),
            None => (
                "warn",
                json!(null),
                Some("no leader yet: no replica has taken the lease".to_string()),
            ),
        };
        warn |= st == "warn" && state.settings.supervision.enabled;
        checks.insert(
            format!("{}.lease:holder", c.name),
            json!([check(&c.name, "component", value, "lease", st, &now, out)]),
        );
    }

    let chains = state.chain_status.snapshot();
    for c in &state.settings.chains {
        let status = chains.get(&c.name).cloned().unwrap_or_default();
        let rpc: Vec<_> = status
            .endpoints
            .iter()
            .map(|e| {
                let (st, out) = match (&e.last_error, e.last_checked) {
                    (None, Some(_)) if e.lagging => (
                        "warn",
                        Some(format!(
                            "lagging: head {} trails the best known head {}; avoided",
                            e.head.unwrap_or(0),
                            status.best_head().unwrap_or(0)
                        )),
                    ),
                    (None, Some(_)) => ("pass", None),
                    (Some(err), _) => (
                        "warn",
                        Some(format!(
                            "{}; {} failures in a row",
                            err, e.consecutive_failures
                        )),
                    ),
                    (None, None) => ("warn", Some("not contacted yet".to_string())),
                };
                warn |= st == "warn";
                check(
                    &format!("{}/{}", c.name, e.host),
                    "component",
                    json!(e.last_latency.map(|d| d.as_secs_f64() * 1000.0)),
                    "ms",
                    st,
                    &e.last_checked
                        .map(rfc3339_of)
                        .unwrap_or_else(|| now.clone()),
                    out,
                )
            })
            .collect();
        checks.insert(format!("{}.rpc:responseTime", c.name), json!(rpc));
        let lag = status.lag();
        let threshold = u64::from(c.confirmations).max(10);
        let (st, out) = match lag {
            _ if status.nodes_behind.is_some() => (
                "warn",
                Some(format!(
                    "every answering RPC endpoint is behind the scanner (they serve up to {}, scanned {}); waiting for them",
                    status.nodes_behind.unwrap_or(0),
                    status.scanned_head.unwrap_or(0)
                )),
            ),
            Some(l) if l <= threshold => ("pass", None),
            Some(l) => (
                "warn",
                Some(format!("{l} blocks behind the best known head")),
            ),
            None => ("warn", Some("head not known yet".to_string())),
        };
        warn |= st == "warn";
        checks.insert(
            format!("{}.head:lag", c.name),
            json!([check(
                &c.name,
                "component",
                json!(lag),
                "blocks",
                st,
                &now,
                out.or_else(|| {
                    status.best_head().map(|h| {
                        format!(
                            "best head {h}, scanned {}",
                            status.scanned_head.unwrap_or(0)
                        )
                    })
                })
            )]),
        );
        // Confirmed payments whose counted funds a reorg took away: the merchant may have
        // delivered against funds that no longer exist.
        let reversed = status.reversed_payments;
        let st = if reversed == 0 { "pass" } else { "warn" };
        warn |= st == "warn";
        checks.insert(
            format!("{}.payments:reversed", c.name),
            json!([check(
                &c.name,
                "component",
                json!(reversed),
                "payments",
                st,
                &now,
                (reversed > 0).then(|| format!(
                    "{reversed} confirmed payment(s) lost counted funds to a reorg; see payment.reorged events with exception underpaid"
                ))
            )]),
        );
    }

    for c in &state.settings.chains {
        if let Some(sweep) = chains.get(&c.name).and_then(|s| s.sweep.clone()) {
            sweep_checks(&mut checks, &mut warn, &c.name, &sweep, &now);
        }
    }

    for a in state.registry.snapshot() {
        if a.group == "root" {
            continue;
        }
        let healthy = a.state == ActorState::Running && !a.is_stale();
        warn |= !healthy;
        let mut output = format!(
            "{}; {} restart{} in the last 10 min",
            a.state.as_str(),
            a.recent_restarts,
            if a.recent_restarts == 1 { "" } else { "s" }
        );
        if let Some(r) = a.last_restart_reason {
            output.push_str(&format!(" (last: {r})"));
        }
        if a.is_stale() {
            output.push_str("; stalled: no progress within its stall timeout");
        }
        if let Some(n) = &a.note {
            output.push_str(&format!("; {n}"));
        }
        let id = match &a.chain {
            Some(chain) => format!("chain/{chain}/{}", a.name),
            None => format!("{}/{}", a.group, a.name),
        };
        checks.insert(
            format!("{}:heartbeat", a.key),
            json!([check(
                &id,
                "component",
                json!((a.since_progress.as_secs_f64() * 10.0).round() / 10.0),
                "s",
                if healthy { "pass" } else { "warn" },
                &rfc3339_of(a.last_progress_wall),
                Some(output),
            )]),
        );
    }

    let backlog = if db_ok {
        match state.store.client().await {
            Ok(c) => crate::store::webhooks::backlog(&c).await.ok(),
            Err(_) => None,
        }
    } else {
        None
    };
    let warn_after = state.settings.webhooks.backlog_warn.as_secs_f64();
    let (depth, age, age_status, out) = match backlog {
        Some((n, a)) if a > warn_after => (
            json!(n),
            json!(a),
            "warn",
            Some(format!(
                "the oldest undelivered webhook is older than {warn_after} s"
            )),
        ),
        Some((n, a)) => (json!(n), json!(a), "pass", None),
        None => (
            json!(null),
            json!(null),
            "warn",
            Some("unknown: database unreachable".to_string()),
        ),
    };
    warn |= age_status == "warn" && db_ok;
    checks.insert(
        "webhooks:queueDepth".into(),
        json!([check(
            "webhooks",
            "component",
            depth,
            "deliveries",
            "pass",
            &now,
            None
        )]),
    );
    checks.insert(
        "webhooks:oldestPendingAge".into(),
        json!([check(
            "webhooks",
            "component",
            age,
            "s",
            age_status,
            &now,
            out
        )]),
    );

    let (status, code) = if !db_ok {
        ("fail", StatusCode::SERVICE_UNAVAILABLE)
    } else if warn {
        ("warn", StatusCode::OK)
    } else {
        ("pass", StatusCode::OK)
    };
    health_json(
        code,
        json!({
            "status": status,
            "version": "1",
            "releaseId": env!("CARGO_PKG_VERSION"),
            "serviceId": "ctrip-gateway",
            "description": "cTrip Gateway",
            "checks": checks,
        }),
    )
}

/// `{chain}.gasTank:balance` and `{chain}.sweeper:backlog`, for chains that sweep.
fn sweep_checks(
    checks: &mut serde_json::Map<String, serde_json::Value>,
    warn: &mut bool,
    chain: &str,
    sweep: &crate::chain::status::SweepStatus,
    now: &str,
) {
    if let Some(wei) = sweep.gas_tank_wei {
        checks.insert(
            format!("{chain}.gasTank:balance"),
            json!([check(
                chain,
                "component",
                json!(wei.to_string()),
                "wei",
                "pass",
                now,
                None
            )]),
        );
    }
    let old_funds = sweep.unswept > 0 && sweep.oldest_unswept > sweep.warn_unswept_after;
    let stuck = sweep.in_flight > 0 && sweep.oldest_in_flight > sweep.warn_in_flight_after;
    let status = if old_funds || stuck { "warn" } else { "pass" };
    *warn |= status == "warn";
    let output = format!(
        "{} confirmed payment(s) unswept, the oldest confirmed {} s ago; {} sweep(s) in flight, the oldest {} s old",
        sweep.unswept,
        sweep.oldest_unswept.as_secs(),
        sweep.in_flight,
        sweep.oldest_in_flight.as_secs()
    );
    checks.insert(
        format!("{chain}.sweeper:backlog"),
        json!([check(
            chain,
            "component",
            json!(sweep.unswept),
            "payments",
            status,
            now,
            Some(output)
        )]),
    );
}
