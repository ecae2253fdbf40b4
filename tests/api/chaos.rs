//! A model-based chaos test of the money path, on real anvil and real PostgreSQL, against
//! the real `ctrip serve` process with its actor tree.
//!
//! A seeded random sequence of steps creates native and token payments; pays them exactly,
//! partly, over, late, after confirmation and after cancel; cancels and expires them;
//! mines; reorganises the chain (depth 1 to confirmations + 2, with and without
//! re-including the dropped transactions); kills, heals and lags the two RPC endpoints; and
//! restarts the gateway by SIGTERM and by kill -9. A second run does the same with three
//! replicas on one database, where the faults (SIGTERM, kill -9, and SIGSTOP past the
//! lease then SIGCONT) mostly hit the chain's leader, so the chain changes hands while
//! blocks are reorganised and endpoints fail. At the end, with everything healed, the
//! invariants are computed from anvil's canonical chain and must hold:
//! - every payment's received amount is the sum of its canonical transfers;
//! - every recorded, not-removed transfer is in a canonical block, and no payment is
//!   confirmed on funds that are not canonical (a confirmed payment whose funds a deep reorg
//!   took away must say so: exception `underpaid`);
//! - every payment's events match its history, in sequence order, none missing, and the
//!   webhook receiver got every one of them, each payment's in sequence order.
//!
//! `CTRIP_CHAOS_SEED` picks the seed (a fixed one by default, so CI is reproducible) and
//! `CTRIP_CHAOS_STEPS` the number of steps (200 by default).

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use ctrip::devnet::{Anvil, DevChain, ANVIL_PAYER};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::helpers::{TKN, USDC};
use crate::webhooks::Receiver;

const CONFIRMATIONS: u64 = 2;
const DEFAULT_SEED: u64 = 20_261_130;

/// An RPC endpoint in front of anvil that can be killed (connections refused), healed, or
/// made to lag: it then reports a head `lag` blocks behind and has no later blocks.
struct ChaosEndpoint {
    port: u16,
    target: String,
    lag: Arc<AtomicU64>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl ChaosEndpoint {
    async fn start(target: String) -> Self {
        let port = ctrip::devnet::free_port().expect("port");
        let mut e = Self {
            port,
            target,
            lag: Arc::default(),
            server: None,
        };
        e.heal().await;
        e
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }

    async fn heal(&mut self) {
        use warp::Filter;
        if self.server.is_some() {
            return;
        }
        let (client, target, lag) = (
            reqwest::Client::new(),
            self.target.clone(),
            self.lag.clone(),
        );
        let route = warp::post().and(warp::body::json()).then(move |req: Value| {
            let (client, target, lag) = (client.clone(), target.clone(), lag.clone());
            async move {
                let forward = |req: Value| {
                    let (client, target) = (client.clone(), target.clone());
                    async move {
                        match client.post(&target).json(&req).send().await {
                            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
                            Err(_) => Value::Null,
                        }
                    }
                };
                let lag = lag.load(Ordering::SeqCst);
                if lag == 0 {
                    return warp::reply::json(&forward(req).await);
                }
                let head = forward(json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}))
                    .await["result"]
                    .as_str()
                    .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
                    .unwrap_or(0)
                    .saturating_sub(lag);
                let id = req["id"].clone();
                match req["method"].as_str() {
                    Some("eth_blockNumber") => {
                        warp::reply::json(&json!({"jsonrpc": "2.0", "id": id, "result": format!("0x{head:x}")}))
                    }
                    Some("eth_getBlockByNumber") => {
                        let n = req["params"][0]
                            .as_str()
                            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
                            .unwrap_or(u64::MAX);
                        if n > head {
                            warp::reply::json(&json!({"jsonrpc": "2.0", "id": id, "result": null}))
                        } else {
                            warp::reply::json(&forward(req).await)
                        }
                    }
                    _ => warp::reply::json(&forward(req).await),
                }
            }
        });
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::task::yield_now().await,
            }
        };
        self.server = Some(tokio::spawn(warp::serve(route).incoming(listener).run()));
    }

    fn set_lag(&self, lag: u64) {
        self.lag.store(lag, Ordering::SeqCst);
    }
}

