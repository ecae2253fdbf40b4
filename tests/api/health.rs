use std::time::{Duration, Instant};

use ctrip::devnet::TempPostgres;

use crate::helpers::{create_database, native_body, spawn_app, spawn_app_on};

#[tokio::test]
async fn live_and_ready_pass_with_a_healthy_database() {
    let app = spawn_app().await;
    for path in ["/health", "/health/live", "/health/ready"] {
        let r = app.client.get(app.url(path)).send().await.expect("sent");
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "application/health+json");
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["status"], "pass");
    }
}

async fn status_of(app: &crate::helpers::TestApp, path: &str) -> u16 {
    app.client
        .get(app.url(path))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls until `path` answers `want`, with a deadline: the pool notices a dead or revived
/// server on its next checkout, not at a fixed time.
async fn wait_for(app: &crate::helpers::TestApp, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = status_of(app, path).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {got}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ready_follows_the_database_and_live_does_not() {
    // A private server, so stopping it does not disturb the other tests.
    let pg = tokio::task::spawn_blocking(TempPostgres::start)
        .await
        .expect("join")
        .expect("temporary PostgreSQL starts");
    let url = create_database(&pg.url("postgres")).await;
    let app = spawn_app_on(&url, |s| {
        s.database.connect_timeout = std::time::Duration::from_millis(1000)
    })
    .await;
    assert_eq!(status_of(&app, "/health/ready").await, 200);

    let pg = tokio::task::spawn_blocking(move || pg.stop_server().map(|_| pg))
        .await
        .expect("join")
        .expect("stop");
    wait_for(&app, "/health/ready", 503).await;
    assert_eq!(status_of(&app, "/health/live").await, 200);
    // The detailed report fails (503) only for this reason: the database is unreachable.
    let (code, d) = app.health_detail().await;
    assert_eq!(code, 503);
    assert_eq!(d["status"], "fail");
    assert_eq!(d["checks"]["postgres:responseTime"][0]["status"], "fail");
    // API calls fail cleanly while the database is away.
    let r = app.post_payment(&native_body("1")).await;
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"]["type"], "internal");
    assert!(!v.to_string().contains("postgres://"));

    let pg = tokio::task::spawn_blocking(move || pg.start_server().map(|_| pg))
        .await
        .expect("join")
        .expect("restart");
    wait_for(&app, "/health/ready", 200).await;
    assert_eq!(status_of(&app, "/health/live").await, 200);
    assert_eq!(app.health_detail().await.0, 200);
    let r = app.post_payment(&native_body("1")).await;
    assert_eq!(r.status(), 201);
    drop(app);
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .expect("join");
}

#[tokio::test]
async fn metrics_use_route_templates_and_bounded_labels() {
    let app = spawn_app().await;
    let p = app.create_payment("1").await;
    let id = p["id"].as_str().expect("id");
    assert_eq!(app.get(&format!("/v1/payments/{id}")).await.status(), 200);
    let r = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(
        text.contains(
            r#"ctrip_http_requests_total{method="GET",route="/v1/payments/{id}",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"ctrip_http_requests_total{method="POST",route="/v1/payments",status="201"} 1"#
    ));
    assert!(text.contains("ctrip_http_request_duration_seconds_bucket"));
    assert!(text.contains(r#"ctrip_payments_created_total{chain="devchain"} 1"#));
    assert!(text.contains("ctrip_db_pool_connections{state=\"idle\"}"));
    assert!(text.contains("ctrip_db_pool_waiting"));
    assert!(text.contains("ctrip_build_info"));
    assert!(text.contains("ctrip_chain_configured{chain=\"devchain\"} 1"));
    assert!(!text.contains(id), "a payment id leaked into metric labels");
}
