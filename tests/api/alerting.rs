//! The project's own alert rules, proven end to end: the real Prometheus server scrapes a
//! running gateway and evaluates `config/prometheus/alerts.yml` and `slo.yml`, the real
//! Alertmanager routes what fires to an HTTP receiver. A blackholed RPC endpoint stalls a
//! scanner (the alert fires, and resolves once healed); a stopped PostgreSQL server makes
//! the gateway unready (that alert fires). Every Grafana dashboard query is evaluated by
//! the same Prometheus and must not error.
//!
//! These take minutes: the rules' own thresholds and `for:` durations are what is tested.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctrip::devnet::Anvil;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::helpers::{eventually, spawn_app_on, test_chain, TestApp};
use crate::proxy::Proxy;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ctrip-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Prometheus, Alertmanager and a webhook receiver behind Alertmanager.
struct AlertStack {
    prometheus: String,
    notifications: Arc<Mutex<Vec<Value>>>,
    dir: PathBuf,
    _children: Vec<Child>,
}

impl Drop for AlertStack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl AlertStack {
    async fn start(gateway_port: u16) -> Self {
        use warp::Filter;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = scratch("alerts");
        let notifications: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = notifications.clone();
        let route = warp::post().and(warp::body::json()).map(move |v: Value| {
            sink.lock().expect("lock").push(v);
            warp::reply()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let rx_port = listener.local_addr().expect("addr").port();
        tokio::spawn(warp::serve(route).incoming(listener).run());

        let (am_port, prom_port) = (free_port(), free_port());
        std::fs::write(
            dir.join("alertmanager.yml"),
            format!(
                "route:\n  receiver: test\n  group_by: [alertname, chain, actor]\n  \
                 group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: test\n    webhook_configs:\n      \
                 - url: http://127.0.0.1:{rx_port}/alerts\n        send_resolved: true\n"
            ),
        )
        .expect("write");
        let rules = root.join("config/prometheus");
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n  - {}\n\
                 alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{am_port}\"]\n\
                 scrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: [\"127.0.0.1:{gateway_port}\"]\n",
                rules.join("alerts.yml").display(),
                rules.join("slo.yml").display(),
            ),
        )
        .expect("write");
        let am = Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("alertmanager starts (scripts/setup.sh installs prometheus-alertmanager)");
        let prom = Command::new("/usr/bin/prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            // Firing alerts are re-sent every second, not every minute.
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts (scripts/setup.sh installs prometheus)");
        let stack = Self {
            prometheus: format!("http://127.0.0.1:{prom_port}"),
            notifications,
            dir,
            _children: vec![am, prom],
        };
        // Ready when the gateway target is scraped and both rule files are loaded.
        eventually(
            60,
            "Prometheus scraping the gateway with the rules loaded",
            || async {
                let up = stack.query("up{job=\"gateway\"}").await.ok()?;
                let rules: Value = reqwest::get(format!("{}/api/v1/rules", stack.prometheus))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let groups = rules["data"]["groups"].as_array()?.len();
                (up["data"]["result"][0]["value"][1] == "1" && groups >= 2).then_some(())
            },
        )
        .await;
        stack
    }

    async fn query(&self, q: &str) -> Result<Value, String> {
        let url = url::Url::parse_with_params(
            &format!("{}/api/v1/query", self.prometheus),
            &[("query", q)],
        )
        .map_err(|e| e.to_string())?;
        let r = reqwest::get(url).await.map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if v["status"] == "success" {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    }

    /// Whether the receiver got a notification with `status` for an alert named `name`
    /// whose labels include `labels`.
    fn notified(&self, status: &str, name: &str, labels: &[(&str, &str)]) -> bool {
        self.notifications.lock().expect("lock").iter().any(|n| {
            n["alerts"].as_array().is_some_and(|alerts| {
                alerts.iter().any(|a| {
                    a["status"] == status
                        && a["labels"]["alertname"] == name
                        && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
                        && a["annotations"]["runbook_url"]
                            .as_str()
                            .is_some_and(|u| u.starts_with("docs/runbook.md#"))
                })
            })
        })
    }
}

/// A PostgreSQL server of this test's own (initdb in a scratch directory, a free port), so
/// that stopping it disturbs no other test.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl OwnPostgres {
    fn as_postgres(&self, program: &str) -> std::process::Command {
        let exe = self.bin.join(program);
        // The server refuses to run as root.
        if unsafe { libc::geteuid() } == 0 {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        }
    }

    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (scripts/setup.sh installs them)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("initdb");
        let dir = scratch("pg");
        let pg = Self {
            dir,
            port: free_port(),
            bin,
        };
        if unsafe { libc::geteuid() } == 0 {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&pg.dir)
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let data = pg.dir.join("data");
        let ok = pg
            .as_postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync"])
            .stdout(Stdio::null())
            .status()
            .expect("initdb");
        assert!(ok.success(), "initdb");
        let ok = pg
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pg.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                pg.port,
                pg.dir.display()
            ))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(ok.success(), "pg_ctl start");
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn stop(&self) {
        let _ = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn gateway_on(db: &str, customize: impl FnOnce(&mut ctrip::config::Settings)) -> TestApp {
    let url = crate::helpers::create_database(db).await;
    spawn_app_on(&url, customize).await
}

fn port_of(app: &TestApp) -> u16 {
    app.address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

#[tokio::test]
async fn a_stalled_scanner_fires_its_alert_through_alertmanager_and_resolves_once_healed() {
    let anvil = Anvil::start(None).await.expect("anvil");
    let proxy = Proxy::start(format!("127.0.0.1:{}", anvil.port()).parse().expect("addr")).await;
    let rpc = proxy.url();
    let app = gateway_on(&crate::helpers::maintenance_url(), |s| {
        let mut chain = test_chain("devchain", 31337, &rpc);
        chain.poll_interval = Some(Duration::from_millis(500));
        s.chains = vec![chain];
        s.supervision.enabled = true;
        s.webhooks.workers = 1;
    })
    .await;
    let stack = AlertStack::start(port_of(&app)).await;
    let stalled = [("chain", "devchain"), ("actor", "scanner")];

    proxy.set_blackhole(true);
    // No progress for over two minutes, held for two more: about four minutes.
    eventually(480, "CtripActorStalled firing at the receiver", || async {
        stack
            .notified("firing", "CtripActorStalled", &stalled)
            .then_some(())
    })
    .await;

    proxy.set_blackhole(false);
    eventually(
        180,
        "CtripActorStalled resolved at the receiver",
        || async {
            stack
                .notified("resolved", "CtripActorStalled", &stalled)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_stopped_database_fires_the_readiness_alert_and_every_dashboard_query_evaluates() {
    let pg = OwnPostgres::start();
    let app = gateway_on(&pg.url(), |s| {
        // Fail fast once the server is gone, well within Prometheus's scrape timeout.
        s.database.connect_timeout = Duration::from_millis(300);
        s.database.pool_wait_timeout = Duration::from_millis(300);
    })
    .await;
    let stack = AlertStack::start(port_of(&app)).await;

    // Every query of the shipped dashboard evaluates against the real Prometheus.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/grafana/ctrip.json"),
        )
        .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                exprs.push(e.to_string());
            }
        }
    }
    assert!(exprs.len() >= 14, "{exprs:?}");
    for e in &exprs {
        if let Err(err) = stack.query(e).await {
            panic!("dashboard query `{e}` fails: {err}");
        }
    }
    let ready = stack.query("ctrip_ready").await.expect("query");
    assert_eq!(ready["data"]["result"][0]["value"][1], "1", "{ready}");

    pg.stop();
    eventually(
        240,
        "CtripGatewayNotReady firing at the receiver",
        || async {
            stack
                .notified("firing", "CtripGatewayNotReady", &[("job", "gateway")])
                .then_some(())
        },
    )
    .await;
    // The gateway itself stays up and says why.
    let r = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 503);
}
