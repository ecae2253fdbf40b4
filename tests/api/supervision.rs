//! The actor tree against real anvil devnets: stall detection through a blackholing proxy,
//! panic isolation, operator restarts, `/health/detail`, actor metrics and ordered shutdown.

use std::process::Stdio;
use std::time::{Duration, Instant};

use actors::RestartReason;
use ctrip::config::Settings;
use ctrip::devnet::Anvil;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{
    create_database, eventually, maintenance_url, metric, spawn_app_with, test_chain, TestApp,
    ADMIN_TOKEN, TEST_MNEMONIC,
};
use crate::proxy::Proxy;

const STALL_MS: u64 = 2000;

fn tree_settings(s: &mut Settings, alpha_rpc: &str, beta_rpc: &str) {
    let mut alpha = test_chain("alpha", 31337, alpha_rpc);
    alpha.poll_interval = Some(std::time::Duration::from_millis(200));
    let mut beta = test_chain("beta", 31338, beta_rpc);
    beta.poll_interval = Some(std::time::Duration::from_millis(200));
    s.chains = vec![alpha, beta];
    s.webhooks.workers = 2;
    let sv = &mut s.supervision;
    sv.enabled = true;
    sv.watchdog_interval = std::time::Duration::from_millis(200);
    sv.stall_timeout = std::time::Duration::from_millis(STALL_MS);
    sv.restart_backoff_min = std::time::Duration::from_millis(200);
    sv.restart_backoff_max = std::time::Duration::from_millis(2000);
    sv.chain_retry_min = std::time::Duration::from_millis(1000);
    sv.chain_retry_max = std::time::Duration::from_millis(5000);
    // Longer than the stall timeout: a blackholed request hangs until the watchdog acts.
    sv.rpc_timeout = std::time::Duration::from_millis(30_000);
}

fn check<'a>(detail: &'a Value, key: &str) -> &'a Value {
    &detail["checks"][key][0]
}

async fn all_pass(app: &TestApp) -> Option<Value> {
    let (code, d) = app.health_detail().await;
    (code == 200 && d["status"] == "pass").then_some(d)
}

#[tokio::test]
async fn a_blackholed_rpc_stalls_only_its_scanner_which_recovers_after_healing() {
    let a = Anvil::start(None).await.expect("anvil");
    let b = Anvil::start(None).await.expect("anvil");
    let proxy = Proxy::start(format!("127.0.0.1:{}", a.port()).parse().expect("addr")).await;
    let app = spawn_app_with(|s| tree_settings(s, &proxy.url(), &b.url())).await;

    let d = eventually(30, "every check to pass", || all_pass(&app)).await;
    assert_eq!(check(&d, "alpha.scanner:heartbeat")["status"], "pass");

    let started = Instant::now();
    proxy.set_blackhole(true);
    let series = r#"ctrip_actor_restarts_total{actor="scanner",chain="alpha",reason="stalled"}"#;
    eventually(30, "a stalled restart of alpha.scanner", || async {
        let text = app.metrics_text().await;
        (metric(&text, series).unwrap_or(0.0) >= 1.0).then_some(())
    })
    .await;
    // Detected within the stall timeout plus one watchdog tick and one scanner tick
    // (plus scheduling slack on a busy 2-core machine).
    let detected = started.elapsed();
    assert!(
        detected <= Duration::from_millis(STALL_MS + 200 + 200 + 2000),
        "stall detected after {detected:?}"
    );

    let d = eventually(10, "alpha.scanner to show warn", || async {
        let (code, d) = app.health_detail().await;
        assert_eq!(code, 200, "a stalled actor must not fail the service");
        (check(&d, "alpha.scanner:heartbeat")["status"] == "warn").then_some(d)
    })
    .await;
    assert_eq!(d["status"], "warn");
    let out = check(&d, "alpha.scanner:heartbeat")["output"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(out.contains("restart"), "{out}");
    assert!(out.contains("stalled"), "{out}");
    // The other chain is untouched (alpha's confirmer needs the same RPC, so it may stall too).
    for key in [
        "beta.scanner",
        "beta.confirmer",
        "beta.sweeper",
        "alpha.sweeper",
    ] {
        assert_eq!(
            check(&d, &format!("{key}:heartbeat"))["status"],
            "pass",
            "{key}: {d}"
        );
    }
    let live = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("sent");
    assert_eq!(live.status(), 200);
    // RPC URLs appear as host only.
    assert!(!d.to_string().contains("http://"), "{d}");

    proxy.set_blackhole(false);
    eventually(30, "alpha.scanner back to pass", || async {
        let (_, d) = app.health_detail().await;
        (check(&d, "alpha.scanner:heartbeat")["status"] == "pass").then_some(())
    })
    .await;
    let beta = app
        .state
        .registry
        .get("beta", "scanner")
        .expect("registered");
    assert_eq!(
        beta.incarnation(),
        1,
        "the other chain's scanner was never restarted"
    );
    app.assert_logs_clean(&[]);
    let logs = app.log_text();
    assert!(
        !logs.contains(&proxy.url()) && !logs.contains(&b.url()),
        "an RPC URL reached the logs"
    );
}

#[tokio::test]
async fn an_injected_panic_restarts_only_that_actor() {
    let a = Anvil::start(None).await.expect("anvil");
    let app = spawn_app_with(|s| tree_settings(s, &a.url(), &a.url())).await;
    eventually(30, "every check to pass", || all_pass(&app)).await;

    app.state.faults.inject_panic("beta.confirmer");
    let confirmer = app
        .state
        .registry
        .get("beta", "confirmer")
        .expect("registered");
    eventually(20, "the panic restart", || async {
        (confirmer.restarts(RestartReason::Panic) == 1 && confirmer.incarnation() == 2)
            .then_some(())
    })
    .await;
    for chain in ["alpha", "beta"] {
        for actor in ["scanner", "confirmer", "sweeper"] {
            if (chain, actor) == ("beta", "confirmer") {
                continue;
            }
            let h = app.state.registry.get(chain, actor).expect("registered");
            assert_eq!(h.incarnation(), 1, "{chain}.{actor} was restarted");
        }
    }
    let text = app.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            r#"ctrip_actor_restarts_total{actor="confirmer",chain="beta",reason="panic"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"ctrip_actor_restarts_total{actor="scanner",chain="beta",reason="panic"}"#
        ),
        Some(0.0)
    );
    eventually(30, "everything to pass again", || all_pass(&app)).await;
}

