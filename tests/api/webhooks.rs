//! Webhooks end to end: real HTTP receivers on 127.0.0.1, the dispatcher driven one batch at
//! a time, signatures checked by a verifier written from the Standard Webhooks spec.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ctrip::webhook::dispatcher::Dispatcher;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use warp::http::HeaderMap;

use crate::helpers::{eventually, spawn_app_with, TestApp};

/// Verifies a delivery as a Standard Webhooks receiver library does: the signed content is
/// `{webhook-id}.{webhook-timestamp}.{body}`, the key the base64 decoding of the secret after
/// `whsec_`, and any one `v1,` signature in the space-separated header may match.
fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (now - ts).abs() > 300 {
        return false;
    }
    let Ok(key) = B64.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&key) else {
        return false;
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    signatures.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| B64.decode(b).ok())
            .is_some_and(|sig| {
                use subtle::ConstantTimeEq;
                sig.len() == expected.len() && bool::from(sig.as_slice().ct_eq(expected.as_slice()))
            })
    })
}

#[test]
fn the_verifier_passes_the_published_test_vector() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (id, ts, body) = (
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232314}"#,
    );
    let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert!(verify(secret, id, ts, sig, body, 1_614_265_330));
    assert!(verify(
        secret,
        id,
        ts,
        &format!("v1,bm9wZQ== {sig}"),
        body,
        1_614_265_330
    ));
    assert!(!verify(
        secret,
        id,
        ts,
        sig,
        br#"{"test": 2432232315}"#,
        1_614_265_330
    ));
    assert!(!verify(secret, id, "1614265331", sig, body, 1_614_265_331));
    assert!(!verify(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        id,
        ts,
        sig,
        body,
        1_614_265_330
    ));
}

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    fn h(&self, k: &str) -> String {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
    fn id(&self) -> String {
        self.h("webhook-id")
    }
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn verifies_with(&self, secret: &str) -> bool {
        let now = chrono::Utc::now().timestamp();
        verify(
            secret,
            &self.id(),
            &self.h("webhook-timestamp"),
            &self.h("webhook-signature"),
            &self.body,
            now,
        )
    }
}

/// Scripted answers: (status, Retry-After).
type Script = Arc<Mutex<VecDeque<(u16, Option<&'static str>)>>>;

/// A real HTTP receiver. Each request takes the next scripted answer (status, Retry-After),
/// then 200s.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    script: Script,
}

