//! Fail-closed HTTP clients, fenced webhook attempts, per-endpoint caps, idempotency in one
//! transaction, the key purge, the access log and start-up failures.

use std::time::Duration;

use ctrip::api::janitor::Janitor;
use ctrip::store::webhooks::{claim_due, record_attempt, Attempt, AttemptOutcome};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with};
use crate::webhooks::{cancel_event, create_endpoint, dispatcher, webhook_app, Receiver};

#[tokio::test]
async fn deliveries_never_use_a_proxy_from_the_environment() {
    let proxy = Receiver::start(Duration::ZERO).await;
    let rx = Receiver::start(Duration::ZERO).await;
    let app = webhook_app().await;
    create_endpoint(&app, json!({"url": rx.url})).await;
    cancel_event(&app).await;
    let proxy_base = proxy.url.trim_end_matches("/hooks").to_string();
    // This test runs in its own process (nextest), so the environment is its own.
    for k in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
    ] {
        std::env::set_var(k, &proxy_base);
    }
    for k in ["NO_PROXY", "no_proxy"] {
        std::env::remove_var(k);
    }
    // The premise: a default client obeys the environment and goes through the proxy.
    let _ = reqwest::Client::new().post(&rx.url).body("x").send().await;
    assert_eq!(
        proxy.received().len(),
        1,
        "a default client uses HTTP_PROXY"
    );
    assert!(rx.received().is_empty());

    assert_eq!(dispatcher(&app).dispatch_once().await.expect("dispatch"), 1);
    assert_eq!(rx.received().len(), 1, "delivered directly");
    assert_eq!(proxy.received().len(), 1, "the proxy saw nothing more");
}

#[tokio::test]
async fn a_late_worker_cannot_overwrite_a_newer_claims_outcome() {
    let app = webhook_app().await;
    let rx = Receiver::start(Duration::ZERO).await;
    create_endpoint(&app, json!({"url": rx.url})).await;
    cancel_event(&app).await;
    let c = app.store.client().await.expect("db");
    let first = claim_due(&c, 10, 60.0, 4).await.expect("claim");
    assert_eq!(first.len(), 1);
    // The first worker stalls past its lease; another claims and delivers.
    c.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 second'",
        &[],
    )
    .await
    .expect("expire lease");
    let second = claim_due(&c, 10, 60.0, 4).await.expect("claim");
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].claim_token, second[0].claim_token);
    let attempt = Attempt {
        at: chrono::Utc::now(),
        http_status: Some(200),
        latency_ms: 1,
        error: None,
        traceparent: None,
    };
    assert!(
        record_attempt(&c, &second[0], &attempt, AttemptOutcome::Succeeded)
            .await
            .expect("record")
    );
    // The stale worker comes back with a failure: logged, but it changes nothing.
    let failed = Attempt {
        http_status: None,
        error: Some("request timed out"),
        ..attempt
    };
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(
        !record_attempt(&c, &first[0], &failed, AttemptOutcome::RetryAt(later))
            .await
            .expect("record")
    );
    let row = c
        .query_one("SELECT status, attempts FROM webhook_deliveries", &[])
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "succeeded");
    assert_eq!(row.get::<_, i32>(1), 1);
    let logged: i64 = c
        .query_one("SELECT count(*) FROM webhook_attempts", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(logged, 2, "both attempts happened and both are in the log");
}