/// The gateway under test, a real `ctrip serve` process.
/// `ctrip serve` as a real child process.
pub(crate) struct Gateway {
    pub config: std::path::PathBuf,
    pub db: String,
    pub child: Option<Child>,
    pub base: String,
    /// Extra environment for the next start.
    pub env: Vec<(String, String)>,
    /// Every log line the process wrote to stdout, across restarts.
    pub lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gateway {
    pub async fn start(&mut self) {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut c = Command::new(env!("CARGO_BIN_EXE_ctrip"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("CTRIP_ENV")
            .env("CTRIP__DATABASE__URL", &self.db)
            .env("CTRIP__ADMIN__TOKEN", crate::helpers::ADMIN_TOKEN)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // A watch-only gateway (one given a signer's socket) gets no mnemonic at all.
        if !self.env.iter().any(|(k, _)| k == "CTRIP__SIGNER__SOCKET") {
            c.env("CTRIP__WALLET__MNEMONIC", crate::helpers::TEST_MNEMONIC);
        }
        c.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = c.spawn().expect("ctrip serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let kept = self.lines.clone();
        let port = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                kept.lock().expect("lines").push(line);
                if v["msg"] == "serving" {
                    return v["port"].as_u64();
                }
            }
            None
        })
        .await
        .expect("serving in time")
        .expect("port");
        let kept = self.lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().expect("lines").push(line);
            }
        });
        self.base = format!("http://127.0.0.1:{port}");
        self.child = Some(child);
    }

    /// Whether any log line so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.contains(text))
    }

    pub async fn stop(&mut self, sigterm: bool) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if sigterm {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: signals the child this struct spawned.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// One payment as the test knows it.
#[derive(Debug, Clone)]
struct Paid {
    id: String,
    address: Address,
    token: Option<Address>,
    amount: U256,
}

/// A transfer the test sent: which payment's address, which asset, how much.
#[derive(Debug, Clone)]
struct Sent {
    tx: String,
    payment: usize,
    amount: U256,
}

struct Chaos {
    rng: StdRng,
    anvil: DevChain,
    /// The replicas, all on one database; one of them leads the chain at a time.
    gateways: Vec<Gateway>,
    /// Round-robin over the replicas for API calls.
    next: std::sync::atomic::AtomicUsize,
    endpoints: Vec<ChaosEndpoint>,
    client: reqwest::Client,
    api_key: String,
    payments: Vec<Paid>,
    sent: Vec<Sent>,
    /// Blocks at or below this are never reorganised (the token deployments).
    floor: u64,
    /// Where confirmed funds are swept, when sweeping is on.
    treasury: Option<Address>,
    log: Vec<String>,
}

fn hex_u64(v: &Value) -> u64 {
    v.as_str()
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

impl Chaos {
    fn pick<T: Clone>(&mut self, v: &[T]) -> Option<T> {
        (!v.is_empty()).then(|| v[self.rng.random_range(0..v.len())].clone())
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.gateways.len();
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.gateways[i].base))
            .bearer_auth(&self.api_key)
            .timeout(Duration::from_secs(20));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn create(&mut self) {
        let token = self.rng.random_bool(0.4);
        // k thousandths of a coin, in an asset of 18 decimals.
        let k = self.rng.random_range(1u64..=1000);
        let units = U256::from(k) * U256::from(10u64).pow(U256::from(15));
        let amount = format!("{}.{:03}", k / 1000, k % 1000);
        let asset = if token { "TKN" } else { "native" };
        let body = json!({"chain": "devchain", "asset": asset, "amount": amount, "confirmations": CONFIRMATIONS});
        let Some((201, p)) = self
            .api(reqwest::Method::POST, "/v1/payments", Some(body))
            .await
        else {
            panic!("payment creation failed");
        };
        self.payments.push(Paid {
            id: p["id"].as_str().expect("id").to_string(),
            address: p["address"]
                .as_str()
                .expect("address")
                .parse()
                .expect("address"),
            token: token.then(|| TKN.parse().expect("token")),
            amount: units,
        });
        self.log
            .push(format!("create {} token={token}", self.payments.len() - 1));
    }

    async fn pay(&mut self, kind: &str) {
        let Some(i) = self.pick(&(0..self.payments.len()).collect::<Vec<_>>()) else {
            return;
        };
        let p = self.payments[i].clone();
        let amount = match kind {
            "exact" => p.amount,
            "partial" => p.amount / U256::from(3u64) + U256::from(1u64),
            _ => p.amount * U256::from(2u64),
        };
        let r = match p.token {
            None => self.anvil.pay_native(ANVIL_PAYER, p.address, amount).await,
            Some(t) => {
                self.anvil
                    .pay_token(t, ANVIL_PAYER, p.address, amount)
                    .await
            }
        };
        if let Ok(receipt) = r {
            let tx = receipt["transactionHash"]
                .as_str()
                .unwrap_or("")
                .to_string();
            self.sent.push(Sent {
                tx,
                payment: i,
                amount,
            });
            self.log.push(format!("pay {kind} {i}"));
        }
    }

    async fn cancel(&mut self) {
        let Some(i) = self.pick(&(0..self.payments.len()).collect::<Vec<_>>()) else {
            return;
        };
        let id = self.payments[i].id.clone();
        let r = self
            .api(
                reqwest::Method::POST,
                &format!("/v1/payments/{id}/cancel"),
                None,
            )
            .await;
        let status = r.map(|(s, _)| s).unwrap_or(0);
        assert!(matches!(status, 0 | 200 | 409), "cancel answered {status}");
        self.log.push(format!("cancel {i} -> {status}"));
    }

    async fn expire(&mut self) {
        let Some(i) = self.pick(&(0..self.payments.len()).collect::<Vec<_>>()) else {
            return;
        };
        let (c, conn) = tokio_postgres::connect(&self.gateways[0].db, tokio_postgres::NoTls)
            .await
            .expect("db");
        tokio::spawn(conn);
        let id: uuid::Uuid = self.payments[i].id.parse().expect("uuid");
        c.execute(
            "UPDATE payments SET expires_at = now() - interval '1 second' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("expire");
        self.log.push(format!("expire {i}"));
    }

    async fn reorg(&mut self) {
        let head = self.anvil.head().await.expect("head");
        let depth = self.rng.random_range(1..=CONFIRMATIONS + 2);
        if head.saturating_sub(depth) <= self.floor {
            return;
        }
        let reinclude = self.rng.random_bool(0.5);
        let mut txs = Vec::new();
        if reinclude {
            for n in head - depth + 1..=head {
                let b = self
                    .anvil
                    .rpc("eth_getBlockByNumber", json!([format!("0x{n:x}"), false]))
                    .await
                    .expect("block");
                for h in b["transactions"].as_array().cloned().unwrap_or_default() {
                    let raw = self
                        .anvil
                        .rpc("eth_getRawTransactionByHash", json!([h]))
                        .await
                        .expect("raw");
                    let offset = self.rng.random_range(0..depth);
                    txs.push(json!([raw, offset]));
                }
            }
            // Nonces must stay in order: a later transaction never lands in an earlier block.
            let mut last = 0;
            for t in &mut txs {
                let o = t[1].as_u64().unwrap_or(0).max(last);
                t[1] = json!(o);
                last = o;
            }
        }
        let r = self.anvil.rpc("anvil_reorg", json!([depth, txs])).await;
        if r.is_err() {
            self.anvil
                .rpc("anvil_reorg", json!([depth, []]))
                .await
                .expect("reorg");
        }
        self.log
            .push(format!("reorg depth {depth} reinclude={reinclude}"));
    }

    async fn endpoint(&mut self) {
        let i = self.rng.random_range(0..self.endpoints.len());
        match self.rng.random_range(0..4) {
            0 => {
                self.endpoints[i].kill();
                self.log.push(format!("kill endpoint {i}"));
            }
            1 => {
                let lag = self.rng.random_range(1..=6);
                self.endpoints[i].set_lag(lag);
                self.log.push(format!("lag endpoint {i} by {lag}"));
            }
            _ => {
                self.endpoints[i].set_lag(0);
                self.endpoints[i].heal().await;
                self.log.push(format!("heal endpoint {i}"));
            }
        }
    }

    /// Restarts a replica by SIGTERM or kill -9; with several replicas, also pauses one
    /// (SIGSTOP) until another has taken the chain over, then resumes it. The victim is
    /// the chain's leader more often than not: that is where a fault can do harm.
    async fn restart(&mut self) {
        let n = self.gateways.len();
        let leader = self.leader().await;
        let victim = match leader {
            Some(l) if self.rng.random_bool(0.7) => l,
            _ => self.rng.random_range(0..n),
        };
        let fault = if n > 1 {
            self.rng.random_range(0..3)
        } else {
            self.rng.random_range(0..2)
        };
        match fault {
            0 | 1 => {
                let sigterm = fault == 0;
                self.gateways[victim].stop(sigterm).await;
                self.gateways[victim].start().await;
                self.log
                    .push(format!("restart replica {victim} sigterm={sigterm}"));
            }
            _ => {
                let pid = self.gateways[victim]
                    .child
                    .as_ref()
                    .and_then(|c| c.id())
                    .and_then(|p| i32::try_from(p).ok())
                    .expect("pid");
                // SAFETY: signals a child this test spawned.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                if leader == Some(victim) {
                    // Paused past its lease: wait for another replica's term.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while self.leader().await == Some(victim) && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGCONT) };
                self.log.push(format!(
                    "pause replica {victim} (leader: {})",
                    leader == Some(victim)
                ));
            }
        }
    }

    /// Sweeping across the faults: no sender nonce is mined twice, and the treasury holds
    /// exactly what the confirmed sweeps sent it (a sweep recorded twice, or one the chain
    /// does not have, would break the sum).
    async fn check_sweeps(
        &self,
        c: &tokio_postgres::Client,
        treasury: Address,
    ) -> Result<(), String> {
        let q =
            |sql: &'static str| async move { c.query(sql, &[]).await.map_err(|e| e.to_string()) };
        let nonces = q("SELECT sender, nonce FROM sweep_attempts \
             WHERE state IN ('mined', 'confirmed') GROUP BY sender, nonce HAVING count(*) > 1")
        .await?;
        if let Some(r) = nonces.first() {
            return Err(format!(
                "nonce {} of {} mined twice",
                r.get::<_, i64>(1),
                r.get::<_, String>(0)
            ));
        }
        let rows = q(
            "SELECT a.value_raw FROM sweep_attempts a JOIN sweeps s ON s.id = a.sweep_id \
             WHERE s.state = 'confirmed' AND a.state = 'confirmed' AND a.purpose = 'sweep'",
        )
        .await?;
        if rows.is_empty() {
            return Err("no sweep confirmed yet".into());
        }
        let sent: U256 = rows.iter().map(|r| r.get::<_, U256>(0)).sum();
        let balance = self
            .anvil
            .rpc(
                "eth_getBalance",
                json!([format!("{treasury:#x}"), "latest"]),
            )
            .await
            .map_err(|e| e.to_string())?;
        let balance = U256::from_str_radix(
            balance.as_str().unwrap_or("0x0").trim_start_matches("0x"),
            16,
        )
        .map_err(|e| e.to_string())?;
        if balance != sent {
            return Err(format!(
                "treasury holds {balance}, confirmed sweeps sent {sent}"
            ));
        }
        Ok(())
    }

    /// The replica holding the chain's unexpired lease.
    async fn leader(&self) -> Option<usize> {
        let (c, conn) = tokio_postgres::connect(&self.gateways[0].db, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(conn);
        let holder: String = c
            .query_opt(
                "SELECT holder FROM leases WHERE name = 'chain:devchain' AND expires_at > now()",
                &[],
            )
            .await
            .ok()??
            .get(0);
        holder.strip_prefix("replica-")?.parse().ok()
    }

    /// Lets the gateway catch up with the head (a poll with a deadline, not a sleep).
    async fn settle(&mut self) {
        let head = self.anvil.head().await.expect("head");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cursor().await.is_some_and(|c| c > head) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.log.push("settle".into());
    }

    async fn cursor(&self) -> Option<u64> {
        let (c, conn) = tokio_postgres::connect(&self.gateways[0].db, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(conn);
        let row = c
            .query_opt(
                "SELECT next_block FROM chain_cursors WHERE chain = 'devchain'",
                &[],
            )
            .await
            .ok()??;
        u64::try_from(row.get::<_, i64>(0)).ok()
    }

    async fn step(&mut self) {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..=14 => self.create().await,
            15..=24 => self.pay("exact").await,
            25..=31 => self.pay("partial").await,
            32..=36 => self.pay("over").await,
            37..=41 => self.cancel().await,
            42..=45 => self.expire().await,
            46..=60 => {
                let n = self.rng.random_range(1..=3);
                self.anvil.mine(n).await.expect("mine");
                self.log.push(format!("mine {n}"));
            }
            61..=72 => self.reorg().await,
            73..=84 => self.endpoint().await,
            // With replicas, faults come twice as often: they are what the run is about.
            85..=89 => self.restart().await,
            90..=94 if self.gateways.len() > 1 => self.restart().await,
            _ => self.settle().await,
        }
    }

    /// The invariants, computed from anvil's canonical chain and the gateway's database.
    /// `Err` names the first that does not hold (yet).
    async fn check(&self, rx: &Receiver) -> Result<(), String> {
        let (c, conn) = tokio_postgres::connect(&self.gateways[0].db, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        // Canonical block hashes, fetched once.
        let mut canonical: HashMap<u64, String> = HashMap::new();
        let head = self.anvil.head().await.map_err(|e| e.to_string())?;
        for n in 0..=head {
            let b = self
                .anvil
                .rpc("eth_getBlockByNumber", json!([format!("0x{n:x}"), false]))
                .await
                .map_err(|e| e.to_string())?;
            canonical.insert(n, b["hash"].as_str().unwrap_or("").to_string());
        }
        // Every payment's canonical sum, from the receipts of what the test sent.
        let mut sums: Vec<U256> = vec![U256::ZERO; self.payments.len()];
        for s in &self.sent {
            let r = self
                .anvil
                .rpc("eth_getTransactionReceipt", json!([s.tx]))
                .await
                .map_err(|e| e.to_string())?;
            if r.is_null() || r["status"] != "0x1" {
                continue;
            }
            let n = hex_u64(&r["blockNumber"]);
            if canonical.get(&n).map(String::as_str) == r["blockHash"].as_str() {
                sums[s.payment] += s.amount;
            }
        }
        let cursor = self.cursor().await.unwrap_or(0);
        if cursor <= head {
            return Err(format!("scanner at {cursor}, head {head}"));
        }
        for (i, p) in self.payments.iter().enumerate() {
            let id: uuid::Uuid = p.id.parse().map_err(|_| "uuid")?;
            let row = c
                .query_one(
                    "SELECT amount_received_raw, status, exception FROM payments WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(|e| e.to_string())?;
            let received: U256 = row.get(0);
            let status: String = row.get(1);
            let exception: Option<String> = row.get(2);
            if received != sums[i] {
                return Err(format!(
                    "payment {i}: received {received}, canonical transfers sum to {}",
                    sums[i]
                ));
            }
            if status == "confirmed"
                && exception.as_deref() != Some("underpaid")
                && sums[i] < p.amount
            {
                return Err(format!(
                    "payment {i} is confirmed on funds that are not canonical"
                ));
            }
            if status == "processing" {
                return Err(format!("payment {i} still processing"));
            }
            // Events match history, in sequence order, none missing.
            let history: Vec<(String, String)> = c
                .query(
                    "SELECT to_status, reason FROM payment_history WHERE payment_id = $1 ORDER BY id",
                    &[&id],
                )
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            // The copy of the history each payment row carries matches the record.
            let copy: Vec<(String, String)> = c
                .query(
                    "SELECT e->>'to', e->>'reason' FROM payments p, \
                     jsonb_array_elements(p.history) e WHERE p.id = $1",
                    &[&id],
                )
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            if copy != history {
                return Err(format!(
                    "payment {i}: its row's history {copy:?} differs from the record {history:?}"
                ));
            }
            let all_events: Vec<(String, i32, String)> = c
                .query(
                    "SELECT type, sequence, payload->'data'->>'status' FROM events WHERE payment_id = $1 ORDER BY sequence",
                    &[&id],
                )
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            // Sequence numbers count from 1 with no gap, whatever the event.
            for (k, (ty, seq, _)) in all_events.iter().enumerate() {
                if *seq != k as i32 + 1 {
                    return Err(format!(
                        "payment {i}: event {ty} has sequence {seq} at {}",
                        k + 1
                    ));
                }
            }
            // Each settlement is announced once, naming a confirmed sweep of this payment's
            // funds (late funds after a sweep are swept, and announced, again). It is not a
            // status transition, so it has no history row.
            let announced: Vec<String> = c
                .query(
                    "SELECT payload->'data'->'settlement'->>'tx_hash' FROM events \
                     WHERE payment_id = $1 AND type = 'payment.swept' ORDER BY sequence",
                    &[&id],
                )
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
                .collect();
            let confirmed: std::collections::HashSet<String> = c
                .query(
                    "SELECT s.tx_hash FROM sweeps s JOIN sweep_payments sp ON sp.sweep_id = s.id \
                     WHERE sp.payment_id = $1 AND s.state = 'confirmed'",
                    &[&id],
                )
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .filter_map(|r| r.get::<_, Option<String>>(0))
                .collect();
            let distinct: std::collections::HashSet<&String> = announced.iter().collect();
            if distinct.len() != announced.len() {
                return Err(format!(
                    "payment {i}: a sweep announced twice: {announced:?}"
                ));
            }
            if let Some(tx) = announced.iter().find(|t| !confirmed.contains(*t)) {
                return Err(format!(
                    "payment {i}: payment.swept names {tx}, not a confirmed sweep of it"
                ));
            }
            let events: Vec<&(String, i32, String)> = all_events
                .iter()
                .filter(|e| e.0 != "payment.swept")
                .collect();
            if history.len() != events.len() + 1 {
                return Err(format!(
                    "payment {i}: {} history rows for {} events",
                    history.len(),
                    events.len()
                ));
            }
            for ((to, reason), (ty, seq, data_status)) in history.iter().skip(1).zip(events) {
                let expected = match reason.as_str() {
                    "reorg" => "payment.reorged".to_string(),
                    "late_funds" => "payment.late_funds".to_string(),
                    _ => format!("payment.{to}"),
                };
                if *ty != expected || data_status != to {
                    return Err(format!(
                        "payment {i}: event {seq} {ty} ({data_status}) does not match history {to}/{reason}"
                    ));
                }
            }
        }
        // Every recorded transfer that is not removed is canonical.
        let rows = c
            .query(
                "SELECT block_number, block_hash FROM payment_transfers WHERE NOT removed",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        for r in rows {
            let n = u64::try_from(r.get::<_, i64>(0)).unwrap_or(0);
            let h: String = r.get(1);
            if canonical.get(&n) != Some(&h) {
                return Err(format!("a counted transfer sits in orphaned block {n}"));
            }
        }
        // The receiver got every event, each payment's in sequence order.
        let total: i64 = c
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        let mut first_seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut ids = std::collections::HashSet::new();
        for got in rx.received() {
            let v: Value = serde_json::from_slice(&got.body).unwrap_or(Value::Null);
            let eid = v["id"].as_str().unwrap_or("").to_string();
            if ids.insert(eid) {
                first_seen
                    .entry(v["data"]["id"].as_str().unwrap_or("").to_string())
                    .or_default()
                    .push(v["sequence"].as_i64().unwrap_or(0));
            }
        }
        if ids.len() as i64 != total {
            return Err(format!("receiver got {} of {total} events", ids.len()));
        }
        for (p, seqs) in &first_seen {
            let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
            if *seqs != expected {
                return Err(format!("payment {p}: events arrived as {seqs:?}"));
            }
        }
        if let Some(treasury) = self.treasury {
            self.check_sweeps(&c, treasury).await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_money_path_survives_reorgs_endpoint_faults_and_restarts() {
    run(1, 200).await;
}

/// The same model with three replicas on one database: restarts and pauses hit the
/// chain's leader, so the chain changes hands under reorgs and endpoint faults, and the
/// invariants (no transfer or event twice, none missing) must still hold.
#[tokio::test]
async fn the_money_path_holds_across_replica_faults() {
    run(3, 200).await;
}

async fn run(replicas: usize, default_steps: usize) {
    // The replicated run also sweeps native funds to a fresh treasury.
    let treasury = (replicas > 1).then(|| Address::from(rand::random::<[u8; 20]>()));
    let seed = std::env::var("CTRIP_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let steps: usize = std::env::var("CTRIP_CHAOS_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_steps);
    eprintln!(
        "chaos: {replicas} replica(s), seed {seed}, {steps} steps (CTRIP_CHAOS_SEED={seed} reproduces the sequence)"
    );
    let started = Instant::now();

    let anvil = Anvil::start(None).await.expect("anvil");
    let dev = DevChain::new(anvil.url());
    assert_eq!(
        dev.deploy_demo_token().await.expect("deploy"),
        TKN.parse::<Address>().expect("addr")
    );
    assert_eq!(
        dev.deploy_demo_token().await.expect("deploy"),
        USDC.parse::<Address>().expect("addr")
    );
    let payer: Address = ANVIL_PAYER.parse().expect("payer");
    dev.mint(
        TKN.parse().expect("tkn"),
        payer,
        U256::from(10u64).pow(U256::from(40)),
    )
    .await
    .expect("mint");
    dev.mine(CONFIRMATIONS + 3).await.expect("mine");
    let floor = dev.head().await.expect("head");
    let endpoints = vec![
        ChaosEndpoint::start(anvil.url()).await,
        ChaosEndpoint::start(anvil.url()).await,
    ];

    let db = crate::helpers::create_database(&crate::helpers::maintenance_url()).await;
    let dir = std::env::temp_dir().join(format!("ctrip-chaos-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
[telemetry]
access_log_level = "off"
[webhooks]
workers = 2
request_timeout_ms = 2000
allow_private_targets = true
poll_interval_ms = 50
retry_schedule_ms = [100]
max_attempts = 1000
[supervision]
stall_timeout_ms = 15000
restart_backoff_min_ms = 100
restart_backoff_max_ms = 1000
chain_retry_min_ms = 500
chain_retry_max_ms = 1000
rpc_timeout_ms = 2000
tick_retry_min_ms = 50
tick_retry_max_ms = 500
lease_ttl_ms = 2000
lease_renew_ms = 300
lease_poll_ms = 100
[[chains]]
name = "devchain"
chain_id = 31337
rpc_urls = ["{}", "{}"]
confirmations = {CONFIRMATIONS}
block_time_ms = 250
start_block = 0
max_head_lag_blocks = 3
{}
[[chains.tokens]]
symbol = "TKN"
address = "{TKN}"
decimals = 18
"#,
            endpoints[0].url(),
            endpoints[1].url(),
            treasury
                .map(|t| format!("treasury = \"{t:#x}\""))
                .unwrap_or_default()
        ),
    )
    .expect("config");
    let mut gateways: Vec<Gateway> = (0..replicas)
        .map(|i| Gateway {
            config: config.clone(),
            db: db.clone(),
            child: None,
            base: String::new(),
            env: vec![(
                "CTRIP__SUPERVISION__REPLICA_ID".into(),
                format!("replica-{i}"),
            )],
            lines: Default::default(),
        })
        .collect();
    for g in &mut gateways {
        g.start().await;
    }
    let store = ctrip::store::Store::new(&{
        let mut s = crate::helpers::base_settings(&db);
        s.database.pool_size = 2;
        s.database
    })
    .expect("store");
    // Account 0 holds anvil's funded accounts under the test mnemonic: a placeholder takes it.
    ctrip::ops::create_merchant(&store, "placeholder")
        .await
        .expect("merchant");
    let merchant = ctrip::ops::create_merchant(&store, "chaos")
        .await
        .expect("merchant");
    let rx = Receiver::start(Duration::ZERO).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/webhook-endpoints", gateways[0].base))
        .bearer_auth(&merchant.api_key)
        .json(&json!({"url": rx.url}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 201);

    let mut chaos = Chaos {
        rng: StdRng::seed_from_u64(seed),
        anvil: dev,
        gateways,
        next: Default::default(),
        endpoints,
        client,
        api_key: merchant.api_key.clone(),
        payments: Vec::new(),
        sent: Vec::new(),
        floor,
        treasury,
        log: Vec::new(),
    };
    for _ in 0..3 {
        chaos.create().await;
    }
    for _ in 0..steps {
        chaos.step().await;
    }

    // Heal everything; let every payment reach its depth; the invariants must then hold.
    for e in &mut chaos.endpoints {
        e.set_lag(0);
        e.heal().await;
    }
    chaos.anvil.mine(CONFIRMATIONS + 2).await.expect("mine");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let Err(last) = chaos.check(&rx).await else {
            break;
        };
        assert!(
            Instant::now() < deadline,
            "seed {seed}: invariant never held: {last}\nsteps: {:?}",
            chaos.log
        );
        if last.contains("sweep") || last.contains("treasury") {
            // A sweep sent after the last blocks were mined needs blocks on top of it.
            chaos.anvil.mine(1).await.expect("mine");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats: BTreeMap<&str, usize> = chaos.log.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l.split(' ').next().unwrap_or("")).or_default() += 1;
        m
    });
    eprintln!(
        "chaos: {replicas} replica(s), seed {seed} passed in {:.1} s: {} payments, {} transfers, steps {stats:?}",
        started.elapsed().as_secs_f64(),
        chaos.payments.len(),
        chaos.sent.len()
    );
    if chaos.treasury.is_some() {
        let (c, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
            .await
            .expect("db");
        tokio::spawn(conn);
        let swept: i64 = c
            .query_one("SELECT count(*) FROM sweeps WHERE state = 'confirmed'", &[])
            .await
            .expect("count")
            .get(0);
        eprintln!("chaos: {swept} sweeps confirmed across the replica faults");
    }
    for g in &mut chaos.gateways {
        g.stop(true).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(anvil);
}