#[tokio::test]
async fn operators_can_restart_one_actor() {
    let a = Anvil::start(None).await.expect("anvil");
    let app = spawn_app_with(|s| tree_settings(s, &a.url(), &a.url())).await;
    eventually(30, "every check to pass", || all_pass(&app)).await;
    let url = app.url("/admin/v1/actors/alpha/sweeper/restart");
    let r = app.client.post(&url).send().await.expect("sent");
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(&url)
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(&url)
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 401, "a merchant key is not an admin token");
    let r = app
        .client
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 202);
    let sweeper = app
        .state
        .registry
        .get("alpha", "sweeper")
        .expect("registered");
    eventually(10, "the manual restart", || async {
        (sweeper.restarts(RestartReason::Manual) == 1 && sweeper.incarnation() == 2).then_some(())
    })
    .await;
    let r = app
        .client
        .post(app.url("/admin/v1/actors/nochain/scanner/restart"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .post(app.url("/admin/v1/actors/alpha/nobody/restart"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        r.status(),
        404,
        "an actor that does not exist is not a conflict"
    );
}

#[tokio::test]
async fn health_detail_follows_the_ietf_format_and_metrics_cover_every_actor() {
    let a = Anvil::start(None).await.expect("anvil");
    let app = spawn_app_with(|s| tree_settings(s, &a.url(), &a.url())).await;
    let d = eventually(30, "every check to pass", || all_pass(&app)).await;
    let r = app
        .client
        .get(app.url("/health/detail"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.headers()["content-type"], "application/health+json");
    assert_eq!(d["version"], "1");
    assert!(d["releaseId"].is_string());
    let checks = d["checks"].as_object().expect("checks object");
    for key in [
        "postgres:responseTime",
        "postgres:connections",
        "alpha.rpc:responseTime",
        "alpha.head:lag",
        "beta.rpc:responseTime",
        "alpha.scanner:heartbeat",
        "alpha.confirmer:heartbeat",
        "alpha.sweeper:heartbeat",
        "beta.scanner:heartbeat",
        "webhooks.dispatcher-0:heartbeat",
        "webhooks.dispatcher-1:heartbeat",
        "webhooks:queueDepth",
        "webhooks:oldestPendingAge",
    ] {
        assert!(checks.contains_key(key), "missing {key}");
    }
    for (key, list) in checks {
        let (component, measurement) = key.split_once(':').expect("component:measurement");
        assert!(!component.is_empty() && !measurement.contains(':'), "{key}");
        for c in list.as_array().expect("an array per check") {
            for field in [
                "componentId",
                "componentType",
                "observedUnit",
                "status",
                "time",
            ] {
                assert!(c.get(field).is_some(), "{key} lacks {field}");
            }
            assert!(
                c.get("observedValue").is_some(),
                "{key} lacks observedValue"
            );
            assert!(
                ["pass", "warn", "fail"].contains(&c["status"].as_str().unwrap_or("")),
                "{key}"
            );
            assert!(c["time"].as_str().unwrap_or("").ends_with('Z'), "{key}");
        }
    }
    assert_eq!(check(&d, "alpha.head:lag")["observedValue"], 0);

    let text = app.metrics_text().await;
    for chain in ["alpha", "beta"] {
        for actor in ["scanner", "confirmer", "sweeper"] {
            let up = format!(r#"ctrip_actor_up{{actor="{actor}",chain="{chain}"}}"#);
            assert_eq!(metric(&text, &up), Some(1.0), "{up}");
            let hb = format!(
                r#"ctrip_actor_last_heartbeat_timestamp_seconds{{actor="{actor}",chain="{chain}"}}"#
            );
            assert!(metric(&text, &hb).unwrap_or(0.0) > 1.7e9, "{hb}");
            for reason in ["panic", "error", "stalled", "spawn_failed"] {
                let r = format!(
                    r#"ctrip_actor_restarts_total{{actor="{actor}",chain="{chain}",reason="{reason}"}}"#
                );
                assert_eq!(metric(&text, &r), Some(0.0), "{r}");
            }
        }
        let m = format!(r#"ctrip_supervisor_meltdowns_total{{actor="chain",chain="{chain}"}}"#);
        assert_eq!(metric(&text, &m), Some(0.0), "{m}");
        assert!(metric(&text, &format!(r#"ctrip_rpc_requests_total{{chain="{chain}",method="eth_blockNumber",outcome="ok"}}"#)).unwrap_or(0.0) >= 1.0);
        assert!(text.contains(&format!(r#"ctrip_chain_head_block{{chain="{chain}"}}"#)));
        assert!(text.contains(&format!(
            r#"ctrip_confirmer_pending_payments{{chain="{chain}"}}"#
        )));
    }
    assert_eq!(
        metric(&text, r#"ctrip_actor_up{actor="dispatcher-0",chain=""}"#),
        Some(1.0)
    );
}

/// SIGTERM stops the tree in reverse start order and the process exits 0 within 10 s.
#[tokio::test]
async fn sigterm_stops_the_tree_in_reverse_order() {
    let anvil = Anvil::start(None).await.expect("anvil");
    let db = create_database(&maintenance_url()).await;
    let dir = std::env::temp_dir().join(format!("ctrip-sigterm-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
[webhooks]
workers = 2
[supervision]
shutdown_timeout_ms = 2000
[[chains]]
name = "one"
chain_id = 31337
rpc_urls = ["{}"]
confirmations = 2
block_time_ms = 1000
poll_interval_ms = 200
"#,
            anvil.url()
        ),
    )
    .expect("write config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ctrip"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("CTRIP_ENV")
        .env("CTRIP__DATABASE__URL", &db)
        .env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC)
        .env("CTRIP__ADMIN__TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ctrip serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut log: Vec<Value> = Vec::new();
    // Wait until every worker has started and the server listens.
    let port = tokio::time::timeout(Duration::from_secs(60), async {
        let mut port = None;
        let mut started = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["msg"] == "serving" {
                port = v["port"].as_u64();
            }
            if v["msg"] == "actor started" {
                started += 1;
            }
            log.push(v);
            // root's 2 children + 3 chain workers + 2 dispatchers.
            if port.is_some() && started >= 7 {
                return port;
            }
        }
        None
    })
    .await
    .expect("started in time")
    .expect("port logged");
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health/live"))
        .await
        .expect("live");
    assert_eq!(health.status(), 200);

    let pid = child.id().expect("pid") as i32;
    let stopping = Instant::now();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited within 10 s")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(stopping.elapsed() < Duration::from_secs(10));
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(serde_json::from_str(&line).unwrap_or(Value::Null));
    }
    let order = |msg: &str| -> Vec<String> {
        log.iter()
            .filter(|v| v["msg"] == msg && v["group"] != "root")
            .map(|v| {
                format!(
                    "{}.{}",
                    v["group"].as_str().unwrap_or(""),
                    v["actor"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let started = order("actor started");
    let stopped = order("actor stopped for good");
    assert_eq!(
        started,
        [
            "one.lease",
            "one.scanner",
            "one.confirmer",
            "one.sweeper",
            "webhooks.dispatcher-0",
            "webhooks.dispatcher-1",
            "webhooks.janitor"
        ]
    );
    let mut reversed = started.clone();
    reversed.reverse();
    assert_eq!(stopped, reversed);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_chain_meltdown_fails_only_that_chain_and_the_root_retries_it() {
    let b = Anvil::start(None).await.expect("anvil");
    let dead = format!(
        "http://127.0.0.1:{}",
        ctrip::devnet::free_port().expect("port")
    );
    let app = spawn_app_with(|s| {
        tree_settings(s, &dead, &b.url());
        s.supervision.stall_timeout = std::time::Duration::from_millis(800);
        s.supervision.chain_max_restarts = 1;
        s.supervision.chain_retry_min = std::time::Duration::from_millis(500);
    })
    .await;
    let series = r#"ctrip_supervisor_meltdowns_total{actor="chain",chain="alpha"}"#;
    eventually(30, "alpha to melt down", || async {
        (metric(&app.metrics_text().await, series).unwrap_or(0.0) >= 1.0).then_some(())
    })
    .await;
    // The root retries the chain: its scanner gets new incarnations.
    let scanner = app
        .state
        .registry
        .get("alpha", "scanner")
        .expect("registered");
    let before = scanner.incarnation();
    eventually(30, "the root to restart alpha", || async {
        (scanner.incarnation() > before).then_some(())
    })
    .await;
    let (code, d) = app.health_detail().await;
    assert_eq!(code, 200);
    assert_eq!(d["status"], "warn");
    for actor in ["scanner", "confirmer", "sweeper"] {
        assert_eq!(
            check(&d, &format!("beta.{actor}:heartbeat"))["status"],
            "pass",
            "{d}"
        );
        assert_eq!(
            app.state
                .registry
                .get("beta", actor)
                .expect("registered")
                .incarnation(),
            1
        );
    }
    let text = app.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            r#"ctrip_supervisor_meltdowns_total{actor="chain",chain="beta"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"ctrip_supervisor_meltdowns_total{actor="root",chain=""}"#
        ),
        Some(0.0)
    );
    let live = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("sent");
    assert_eq!(live.status(), 200);
    // The API is unaffected.
    assert_eq!(app.get("/v1/chains").await.status(), 200);
}

#[tokio::test]
async fn workers_can_be_driven_one_tick_at_a_time() {
    use ctrip::chain::metrics::ChainMetrics;
    use ctrip::chain::{confirmer::Confirmer, scanner::Scanner, ChainRpc, ChainStatusRegistry};
    use ctrip::worker::Work;

    let a = Anvil::start(None).await.expect("anvil");
    let app = crate::helpers::spawn_app().await;
    let chain = test_chain("devchain", 31337, &a.url());
    let status = ChainStatusRegistry::default();
    let metrics = ChainMetrics::new(&prometheus::Registry::new(), &["devchain"]).expect("metrics");
    let rpc = ChainRpc::new(
        &chain,
        Duration::from_secs(5),
        status.clone(),
        metrics.clone(),
    )
    .expect("rpc client");
    let pm = app.metrics.payments.clone();
    let log = app.state.log.clone();
    let mut scanner = Scanner::new(
        chain.clone(),
        rpc.clone(),
        app.store.clone(),
        status.clone(),
        metrics.clone(),
        pm.clone(),
        log.clone(),
        86400,
    );
    scanner.tick_once().await.expect("tick");
    assert_eq!(status.get("devchain").and_then(|s| s.scanned_head), Some(0));
    let client = reqwest::Client::new();
    client
        .post(a.url())
        .json(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"anvil_mine","params":["0x5"]}))
        .send()
        .await
        .expect("mine");
    scanner.tick_once().await.expect("tick");
    assert_eq!(status.get("devchain").and_then(|s| s.scanned_head), Some(5));
    assert_eq!(
        metrics
            .last_scanned_block
            .with_label_values(&["devchain"])
            .get(),
        5
    );

    app.create_payment("1").await;
    app.create_payment("2").await;
    let mut confirmer = Confirmer::new(
        "devchain",
        rpc,
        app.store.clone(),
        metrics.clone(),
        pm,
        log,
        Duration::from_secs(1),
    );
    confirmer.tick_once().await.expect("tick");
    assert_eq!(
        metrics
            .pending_payments
            .with_label_values(&["devchain"])
            .get(),
        2
    );
}
