//! Hostile input: what a client sends can neither exhaust, crash nor trick the gateway.
//! The exact requests come from a probe of the release binary.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{expect_error, spawn_app, spawn_app_with, TestApp};

async fn post_json(app: &TestApp, path: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("sent")
}

async fn param_error(r: reqwest::Response, status: u16, param: &str) {
    let e = expect_error(r, status, "invalid_request").await;
    assert_eq!(e["param"], param, "{e}");
}

#[tokio::test]
async fn a_nul_or_control_character_is_a_400_naming_the_field_never_a_500() {
    let app = spawn_app().await;
    let base = r#""chain":"devchain","asset":"native","amount":"1""#;
    for (extra, field) in [
        (r#""order_id":"a\u0000b""#, "order_id"),
        (r#""order_id":"a\nb""#, "order_id"),
        (r#""metadata":{"k":"a\u0000b"}"#, "metadata"),
        (r#""metadata":{"k\u0000":"b"}"#, "metadata"),
        (r#""metadata":{"k":["ok",{"n":"\u001b[31m"}]}"#, "metadata"),
    ] {
        let r = post_json(&app, "/v1/payments", &format!("{{{base},{extra}}}")).await;
        param_error(r, 400, field).await;
    }
    for (body, field) in [
        (
            r#"{"url":"https://8.8.8.8/x","description":"a\u0000b"}"#,
            "description",
        ),
        (r#"{"url":"https://8.8.8.8/x\u0000"}"#, "url"),
    ] {
        let r = post_json(&app, "/v1/webhook-endpoints", body).await;
        param_error(r, 400, field).await;
    }
    for (path, field) in [
        ("/v1/payments?order_id=%00", "order_id"),
        (
            "/v1/payments?order_id=%00%C3%89%C3%B1&chain=devchain",
            "order_id",
        ),
        ("/v1/webhook-deliveries?event=%00", "event"),
    ] {
        param_error(app.get(path).await, 400, field).await;
    }
    assert!(
        !app.log_text().contains("\"level\":\"ERRO\""),
        "no ERROR line for a client's input"
    );
}

#[tokio::test]
async fn duplicate_keys_inexact_numbers_and_byte_counted_lengths_are_fixed() {
    let app = spawn_app().await;
    let r = post_json(
        &app,
        "/v1/payments",
        r#"{"chain":"devchain","asset":"native","amount":"1","amount":"2"}"#,
    )
    .await;
    let e = expect_error(r, 400, "invalid_request").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("duplicate key"),
        "{e}"
    );
    let r = post_json(
        &app,
        "/v1/payments",
        r#"{"chain":"devchain","asset":"native","amount":"1","metadata":{"big":123456789012345678901234567890}}"#,
    )
    .await;
    let e = expect_error(r, 400, "invalid_request").await;
    assert!(e["message"].as_str().unwrap_or("").contains("2^53"), "{e}");
    // Exact numbers come back exact.
    let r = post_json(
        &app,
        "/v1/payments",
        r#"{"chain":"devchain","asset":"native","amount":"1","metadata":{"n":9007199254740992,"f":0.1}}"#,
    )
    .await;
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.expect("json");
    assert_eq!(p["metadata"]["n"], json!(9_007_199_254_740_992u64));
    // 200 two-byte characters are 200 characters.
    let order = "é".repeat(200);
    let r = app
        .post_payment(
            &json!({"chain": "devchain", "asset": "native", "amount": "1", "order_id": order}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let long = "é".repeat(256);
    let r = app
        .post_payment(
            &json!({"chain": "devchain", "asset": "native", "amount": "1", "order_id": long}),
        )
        .await;
    param_error(r, 400, "order_id").await;
    let r = post_json(
        &app,
        "/v1/webhook-endpoints",
        &json!({"url": "https://8.8.8.8/x", "description": "é".repeat(300)}).to_string(),
    )
    .await;
    assert_eq!(r.status(), 201, "300 characters are within 500");
}

#[tokio::test]
async fn query_parameters_are_refused_unless_known_and_single_everywhere() {
    let app = spawn_app().await;
    for path in [
        "/v1/chains?foo=bar",
        "/v1/webhook-endpoints?foo=bar",
        "/v1/webhook-deliveries?limit=5&limit=6",
        "/v1/payments?limit=5&limit=6",
    ] {
        assert_eq!(app.get(path).await.status(), 400, "{path}");
    }
    assert_eq!(
        app.get("/v1/webhook-deliveries?limit=5").await.status(),
        200
    );
    // The authentication scheme is case-insensitive.
    let r = app
        .client
        .get(app.url("/v1/chains"))
        .header("authorization", format!("bearer {}", app.api_key))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    // A request id that could forge log fields is replaced.
    let r = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "x,level=CRIT,msg=\"forged-entry\"")
        .send()
        .await
        .expect("sent");
    assert_ne!(
        r.headers()["x-request-id"],
        "x,level=CRIT,msg=\"forged-entry\""
    );
}

#[tokio::test]
async fn webhook_urls_are_normalised_and_every_internal_ipv6_form_is_refused() {
    let app = spawn_app_with(|s| {
        s.webhooks.allow_private_targets = false;
        s.webhooks.max_endpoints_per_merchant = 3;
    })
    .await;
    let create = |url: &str| {
        let body = json!({"url": url}).to_string();
        let app = &app;
        async move { post_json(app, "/v1/webhook-endpoints", &body).await }
    };
    for url in [
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[64:ff9b:1::7f00:1]/",
        "http://[2002:7f00:1::]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://[::127.0.0.1]/",
        "http://[::7f00:1]/",
        "http://[::ffff:0:7f00:1]/",
        "http://[2001::53aa:64c:0:7f00:1]/",
        "http://[fec0::1]/",
        "http://[100::1]/",
        " http://8.8.8.8/",
        "http://8.8.8.8/\n",
        "http:8.8.8.8/",
        "http:///8.8.8.8/",
        "http://8.8.8.8\\@127.0.0.1/",
        "http://user:pw@8.8.8.8/",
        "http://8.8.8.8:22/",
        "http://8.8.8.8:1023/",
        "http://8.8.8.8:0/",
    ] {
        param_error(create(url).await, 400, "url").await;
    }
    let r = create("HTTP://8.8.8.8/Hook").await;
    assert_eq!(r.status(), 201);
    let ep: Value = r.json().await.expect("json");
    assert_eq!(ep["url"], "http://8.8.8.8/Hook");
    assert_eq!(create("https://8.8.8.8:8443/x").await.status(), 201);
    assert_eq!(create("https://8.8.8.8/y").await.status(), 201);
    // The quota: a fourth endpoint is refused until one is deleted.
    let r = create("https://8.8.8.8/z").await;
    let e = expect_error(r, 409, "conflict").await;
    assert!(e["message"].as_str().unwrap_or("").contains("quota"), "{e}");
    let id = ep["id"].as_str().expect("id");
    let r = app
        .client
        .delete(app.url(&format!("/v1/webhook-endpoints/{id}")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    assert_eq!(create("https://8.8.8.8/z").await.status(), 201);
}

/// Reads whatever the server sends until it closes, or `None` if it is still open after
/// `secs` (a deadline, not a wait for work).
async fn read_until_closed(s: &mut TcpStream, secs: u64) -> Option<String> {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(secs), s.read_to_end(&mut buf)).await;
    match r {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

fn addr(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn the_server_times_out_slow_clients_and_bounds_headers_and_connections() {
    let app = spawn_app_with(|s| {
        s.server.header_read_timeout = std::time::Duration::from_millis(300);
        s.server.request_timeout = std::time::Duration::from_millis(300);
        s.server.idle_timeout = std::time::Duration::from_millis(2_000);
        s.server.max_header_bytes = 16 * 1024;
        s.server.max_connections = 8;
    })
    .await;
    // A head larger than the limit: 431, and the connection is closed.
    let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
    let big = format!(
        "GET /health/live HTTP/1.1\r\nHost: x\r\nX-pad: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let _ = s.write_all(big.as_bytes()).await;
    let got = read_until_closed(&mut s, 10).await.expect("closed");
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");

    // Slowloris: a head that never ends is closed after the header-read timeout.
    let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-a: ")
        .await
        .expect("write");
    assert!(
        read_until_closed(&mut s, 10).await.is_some(),
        "slowloris held open"
    );

    // A body that never arrives: 408.
    let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
    s.write_all(
        format!(
            "POST /v1/payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"chain\"",
            app.api_key
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let got = read_until_closed(&mut s, 10).await.expect("answered");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");

    // Past the connection cap, a new connection gets 503 at once; the held ones do not
    // stop the API for long: they are closed by the header timeout.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut c = TcpStream::connect(addr(&app)).await.expect("connect");
        c.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        held.push(c);
    }
    let mut extra = TcpStream::connect(addr(&app)).await.expect("connect");
    let got = read_until_closed(&mut extra, 10).await.expect("answered");
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    for mut c in held {
        assert!(read_until_closed(&mut c, 10).await.is_some());
    }
    crate::helpers::eventually(10, "the API answers again", || async {
        let r = app.client.get(app.url("/health/live")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(|s| {
        s.server.header_read_timeout = std::time::Duration::from_millis(60_000);
        s.server.idle_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let got = read_until_closed(&mut s, 10)
        .await
        .expect("closed when idle");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

#[tokio::test]
async fn metrics_and_health_detail_can_live_on_a_separate_operator_bind() {
    let url = crate::helpers::create_database(&crate::helpers::maintenance_url()).await;
    let mut settings = crate::helpers::base_settings(&url);
    settings.server.ops_bind = Some("127.0.0.1:0".parse().unwrap());
    let (log, _) = ctrip::telemetry::build_logger(
        &settings.telemetry,
        ctrip::telemetry::LogSink::Buffer(Default::default()),
    );
    let app = ctrip::app::Application::build(settings, log, true)
        .await
        .expect("builds");
    let (main, ops) = (app.port(), app.ops_port().expect("ops port"));
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let c = reqwest::Client::new();
    let get = |port: u16, path: &str| {
        let c = c.clone();
        let url = format!("http://127.0.0.1:{port}{path}");
        async move { c.get(url).send().await.expect("sent").status().as_u16() }
    };
    assert_eq!(get(ops, "/metrics").await, 200);
    assert_eq!(get(ops, "/health/detail").await, 200);
    assert_eq!(get(ops, "/health/ready").await, 200);
    assert_eq!(get(ops, "/v1/chains").await, 404);
    assert_eq!(get(main, "/metrics").await, 404);
    assert_eq!(get(main, "/health/detail").await, 404);
    assert_eq!(get(main, "/health/live").await, 200);
}
