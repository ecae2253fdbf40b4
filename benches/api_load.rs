//! Load driver for `POST /v1/payments` and `GET /v1/payments/{id}` against a real gateway
//! (real HTTP over loopback, real PostgreSQL). Run with:
//!
//! ```text
//! scripts/bench.sh            # or: cargo bench --bench api_load
//! ```
//!
//! Environment: `CTRIP_TEST_DATABASE_URL` (server to create the bench database on),
//! `BENCH_CONCURRENCY` (default 32), `BENCH_SECONDS` per phase (default 10),
//! `BENCH_OTLP_ENDPOINT` (export spans there, e.g. to `tests/tools/otlp_receiver.py
//! --quiet`; unset: tracing off) to measure what tracing costs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use ctrip::app::Application;
use ctrip::config::{ChainSettings, RpcUrl, Secret, Settings, StartBlock};
use ctrip::telemetry::{build_logger, LogSink};

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

struct Phase {
    name: &'static str,
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
    /// CPU seconds PostgreSQL's processes and this process spent during the phase.
    cpu: (f64, f64),
}

/// CPU time (user + system, seconds) of the PostgreSQL server's processes on this machine
/// and of this process (the gateway and the load driver). The server runs beside the
/// bench on loopback, so the first is what the requests cost the database.
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let of = |dir: &std::path::Path| -> u64 {
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            return 0;
        };
        // Fields after the command's closing parenthesis start at the state (field 3);
        // utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        n(11) + n(12)
    };
    let mut postgres = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let p = e.path();
        let is_postgres = std::fs::read_to_string(p.join("comm"))
            .map(|c| c.trim() == "postgres")
            .unwrap_or(false);
        if is_postgres {
            postgres += of(&p);
        }
    }
    let me = of(std::path::Path::new("/proc/self"));
    (postgres as f64 / tick, me as f64 / tick)
}

impl Phase {
    fn report(&mut self) {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |p: f64| {
            if n == 0 {
                0.0
            } else {
                self.latencies_us[((n as f64 * p) as usize).min(n - 1)] as f64 / 1000.0
            }
        };
        println!(
            "{:<28} {:>8} ok {:>4} err  {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>7.2} ms",
            self.name,
            n,
            self.errors,
            n as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0),
        );
        let per = |s: f64| s * 1e6 / n.max(1) as f64;
        println!(
            "{:<28} CPU per request: PostgreSQL {:>6.0} us, gateway + load driver {:>6.0} us",
            "",
            per(self.cpu.0),
            per(self.cpu.1),
        );
    }
}