#[tokio::test]
async fn one_slow_endpoint_cannot_take_every_delivery_slot() {
    let app = spawn_app_with(|s| {
        s.webhooks.retry_schedule = vec![std::time::Duration::from_millis(0)];
        s.webhooks.max_in_flight_per_endpoint = 3;
    })
    .await;
    let slow = Receiver::start(Duration::ZERO).await;
    let other = Receiver::start(Duration::ZERO).await;
    let slow_ep = create_endpoint(&app, json!({"url": slow.url})).await;
    for _ in 0..8 {
        cancel_event(&app).await;
    }
    let c = app.store.client().await.expect("db");
    // Leases taken by workers still in flight: at most three for the endpoint.
    let a = claim_due(&c, 32, 60.0, 3).await.expect("claim");
    assert_eq!(a.len(), 3);
    assert!(claim_due(&c, 32, 60.0, 3).await.expect("claim").is_empty());
    // Another endpoint's deliveries still go out, even behind a long backlog of the slow
    // one: claims one at a time pass over the endpoint that has no free slot.
    create_endpoint(&app, json!({"url": other.url})).await;
    cancel_event(&app).await;
    let b = claim_due(&c, 1, 60.0, 3).await.expect("claim");
    assert_eq!(b.len(), 1);
    assert_ne!(
        b[0].endpoint_id.to_string(),
        slow_ep["id"].as_str().unwrap_or("")
    );
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_endpoint_and_all_get_its_answer() {
    let app = webhook_app().await;
    let rx = Receiver::start(Duration::ZERO).await;
    let send = || {
        app.client
            .post(app.url("/v1/webhook-endpoints"))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", "one-endpoint")
            // Key order and whitespace differ; the requests are the same.
            .header("content-type", "application/json")
            .body(format!(r#"{{ "url": "{}", "description": "d" }}"#, rx.url))
            .send()
    };
    let other = || {
        app.client
            .post(app.url("/v1/webhook-endpoints"))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", "one-endpoint")
            .header("content-type", "application/json")
            .body(format!(r#"{{"description":"d","url":"{}"}}"#, rx.url))
            .send()
    };
    let (a, b, c, d) = tokio::join!(send(), other(), send(), other());
    let mut bodies = Vec::new();
    for r in [a, b, c, d] {
        let r = r.expect("sent");
        assert_eq!(r.status(), 201);
        bodies.push(r.json::<Value>().await.expect("json"));
    }
    assert!(bodies.iter().all(|b| b["id"] == bodies[0]["id"]));
    assert!(bodies.iter().all(|b| b["secret"] == bodies[0]["secret"]));
    let listed: Value = app
        .get("/v1/webhook-endpoints")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_failed_operation_leaves_no_claimed_key_behind() {
    let app = webhook_app().await;
    let r = app
        .client
        .post(app.url("/v1/webhook-endpoints"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", "k1")
        .json(&json!({"url": "ftp://nowhere"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 400);
    let c = app.store.client().await.expect("db");
    let n: i64 = c
        .query_one("SELECT count(*) FROM idempotency_keys", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn keys_older_than_a_day_are_purged() {
    let app = spawn_app().await;
    let c = app.store.client().await.expect("db");
    for (key, age) in [("old", "25 hours"), ("new", "1 hour")] {
        c.execute(
            &format!(
                "INSERT INTO idempotency_keys (merchant_id, key, request_hash, created_at) \
                 VALUES ($1, $2, '\\x00', now() - interval '{age}')"
            ),
            &[&app.merchant_id, &key],
        )
        .await
        .expect("insert");
    }
    let janitor = Janitor::new(
        app.store.clone(),
        Duration::from_secs(3600),
        app.state.log.clone(),
    );
    assert_eq!(janitor.purge_once().await.expect("purge"), 1);
    let left: Vec<String> = c
        .query("SELECT key FROM idempotency_keys", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["new"]);
}

#[tokio::test]
async fn every_request_writes_one_access_log_line_with_its_request_id() {
    let app = spawn_app().await;
    let p = app.create_payment("1").await;
    let id = p["id"].as_str().expect("id");
    let r = app
        .client
        .get(app.url(&format!("/v1/payments/{id}")))
        .bearer_auth(&app.api_key)
        .header("x-request-id", "follow-me-42")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "follow-me-42");
    let lines: Vec<Value> = crate::helpers::eventually(10, "the access log line", || {
        let text = app.log_text();
        async move {
            let lines: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["msg"] == "request" && v["request_id"] == "follow-me-42")
                .collect();
            (!lines.is_empty()).then_some(lines)
        }
    })
    .await;
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["route"], "/v1/payments/{id}");
    assert_eq!(l["method"], "GET");
    assert_eq!(l["status"], 200);
    assert!(l["latency_ms"].is_number(), "{l}");
    assert!(
        !l.to_string().contains(id),
        "the raw path stays out of the log"
    );
}

#[tokio::test]
async fn a_tree_that_fails_to_start_is_an_error_not_a_healthy_gateway() {
    let url = crate::helpers::create_database(&crate::helpers::maintenance_url()).await;
    let mut settings = crate::helpers::base_settings(&url);
    settings.supervision.enabled = true;
    settings.chains.clear();
    let (log, _) = ctrip::telemetry::build_logger(
        &settings.telemetry,
        ctrip::telemetry::LogSink::Buffer(Default::default()),
    );
    let app = ctrip::app::Application::build(settings, log, true)
        .await
        .expect("builds");
    app.state().faults.fail_tree_start();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        app.run_until_stopped(std::future::pending()),
    )
    .await
    .expect("returns instead of serving");
    assert!(r.is_err());
}
