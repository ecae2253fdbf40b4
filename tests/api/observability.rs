//! Tracing, Sentry, database timing and the payment timeline, each checked against a real
//! peer: spans are decoded by PyPI's opentelemetry-proto in a Python OTLP receiver (not by
//! the exporter's own code), Sentry envelopes reach a real HTTP server, and the payment
//! runs on anvil through the actor tree to a real webhook receiver.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctrip::config::{InboundTrace, Settings};
use ctrip::devnet::{Anvil, DevChain, ANVIL_PAYER};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{
    eventually, metric, spawn_app_with, test_chain, TestApp, ADMIN_TOKEN, TEST_MNEMONIC,
};
use crate::webhooks::Receiver;

/// The Python OTLP receiver, with the spans it decoded so far.
struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
    _child: Child,
}

impl Collector {
    async fn start(fail: bool) -> Self {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut c = Command::new(format!("{root}/.tools/venv/bin/python"));
        c.arg(format!("{root}/tests/tools/otlp_receiver.py"));
        if fail {
            c.arg("--fail");
        }
        let mut child = c
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the OTLP receiver starts (scripts/setup.sh installs opentelemetry-proto)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next_line().await.expect("read").expect("port line");
        let port = first
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .expect("port");
        let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = spans.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().expect("lock").push(v);
                }
            }
        });
        Self {
            port,
            spans,
            _child: child,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spans(&self) -> Vec<Value> {
        self.spans.lock().expect("lock").clone()
    }

    /// Flushes the gateway's exporter until a span matching `pred` has arrived.
    async fn wait_for(&self, app: &TestApp, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(30, what, || async {
            app.tracing.flush();
            self.spans().into_iter().find(|s| pred(s))
        })
        .await
    }
}

fn log_lines(app: &TestApp) -> Vec<Value> {
    let buf = app.logs.lock().expect("lock").clone();
    String::from_utf8_lossy(&buf)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn traced(s: &mut Settings, collector: &Collector) {
    s.telemetry.otlp_endpoint = Some(collector.endpoint().parse().expect("url"));
}

/// `00-<trace>-<span>-<flags>` split into (trace, span).
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_string(), parts[2].to_string())
}