/// One keep-alive HTTP/1.1 connection of the load driver. It writes pre-built requests
/// and reads each response by its `Content-Length`, so the driver takes as little of the
/// shared cores as it can (a full client such as reqwest parses URLs and builds header
/// maps for every request, on the same two cores as the server it measures).
struct Conn {
    addr: std::net::SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Sends `req` and returns the status and body; `None` on any failure (the connection
    /// is then dropped and the next request opens a new one).
    async fn send(&mut self, req: &[u8]) -> Option<(u16, &[u8])> {
        let r = self.exchange(req).await;
        if r.is_none() {
            self.stream = None;
        }
        let (status, start, end) = r?;
        Some((status, &self.buf[start..end]))
    }

    async fn exchange(&mut self, req: &[u8]) -> Option<(u16, usize, usize)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await.ok()?;
            s.set_nodelay(true).ok()?;
            self.stream = Some(s);
        }
        let s = self.stream.as_mut()?;
        s.write_all(req).await.ok()?;
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(head_end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..head_end]).ok()?;
                let status: u16 = head.get(9..12)?.parse().ok()?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let start = head_end + 4;
                while self.buf.len() < start + len {
                    let n = s.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return Some((status, start, start + len));
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Runs `concurrency` workers, each with a connection of its own, calling `op` until
/// `seconds` elapse. `op` gets the connection and gives it back with its outcome.
async fn run_phase<F, Fut>(
    name: &'static str,
    addr: std::net::SocketAddr,
    concurrency: usize,
    seconds: u64,
    op: F,
) -> Phase
where
    F: Fn(Conn, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (Conn, bool)> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..concurrency {
        let op = op.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut i = 0u64;
            let mut conn = Conn::new(addr);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (c, ok) = op(conn, w, i).await;
                conn = c;
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut phase = Phase {
        name,
        latencies_us: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
        cpu: (0.0, 0.0),
    };
    for h in handles {
        let (lat, errors) = h.await.unwrap();
        phase.latencies_us.extend(lat);
        phase.errors += errors;
    }
    phase.elapsed = start.elapsed();
    let cpu_after = cpu_seconds();
    phase.cpu = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    phase
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 32);
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let maintenance = std::env::var("CTRIP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = ctrip::devnet::create_database(&maintenance, "ctrip_bench")
        .await
        .unwrap();

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut s = Settings::load_layers(&dir, None, None, false).unwrap();
    s.database.url = Secret::new(db);
    s.database.pool_size = env_or("BENCH_POOL_SIZE", 16);
    s.wallet.mnemonic = Secret::new("test test test test test test test test test test test junk");
    s.admin.token = Secret::new("bench-admin-token-0123456789");
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.telemetry.log_level = "warning".parse().unwrap();
    s.chains = vec![ChainSettings {
        name: "devchain".into(),
        chain_id: 31337,
        rpc_urls: vec![RpcUrl::parse("http://127.0.0.1:9").unwrap()],
        poll_interval: None,
        max_head_lag_blocks: 5,
        scan_batch_blocks: 500,
        native_symbol: "ETH".into(),
        confirmations: 3,
        block_time: std::time::Duration::from_millis(1000),
        start_block: StartBlock::Latest,
        treasury: None,
        tokens: vec![],
        sweep: Default::default(),
    }];
    if let Ok(endpoint) = std::env::var("BENCH_OTLP_ENDPOINT") {
        s.telemetry.otlp_endpoint = Some(endpoint.parse().unwrap());
    }
    let tracing_on = s.telemetry.otlp_endpoint.is_some();
    s.validate().unwrap();
    let (log, _guard) = build_logger(&s.telemetry, LogSink::Stdout);
    let app = Application::build(s, log, true).await.unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", app.port()).parse().unwrap();
    let store = app.state().store.clone();
    let metrics = app.metrics().clone();
    let tracing = app.tracing();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let merchant = ctrip::ops::create_merchant(&store, "bench").await.unwrap();
    let key = merchant.api_key.clone();

    println!(
        "cTrip API load: concurrency {concurrency}, {seconds} s per phase, tracing {}, {} cores",
        if tracing_on { "on (OTLP)" } else { "off" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let body = r#"{"chain":"devchain","asset":"native","amount":"0.25","order_id":"bench"}"#;
    let create_req: Arc<Vec<u8>> = Arc::new(
        format!(
            "POST /v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    );
    let ids = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let ids2 = ids.clone();
    let mut create = run_phase(
        "POST /v1/payments",
        addr,
        concurrency,
        seconds,
        move |mut conn, _, _| {
            let (req, ids) = (create_req.clone(), ids2.clone());
            async move {
                let ok = match conn.send(&req).await {
                    Some((201, body)) => {
                        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                        if let Some(id) = v["id"].as_str() {
                            ids.lock().unwrap().push(id.to_string());
                        }
                        true
                    }
                    _ => false,
                };
                (conn, ok)
            }
        },
    )
    .await;
    create.report();

    let ids: Arc<Vec<String>> = Arc::new(ids.lock().unwrap().clone());
    let key = Arc::new(key);
    let mut read = run_phase(
        "GET /v1/payments/{id}",
        addr,
        concurrency,
        seconds,
        move |mut conn, w, i| {
            let (ids, key) = (ids.clone(), key.clone());
            async move {
                let id = &ids[(w * 7919 + i as usize * 104_729) % ids.len()];
                let req = format!(
                    "GET /v1/payments/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n"
                );
                let ok = matches!(conn.send(req.as_bytes()).await, Some((200, _)));
                (conn, ok)
            }
        },
    )
    .await;
    read.report();
    if tracing_on {
        tracing.flush();
        let t = &metrics.trace;
        println!(
            "spans exported: {}   export batches ok {} / failed {}",
            t.spans.get(),
            t.exports.with_label_values(&["ok"]).get(),
            t.exports.with_label_values(&["error"]).get(),
        );
    }
}