impl Receiver {
    pub async fn start(delay: Duration) -> Self {
        use warp::Filter;
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Script = Arc::default();
        let (g, sc) = (got.clone(), script.clone());
        let route = warp::post()
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(move |headers: HeaderMap, body: bytes::Bytes| {
                let (g, sc) = (g.clone(), sc.clone());
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    g.lock().expect("lock").push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    let (status, retry_after) =
                        sc.lock().expect("lock").pop_front().unwrap_or((200, None));
                    let mut r = warp::http::Response::builder().status(status);
                    if let Some(ra) = retry_after {
                        r = r.header("retry-after", ra);
                    }
                    r.body(bytes::Bytes::new()).expect("response")
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self {
            url: format!("http://127.0.0.1:{port}/hooks"),
            got,
            script,
        }
    }

    pub fn script(&self, answers: &[(u16, Option<&'static str>)]) {
        self.script
            .lock()
            .expect("lock")
            .extend(answers.iter().copied());
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }
}

pub(crate) async fn webhook_app() -> TestApp {
    spawn_app_with(|s| {
        // Retries are due at once: tests drive the schedule, they never wait for it.
        s.webhooks.retry_schedule = vec![std::time::Duration::from_millis(0)];
        s.webhooks.max_attempts = 4;
    })
    .await
}

pub(crate) fn dispatcher(app: &TestApp) -> Dispatcher {
    Dispatcher::new(
        &app.state.settings.webhooks,
        app.store.clone(),
        app.metrics.webhooks.clone(),
        app.state.log.clone(),
    )
    .expect("webhook client")
}

pub(crate) async fn create_endpoint(app: &TestApp, body: Value) -> Value {
    let r = app
        .client
        .post(app.url("/v1/webhook-endpoints"))
        .bearer_auth(&app.api_key)
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 201);
    r.json().await.expect("json")
}

/// A `payment.canceled` event: create a payment and cancel it.
pub(crate) async fn cancel_event(app: &TestApp) -> String {
    let p = app.create_payment("1").await;
    let id = p["id"].as_str().expect("id").to_string();
    assert_eq!(
        app.post(&format!("/v1/payments/{id}/cancel"))
            .await
            .status(),
        200
    );
    id
}

pub(crate) async fn deliveries(app: &TestApp, query: &str) -> Vec<Value> {
    let v: Value = app
        .get(&format!("/v1/webhook-deliveries{query}"))
        .await
        .json()
        .await
        .expect("json");
    v["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn deliveries_are_signed_and_tampering_is_detected() {
    let app = webhook_app().await;
    let rx = Receiver::start(Duration::ZERO).await;
    let ep = create_endpoint(&app, json!({"url": rx.url, "description": "orders"})).await;
    let secret = ep["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(B64.decode(&secret[6..]).map(|k| k.len()).ok(), Some(32));
    assert_eq!(ep["events"], json!([]));
    // The secret is shown once: listing never returns it.
    let list: Value = app
        .get("/v1/webhook-endpoints")
        .await
        .json()
        .await
        .expect("json");
    assert!(list["data"][0].get("secret").is_none());

    let payment_id = cancel_event(&app).await;
    assert_eq!(dispatcher(&app).dispatch_once().await.expect("dispatch"), 1);
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let d = &got[0];
    assert!(d.verifies_with(&secret));
    assert_eq!(d.h("content-type"), "application/json");
    let body = d.json();
    assert_eq!(body["type"], "payment.canceled");
    assert_eq!(body["id"], d.id());
    assert!(d.id().starts_with("evt_"));
    assert_eq!(body["sequence"], 1);
    assert_eq!(body["data"]["object"], "payment");
    assert_eq!(body["data"]["id"], payment_id);
    assert_eq!(body["data"]["status"], "canceled");
    assert!(body["created_at"].as_str().unwrap_or("").ends_with('Z'));

    // Tampering with the body or the timestamp, or a wrong secret, fails verification.
    let mut tampered = d.clone();
    tampered.body = d
        .body
        .iter()
        .map(|b| if *b == b'1' { b'2' } else { *b })
        .collect();
    assert!(!tampered.verifies_with(&secret));
    let mut tampered = d.clone();
    let ts: i64 = d.h("webhook-timestamp").parse().expect("ts");
    tampered.headers.insert(
        "webhook-timestamp",
        (ts + 1).to_string().parse().expect("header"),
    );
    assert!(!tampered.verifies_with(&secret));
    assert!(!d.verifies_with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));

    let ds = deliveries(&app, "").await;
    assert_eq!(ds[0]["status"], "succeeded");
    assert_eq!(ds[0]["attempts"][0]["http_status"], 200);
    assert!(ds[0]["attempts"][0]["latency_ms"].is_number());
    app.assert_logs_clean(&[&secret]);
}

#[tokio::test]
async fn failures_are_retried_with_the_same_webhook_id() {
    let app = webhook_app().await;
    let rx = Receiver::start(Duration::ZERO).await;
    let ep = create_endpoint(&app, json!({"url": rx.url})).await;
    rx.script(&[(500, None), (500, None), (200, None)]);
    cancel_event(&app).await;
    let mut d = dispatcher(&app);
    for _ in 0..3 {
        assert_eq!(d.dispatch_once().await.expect("dispatch"), 1);
    }
    assert_eq!(d.dispatch_once().await.expect("dispatch"), 0);
    let got = rx.received();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.id() == got[0].id()));
    let secret = ep["secret"].as_str().expect("secret");
    assert!(got.iter().all(|r| r.verifies_with(secret)));
    let ds = deliveries(
        &app,
        &format!("?endpoint={}", ep["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["status"], "succeeded");
    assert_eq!(ds[0]["event"], got[0].id());
    let statuses: Vec<&Value> = ds[0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| &a["http_status"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(500), &json!(200)]);
    assert_eq!(ds[0]["attempts"][0]["error"], "HTTP 500");
    let text = app.metrics_text().await;
    assert!(
        text.contains("ctrip_webhook_deliveries_total{outcome=\"http_5xx\"} 2"),
        "{text}"
    );
    assert!(text.contains("ctrip_webhook_deliveries_total{outcome=\"success\"} 1"));

    // A delivery that never succeeds dies after max_attempts, and can be redelivered.
    rx.script(&[(500, None), (500, None), (500, None), (500, None)]);
    cancel_event(&app).await;
    for _ in 0..4 {
        d.dispatch_once().await.expect("dispatch");
    }
    let dead = deliveries(&app, "?status=dead").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["attempts"].as_array().map(Vec::len), Some(4));
    let id = dead[0]["id"].as_str().expect("id");
    let r = app
        .post(&format!("/v1/webhook-deliveries/{id}/redeliver"))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(d.dispatch_once().await.expect("dispatch"), 1);
    let again = deliveries(
        &app,
        &format!("?event={}", dead[0]["event"].as_str().expect("event")),
    )
    .await;
    assert_eq!(again[0]["status"], "succeeded");
    assert_eq!(
        rx.received().last().map(|r| r.id()),
        dead[0]["event"].as_str().map(str::to_string)
    );
    let text = app.metrics_text().await;
    assert!(text.contains("ctrip_webhook_dead_total 1"), "{text}");
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_retry_after_is_honoured() {
    let app = webhook_app().await;
    let gone = Receiver::start(Duration::ZERO).await;
    let busy = Receiver::start(Duration::ZERO).await;
    let ep_gone = create_endpoint(&app, json!({"url": gone.url})).await;
    create_endpoint(&app, json!({"url": busy.url})).await;
    gone.script(&[(410, None)]);
    busy.script(&[(503, Some("2"))]);
    cancel_event(&app).await;
    let mut d = dispatcher(&app);
    assert_eq!(d.dispatch_once().await.expect("dispatch"), 2);
    let list: Value = app
        .get("/v1/webhook-endpoints")
        .await
        .json()
        .await
        .expect("json");
    let gone_now = list["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["id"] == ep_gone["id"])
        .cloned()
        .expect("endpoint");
    assert_eq!(gone_now["status"], "disabled");
    let ds = deliveries(
        &app,
        &format!("?endpoint={}", ep_gone["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(ds[0]["status"], "dead");
    // Retry-After: 2 pushes the next attempt at least 2 s past the failed one.
    let ds = deliveries(&app, "?status=failed").await;
    assert_eq!(ds.len(), 1);
    let at = chrono::DateTime::parse_from_rfc3339(ds[0]["attempts"][0]["at"].as_str().expect("at"))
        .expect("time");
    let next =
        chrono::DateTime::parse_from_rfc3339(ds[0]["next_attempt_at"].as_str().expect("next"))
            .expect("time");
    assert!(next - at >= chrono::Duration::seconds(2), "{at} -> {next}");
    // Not due yet: nothing is claimed.
    assert_eq!(d.dispatch_once().await.expect("dispatch"), 0);
    // A disabled endpoint gets no new deliveries.
    cancel_event(&app).await;
    let ds = deliveries(
        &app,
        &format!("?endpoint={}", ep_gone["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(ds.len(), 1);
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_during_the_grace_period() {
    let app = webhook_app().await;
    let rx = Receiver::start(Duration::ZERO).await;
    let ep = create_endpoint(&app, json!({"url": rx.url})).await;
    let old = ep["secret"].as_str().expect("secret").to_string();
    let id = ep["id"].as_str().expect("id");
    let r = app
        .client
        .post(app.url(&format!("/v1/webhook-endpoints/{id}/rotate-secret")))
        .bearer_auth(&app.api_key)
        .json(&json!({"grace_seconds": 3600}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.expect("json");
    let new = rotated["secret"].as_str().expect("secret").to_string();
    assert_ne!(old, new);
    assert!(rotated["previous_secret_expires_at"].is_string());
    cancel_event(&app).await;
    let mut d = dispatcher(&app);
    d.dispatch_once().await.expect("dispatch");
    let first = rx.received()[0].clone();
    let sigs = first.h("webhook-signature");
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    // Each signature verifies with its own secret.
    let parts: Vec<&str> = sigs.split(' ').collect();
    let one = |secret: &str, sig: &str| {
        verify(
            secret,
            &first.id(),
            &first.h("webhook-timestamp"),
            sig,
            &first.body,
            chrono::Utc::now().timestamp(),
        )
    };
    assert!(one(&new, parts[0]) && !one(&old, parts[0]));
    assert!(one(&old, parts[1]) && !one(&new, parts[1]));

    // After the grace period only the new secret signs.
    let c = app.store.client().await.expect("db");
    c.execute(
        "UPDATE webhook_endpoints SET previous_expires_at = now() - interval '1 second' WHERE id = $1::text::uuid",
        &[&id],
    )
    .await
    .expect("expire grace");
    cancel_event(&app).await;
    d.dispatch_once().await.expect("dispatch");
    let second = rx.received()[1].clone();
    assert_eq!(second.h("webhook-signature").split(' ').count(), 1);
    assert!(second.verifies_with(&new));
    assert!(!second.verifies_with(&old));
    app.assert_logs_clean(&[&old, &new]);
}

#[tokio::test]
async fn a_payments_events_reach_an_endpoint_in_sequence_order() {
    use ctrip::domain::lifecycle::Change;
    use ctrip::domain::PaymentStatus;
    let app = webhook_app().await;
    let rx = Receiver::start(Duration::ZERO).await;
    create_endpoint(&app, json!({"url": rx.url})).await;
    let p = app.create_payment("1").await;
    let id: uuid::Uuid = p["id"].as_str().expect("id").parse().expect("uuid");
    // Three transitions of one payment, written as the chain workers write them.
    let steps = [
        (
            PaymentStatus::Pending,
            PaymentStatus::PartiallyPaid,
            "payment.partially_paid",
            1u64,
        ),
        (
            PaymentStatus::PartiallyPaid,
            PaymentStatus::Processing,
            "payment.processing",
            10,
        ),
        (
            PaymentStatus::Processing,
            PaymentStatus::Confirmed,
            "payment.confirmed",
            10,
        ),
    ];
    for (from, to, event, received) in steps {
        let mut c = app.store.client().await.expect("db");
        let tx = c.transaction().await.expect("tx");
        let change = Change {
            status: to,
            exception: None,
            received: alloy::primitives::U256::from(received),
            event: Some((event, "test")),
        };
        ctrip::store::payments::write_change(&tx, app.merchant_id, id, from, &change)
            .await
            .expect("write");
        tx.commit().await.expect("commit");
    }
    // The first delivery fails once; the later ones wait for it.
    rx.script(&[(500, None)]);
    let mut d = dispatcher(&app);
    for _ in 0..6 {
        d.dispatch_once().await.expect("dispatch");
    }
    let seqs: Vec<i64> = rx
        .received()
        .iter()
        .map(|r| r.json()["sequence"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, [1, 1, 2, 3]);
}

#[tokio::test]
async fn private_and_metadata_targets_are_refused_unless_allowed() {
    let app = spawn_app_with(|s| s.webhooks.allow_private_targets = false).await;
    for url in [
        "http://127.0.0.1/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/x",
        "http://10.0.0.8/x",
        "http://[::1]/x",
    ] {
        let r = app
            .client
            .post(app.url("/v1/webhook-endpoints"))
            .bearer_auth(&app.api_key)
            .json(&json!({"url": url}))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 400, "{url}");
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["error"]["param"], "url", "{url}");
    }
    for bad in [
        json!({"url": "ftp://x.example/"}),
        json!({"url": 5}),
        json!({"url": "https://a.example", "events": ["nope"]}),
    ] {
        let r = app
            .client
            .post(app.url("/v1/webhook-endpoints"))
            .bearer_auth(&app.api_key)
            .json(&bad)
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 400, "{bad}");
    }
}

/// `kill -9` with deliveries pending loses nothing: after a restart every event id arrives.
#[tokio::test]
async fn a_killed_gateway_loses_no_delivery() {
    use futures::StreamExt;
    use std::process::Stdio;
    const EVENTS: usize = 1000;
    let rx = Receiver::start(Duration::from_millis(100)).await;
    let db = crate::helpers::create_database(&crate::helpers::maintenance_url()).await;
    let dir = std::env::temp_dir().join(format!("ctrip-kill-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        r#"
[server]
bind = "127.0.0.1:0"
[webhooks]
workers = 8
request_timeout_ms = 1000
allow_private_targets = true
poll_interval_ms = 50
[[chains]]
name = "devchain"
chain_id = 31337
rpc_urls = ["http://127.0.0.1:9"]
confirmations = 2
block_time_ms = 1000
"#,
    )
    .expect("config");
    let start = || {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_ctrip"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("CTRIP_ENV")
            .env("CTRIP__DATABASE__URL", &db)
            .env("CTRIP__WALLET__MNEMONIC", crate::helpers::TEST_MNEMONIC)
            .env("CTRIP__ADMIN__TOKEN", crate::helpers::ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        c.spawn().expect("ctrip serve")
    };
    async fn port_of(child: &mut tokio::process::Child) -> u16 {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if v["msg"] == "serving" {
                    return v["port"].as_u64();
                }
            }
            None
        })
        .await
        .expect("serving in time")
        .expect("port") as u16;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        port
    }

    let mut first = start();
    let port = port_of(&mut first).await;
    let base = format!("http://127.0.0.1:{port}");
    let store = ctrip::store::Store::new(&{
        let mut s = crate::helpers::base_settings(&db);
        s.database.pool_size = 4;
        s.database
    })
    .expect("store");
    let merchant = ctrip::ops::create_merchant(&store, "kill test")
        .await
        .expect("merchant");
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/webhook-endpoints"))
        .bearer_auth(&merchant.api_key)
        .json(&json!({"url": rx.url}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 201);
    // 1000 events: create and cancel 1000 payments, 16 at a time.
    let body = json!({"chain": "devchain", "asset": "native", "amount": "1"});
    futures::stream::iter(0..EVENTS)
        .for_each_concurrent(16, |_| {
            let (client, base, key, body) = (
                client.clone(),
                base.clone(),
                merchant.api_key.clone(),
                body.clone(),
            );
            async move {
                let p: Value = client
                    .post(format!("{base}/v1/payments"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .expect("create")
                    .json()
                    .await
                    .expect("json");
                let id = p["id"].as_str().expect("id");
                let r = client
                    .post(format!("{base}/v1/payments/{id}/cancel"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .expect("cancel");
                assert_eq!(r.status(), 200);
            }
        })
        .await;
    // Kill -9 while deliveries are still under way.
    let seen = rx.received().len();
    assert!(
        seen < EVENTS,
        "everything was delivered before the kill ({seen})"
    );
    first.start_kill().expect("kill -9");
    first.wait().await.expect("wait");

    let mut second = start();
    port_of(&mut second).await;
    let ids = eventually(90, "every event id at the receiver", || async {
        let ids: std::collections::HashSet<String> = rx.received().iter().map(|r| r.id()).collect();
        (ids.len() >= EVENTS).then_some(ids)
    })
    .await;
    assert_eq!(ids.len(), EVENTS);
    let c = store.client().await.expect("db");
    let n: i64 = c
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n as usize, EVENTS);
    let _ = std::fs::remove_dir_all(&dir);
}