#[tokio::test]
async fn one_trace_id_follows_a_payment_from_its_create_request_to_its_confirmation_webhook() {
    let collector = Collector::start(false).await;
    let anvil = Anvil::start(None).await.expect("anvil");
    let dev = DevChain::new(anvil.url());
    let rpc = anvil.url();
    let app = spawn_app_with(|s| {
        traced(s, &collector);
        let mut chain = test_chain("devchain", 31337, &rpc);
        chain.poll_interval = Some(Duration::from_millis(200));
        chain.confirmations = 1;
        chain.tokens.clear();
        s.chains = vec![chain];
        s.supervision.enabled = true;
        s.webhooks.allow_private_targets = true;
        s.webhooks.workers = 1;
    })
    .await;
    let rx = Receiver::start(Duration::ZERO).await;
    let r = app
        .client
        .post(app.url("/v1/webhook-endpoints"))
        .bearer_auth(&app.api_key)
        .json(&json!({"url": rx.url}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 201);

    // A caller's own trace context is linked, not adopted (the default policy).
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let r = app
        .client
        .post(app.url("/v1/payments"))
        .bearer_auth(&app.api_key)
        .header(
            "traceparent",
            format!("00-{caller_trace}-b7ad6b7169203331-01"),
        )
        .json(&json!({"chain": "devchain", "asset": "native", "amount": "1", "confirmations": 1}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 201);
    let request_id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id")
        .to_string();
    let p: Value = r.json().await.expect("json");
    let pid = p["id"].as_str().expect("id").to_string();
    let address = p["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("addr");
    dev.pay_native(
        ANVIL_PAYER,
        address,
        alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(18u64)),
    )
    .await
    .expect("pay");
    dev.mine(2).await.expect("mine");

    let confirmed = eventually(60, "payment.confirmed at the receiver", || async {
        dev.mine(1).await.ok();
        rx.received()
            .into_iter()
            .find(|r| r.json()["type"] == "payment.confirmed")
    })
    .await;

    // The create request's span.
    let create = collector
        .wait_for(&app, "the create request's span", |s| {
            s["name"] == "POST /v1/payments"
        })
        .await;
    let trace_id = create["trace_id"].as_str().expect("trace id").to_string();
    assert_eq!(create["kind"], 2, "a server span: {create}");
    assert_eq!(create["attributes"]["http.route"], "/v1/payments");
    assert_eq!(create["attributes"]["http.response.status_code"], 201);
    assert_ne!(
        trace_id, caller_trace,
        "a public caller cannot choose our trace"
    );
    assert!(
        create["links"]
            .as_array()
            .expect("links")
            .iter()
            .any(|l| l["trace_id"] == caller_trace),
        "the caller's trace is linked: {create}"
    );

    // Its access-log line carries the same trace id.
    let logged = log_lines(&app)
        .into_iter()
        .find(|l| l["request_id"] == request_id.as_str() && l["route"] == "/v1/payments")
        .expect("the create request's access-log line");
    assert_eq!(logged["trace_id"], trace_id.as_str(), "{logged}");
    assert_eq!(logged["span_id"], create["span_id"], "{logged}");

    // The attempt that announced the confirmation sent a traceparent naming its own span,
    // and that span links back to the create request.
    let tp = confirmed
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("the webhook carries a traceparent")
        .to_string();
    let (attempt_trace, attempt_span) = ids(&tp);
    let deliver = collector
        .wait_for(&app, "the delivery span", |s| {
            s["name"] == "webhook.deliver" && s["span_id"] == attempt_span.as_str()
        })
        .await;
    assert_eq!(deliver["trace_id"], attempt_trace.as_str());
    assert_eq!(deliver["kind"], 3, "a client span: {deliver}");
    let links = deliver["links"].as_array().expect("links");
    assert!(
        links.iter().any(|l| l["trace_id"] == trace_id.as_str()),
        "the delivery links to the create request: {deliver}"
    );
    // And to the confirmer's tick that wrote the event (another trace, also exported).
    let tick_link = links
        .iter()
        .find(|l| l["trace_id"] != trace_id.as_str())
        .expect("a link to the tick that confirmed the payment");
    let tick = collector
        .wait_for(&app, "the confirming tick", |s| {
            s["span_id"] == tick_link["span_id"]
        })
        .await;
    assert_eq!(tick["name"], "worker.tick");
    assert_eq!(tick["attributes"]["ctrip.actor"], "confirmer");
    assert_eq!(tick["attributes"]["ctrip.chain"], "devchain");

    // Statements and RPC calls have spans of their own, by static name, with no URL.
    let spans = collector.spans();
    assert!(spans.iter().any(|s| s["name"] == "db.query"
        && s["attributes"]["db.operation.name"] == "payments.insert"
        && s["trace_id"] == trace_id.as_str()));
    let rpc_span = spans
        .iter()
        .find(|s| s["name"] == "rpc.call")
        .expect("an RPC span");
    assert!(!rpc_span.to_string().contains("127.0.0.1"), "{rpc_span}");

    // The operator's timeline shows the same trace ids, oldest first.
    let t: Value = app
        .client
        .get(app.url(&format!("/admin/v1/payments/{pid}/timeline")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let steps = t["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["kind"], "transition");
    assert_eq!(steps[0]["detail"]["to"], "pending");
    assert_eq!(steps[0]["trace_id"], trace_id.as_str());
    for kind in ["transfer", "event", "delivery_attempt"] {
        assert!(
            steps
                .iter()
                .any(|s| s["kind"] == kind && s["trace_id"].is_string()),
            "{kind} with a trace id in {t}"
        );
    }
    assert!(steps
        .iter()
        .any(|s| s["kind"] == "delivery_attempt" && s["trace_id"] == attempt_trace.as_str()));
    let ats: Vec<&str> = steps.iter().filter_map(|s| s["at"].as_str()).collect();
    let mut sorted = ats.clone();
    sorted.sort();
    assert_eq!(ats, sorted, "time order");

    // The same timeline from the command line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ctrip"))
        .args(["payment", "timeline", &pid])
        .env("CTRIP__DATABASE__URL", &app.db_url)
        .env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC)
        .env("CTRIP__ADMIN__TOKEN", ADMIN_TOKEN)
        .output()
        .expect("ran");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&trace_id), "{text}");
    assert!(text.contains("delivery_attempt"), "{text}");
}

#[tokio::test]
async fn an_incoming_traceparent_is_followed_only_when_configured_to() {
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    for policy in [InboundTrace::Parent, InboundTrace::Ignore] {
        let collector = Collector::start(false).await;
        let app = spawn_app_with(|s| {
            traced(s, &collector);
            s.telemetry.inbound_trace = policy;
        })
        .await;
        let r = app
            .client
            .get(app.url("/v1/chains"))
            .bearer_auth(&app.api_key)
            .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 200);
        let span = collector
            .wait_for(&app, "the request's span", |s| {
                s["name"] == "GET /v1/chains"
            })
            .await;
        match policy {
            InboundTrace::Parent => {
                assert_eq!(span["trace_id"], caller_trace, "{span}");
                assert_eq!(span["parent_span_id"], caller_span, "{span}");
            }
            _ => {
                assert_ne!(span["trace_id"], caller_trace, "{span}");
                assert_eq!(span["links"], json!([]), "{span}");
            }
        }
    }
}

#[tokio::test]
async fn with_the_collector_down_requests_are_served_and_export_failures_counted() {
    // One collector that refuses every export, and one address where nothing listens.
    let refusing = Collector::start(true).await;
    for endpoint in [refusing.endpoint(), "http://127.0.0.1:9".to_string()] {
        let app = spawn_app_with(|s| {
            s.telemetry.otlp_endpoint = Some(endpoint.parse().expect("url"));
        })
        .await;
        for _ in 0..20 {
            let r = app.post_payment(&crate::helpers::native_body("1")).await;
            assert_eq!(r.status(), 201);
        }
        let failed = eventually(30, "a counted export failure", || async {
            app.tracing.flush();
            let text = app.metrics_text().await;
            metric(&text, r#"ctrip_otel_export_total{result="error"}"#).filter(|n| *n >= 1.0)
        })
        .await;
        assert!(failed >= 1.0);
        let text = app.metrics_text().await;
        assert_eq!(
            metric(&text, r#"ctrip_otel_export_total{result="ok"}"#),
            Some(0.0)
        );
    }
}

#[tokio::test]
async fn without_an_endpoint_no_span_is_recorded_and_logs_carry_no_trace_ids() {
    let app = spawn_app_with(|_| {}).await;
    let r = app.post_payment(&crate::helpers::native_body("1")).await;
    assert_eq!(r.status(), 201);
    assert!(!ctrip::telemetry::trace::enabled());
    let lines = log_lines(&app);
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|l| l.get("trace_id").is_none()),
        "{lines:?}"
    );
    let text = app.metrics_text().await;
    assert_eq!(
        metric(&text, r#"ctrip_otel_export_total{result="error"}"#),
        Some(0.0)
    );
}

#[tokio::test]
async fn statements_are_timed_by_name_and_slow_ones_logged_without_parameters() {
    let app = spawn_app_with(|s| {
        // Every statement counts as slow here, so the warning is certain to appear.
        s.database.slow_query = Duration::ZERO;
    })
    .await;
    let r = app
        .post_payment(
            &json!({"chain": "devchain", "asset": "native", "amount": "1",
            "order_id": "order-secret-looking-4711"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let text = app.metrics_text().await;
    assert!(
        metric(
            &text,
            r#"ctrip_db_query_duration_seconds_count{stmt="payments.insert"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(metric(&text, "ctrip_db_pool_acquire_seconds_count").unwrap_or(0.0) >= 1.0);
    let slow: Vec<Value> = log_lines(&app)
        .into_iter()
        .filter(|l| l["msg"] == "slow_query")
        .collect();
    let insert = slow
        .iter()
        .find(|l| l["stmt"] == "payments.insert")
        .expect("a slow_query line for payments.insert");
    assert_eq!(insert["level"], "WARN");
    assert!(insert["ms"].is_u64());
    let all = serde_json::to_string(&slow).expect("json");
    assert!(!all.contains("order-secret-looking-4711"), "{all}");
    assert!(!all.contains("INSERT"), "{all}");
}

#[tokio::test]
async fn a_pool_wait_timeout_is_counted_by_kind_and_answered_as_unavailable() {
    let app = spawn_app_with(|s| {
        s.database.pool_size = 1;
        s.database.pool_wait_timeout = Duration::from_millis(200);
    })
    .await;
    let held = app.store.client().await.expect("the only connection");
    let r = app.get("/v1/payments").await;
    assert_eq!(r.status(), 503);
    drop(held);
    let text = app.metrics_text().await;
    assert_eq!(
        metric(&text, r#"ctrip_db_pool_timeouts_total{kind="wait"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "ctrip_ready"), Some(1.0));
}

/// A real HTTP server taking Sentry envelopes (`POST /api/{project}/envelope/`).
struct EnvelopeReceiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl EnvelopeReceiver {
    async fn start() -> Self {
        use warp::Filter;
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = bodies.clone();
        let route = warp::post()
            .and(warp::body::bytes())
            .map(move |body: bytes::Bytes| {
                sink.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&body).into_owned());
                warp::reply::json(&json!({"id": "0"}))
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self { port, bodies }
    }

    fn dsn(&self) -> String {
        format!("http://public@127.0.0.1:{}/42", self.port)
    }

    /// The error events received so far (an envelope's item after an `event` header).
    fn events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for body in self.bodies.lock().expect("lock").iter() {
            let lines: Vec<&str> = body.lines().collect();
            for w in lines.windows(2) {
                let header: Value = serde_json::from_str(w[0]).unwrap_or(Value::Null);
                if header["type"] == "event" {
                    out.push(serde_json::from_str(w[1]).unwrap_or(Value::Null));
                }
            }
        }
        out
    }

    fn raw(&self) -> String {
        self.bodies.lock().expect("lock").join("\n")
    }
}

fn flush_sentry() {
    if let Some(client) = sentry::Hub::main().client() {
        client.flush(Some(Duration::from_secs(5)));
    }
}

async fn sentry_app(
    anvil: &Anvil,
    dsn: &str,
    otlp: Option<String>,
) -> (TestApp, Option<sentry::ClientInitGuard>) {
    let mut telemetry = crate::helpers::base_settings("postgres://unused@127.0.0.1/x").telemetry;
    telemetry.sentry_dsn = ctrip::config::Secret::new(dsn);
    telemetry.environment = "ci".into();
    let guard = ctrip::telemetry::init_sentry(&telemetry);
    let rpc = anvil.url();
    let dsn = dsn.to_string();
    let app = spawn_app_with(move |s| {
        s.telemetry.sentry_dsn = ctrip::config::Secret::new(dsn);
        s.telemetry.environment = "ci".into();
        s.telemetry.otlp_endpoint = otlp.map(|u| u.parse().expect("url"));
        let mut chain = test_chain("devchain", 31337, &rpc);
        chain.poll_interval = Some(Duration::from_millis(200));
        s.chains = vec![chain];
        s.supervision.enabled = true;
        s.supervision.restart_backoff_min = Duration::from_millis(100);
        s.webhooks.workers = 1;
    })
    .await;
    (app, guard)
}

async fn restarts(app: &TestApp) -> f64 {
    let text = app.metrics_text().await;
    metric(
        &text,
        r#"ctrip_actor_restarts_total{actor="confirmer",chain="devchain",reason="panic"}"#,
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn each_actor_failure_is_one_sentry_event_with_release_environment_and_tags() {
    let rx = EnvelopeReceiver::start().await;
    let anvil = Anvil::start(None).await.expect("anvil");
    let collector = Collector::start(false).await;
    let (app, guard) = sentry_app(&anvil, &rx.dsn(), Some(collector.endpoint())).await;
    assert!(guard.is_some());
    eventually(30, "the confirmer to run", || async {
        let (_, d) = app.health_detail().await;
        (d["checks"]["devchain.confirmer:heartbeat"][0]["status"] == "pass").then_some(())
    })
    .await;
    for n in 1..=2 {
        app.state.faults.inject_panic("devchain.confirmer");
        eventually(30, "the confirmer to restart", || async {
            (restarts(&app).await >= f64::from(n)).then_some(())
        })
        .await;
    }
    eventually(30, "two events", || async {
        flush_sentry();
        (rx.events().len() >= 2).then_some(())
    })
    .await;
    flush_sentry();
    let events = rx.events();
    let unique: std::collections::HashSet<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(unique.len(), 2, "one event per failure: {events:#?}");
    for e in &events {
        assert_eq!(e["release"], "ctrip@0.1.0", "{e}");
        assert_eq!(e["environment"], "ci", "{e}");
        assert_eq!(e["tags"]["chain"], "devchain", "{e}");
        assert_eq!(e["tags"]["actor"], "confirmer", "{e}");
        let trace_id = e["tags"]["trace_id"].as_str().unwrap_or("");
        assert!(
            trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "the failing tick's trace id: {e}"
        );
    }
    let raw = rx.raw();
    for secret in [
        TEST_MNEMONIC,
        ADMIN_TOKEN,
        app.api_key.as_str(),
        app.db_url.as_str(),
    ] {
        assert!(!raw.contains(secret), "a secret reached Sentry");
    }
}

#[tokio::test]
async fn without_a_configured_dsn_nothing_is_sent_whatever_the_environment_says() {
    let rx = EnvelopeReceiver::start().await;
    // Sentry's own environment variable is not a way in: only telemetry.sentry_dsn is.
    std::env::set_var("SENTRY_DSN", rx.dsn());
    let anvil = Anvil::start(None).await.expect("anvil");
    let (app, guard) = sentry_app(&anvil, "", None).await;
    assert!(guard.is_none());
    eventually(30, "the confirmer to run", || async {
        let (_, d) = app.health_detail().await;
        (d["checks"]["devchain.confirmer:heartbeat"][0]["status"] == "pass").then_some(())
    })
    .await;
    app.state.faults.inject_panic("devchain.confirmer");
    eventually(30, "the confirmer to restart", || async {
        (restarts(&app).await >= 1.0).then_some(())
    })
    .await;
    flush_sentry();
    assert!(rx.raw().is_empty(), "{}", rx.raw());
}
