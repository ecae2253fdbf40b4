//! Three `ctrip serve` replicas on one database and two anvil chains: each chain has one
//! leader, the chains spread over the replicas; `kill -9`, SIGTERM and `SIGSTOP` of a leader hand its chain over, and no
//! payment is detected, announced or confirmed twice across the faults. The hand-over
//! times are printed (measured, never asserted: the lease timings are what bounds them).

use std::time::{Duration, Instant};

use ctrip::devnet::{Anvil, DevChain, ANVIL_PAYER};
use serde_json::{json, Value};

use crate::chaos::Gateway;
use crate::helpers::{create_database, eventually, maintenance_url, ADMIN_TOKEN};

const TTL_MS: u64 = 3000;
const RENEW_MS: u64 = 500;

/// `(holder, token)` of `chain`'s lease while it is unexpired.
async fn holder(c: &tokio_postgres::Client, chain: &str) -> Option<(String, i64)> {
    c.query_opt(
        "SELECT holder, token FROM leases WHERE name = $1 AND expires_at > now()",
        &[&format!("chain:{chain}")],
    )
    .await
    .ok()
    .flatten()
    .map(|r| (r.get(0), r.get(1)))
}

fn pid(g: &Gateway) -> i32 {
    g.child
        .as_ref()
        .and_then(|c| c.id())
        .and_then(|p| i32::try_from(p).ok())
        .expect("running")
}

/// Waits until `chain`'s lease has a holder with a token above `after`; returns it and
/// how long that took.
async fn next_term(
    c: &tokio_postgres::Client,
    chain: &str,
    after: i64,
    since: Instant,
) -> ((String, i64), Duration) {
    let term = eventually(60, "a new term", || async {
        holder(c, chain).await.filter(|(_, t)| *t > after)
    })
    .await;
    (term, since.elapsed())
}

#[tokio::test]
async fn three_replicas_hand_chains_over_on_kill_sigterm_and_sigstop() {
    let a = Anvil::start(None).await.expect("anvil");
    let b = Anvil::start(None).await.expect("anvil");
    let db = create_database(&maintenance_url()).await;
    let dir =
        std::env::temp_dir().join(format!("ctrip-failover-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("gateway.toml");
    let chain = |name: &str, id: u64, url: &str| {
        format!(
            "[[chains]]\nname = \"{name}\"\nchain_id = {id}\nrpc_urls = [\"{url}\"]\n\
             confirmations = 2\nblock_time_ms = 250\nstart_block = 0\n"
        )
    };
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[telemetry]\naccess_log_level = \"off\"\n\
             [webhooks]\nworkers = 1\nallow_private_targets = true\n\
             [supervision]\nlease_ttl_ms = {TTL_MS}\nlease_renew_ms = {RENEW_MS}\nlease_poll_ms = 100\n\
             rpc_timeout_ms = 2000\n{}{}",
            chain("alpha", 31337, &a.url()),
            chain("beta", 31338, &b.url()),
        ),
    )
    .expect("config");
    // While this file exists, replica i's alpha scanner holds a tick between its lease
    // check and its write: a process frozen at the worst moment.
    let hold_file = |i: usize| dir.join(format!("hold-{i}"));
    let mut replicas: Vec<Gateway> = (0..3)
        .map(|i| Gateway {
            config: config.clone(),
            db: db.clone(),
            child: None,
            base: String::new(),
            env: vec![
                (
                    "CTRIP__SUPERVISION__REPLICA_ID".into(),
                    format!("replica-{i}"),
                ),
                (
                    "CTRIP_TEST_HOLD".into(),
                    format!("alpha.scanner={}", hold_file(i).display()),
                ),
            ],
            lines: Default::default(),
        })
        .collect();
    for r in &mut replicas {
        r.start().await;
    }
    let (c, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .expect("db");
    tokio::spawn(conn);
    let index = |holder: &str| -> usize {
        holder
            .strip_prefix("replica-")
            .and_then(|i| i.parse().ok())
            .expect("replica id")
    };

    // One leader per chain, and the two chains on two different replicas (the first
    // replica up takes both, then gives one up as the others appear).
    let (alpha, beta) = eventually(60, "the chains spread over two replicas", || async {
        let alpha = holder(&c, "alpha").await?;
        let beta = holder(&c, "beta").await?;
        (alpha.0 != beta.0).then_some((alpha, beta))
    })
    .await;
    eprintln!(
        "failover: alpha led by {} (token {}), beta by {} (token {})",
        alpha.0, alpha.1, beta.0, beta.1
    );

    // A merchant and one payment per fault, paid before the fault and confirmed after it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ctrip"))
        .args(["merchant", "create", "--name", "failover"])
        .env("CTRIP__DATABASE__URL", &db)
        .env("CTRIP__WALLET__MNEMONIC", crate::helpers::TEST_MNEMONIC)
        .env("CTRIP__ADMIN__TOKEN", ADMIN_TOKEN)
        .output()
        .expect("merchant");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("api_key:"))
        .and_then(|l| l.split_whitespace().next())
        .expect("api key")
        .to_string();
    let http = reqwest::Client::new();
    let dev = DevChain::new(a.url());
    let pay = |base: String| {
        let (http, key, dev) = (http.clone(), key.clone(), &dev);
        async move {
            let p: Value = http
                .post(format!("{base}/v1/payments"))
                .bearer_auth(&key)
                .json(&json!({"chain": "alpha", "asset": "native", "amount": "1"}))
                .send()
                .await
                .expect("create")
                .json()
                .await
                .expect("json");
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
            p["id"].as_str().expect("id").to_string()
        }
    };
    let mut ids = Vec::new();
    let mut term = alpha;

    // kill -9: the lease lapses; another replica takes it once it expired.
    let victim = index(&term.0);
    ids.push(pay(replicas[(victim + 1) % 3].base.clone()).await);
    let since = Instant::now();
    replicas[victim].stop(false).await;
    let (next, took) = next_term(&c, "alpha", term.1, since).await;
    eprintln!("failover: kill -9 of {}: {} took alpha over after {took:?} (ttl {TTL_MS} ms, renew {RENEW_MS} ms)", term.0, next.0);
    assert_ne!(next.0, term.0);
    replicas[victim].start().await;
    term = next;

    // SIGTERM: the leader releases the lease on its way out.
    let victim = index(&term.0);
    ids.push(pay(replicas[(victim + 1) % 3].base.clone()).await);
    let since = Instant::now();
    replicas[victim].stop(true).await;
    let (next, took) = next_term(&c, "alpha", term.1, since).await;
    eprintln!(
        "failover: SIGTERM of {}: {} took alpha over after {took:?}",
        term.0, next.0
    );
    replicas[victim].start().await;
    term = next;

    // SIGSTOP for longer than the lease, then SIGCONT. The leader is frozen with its
    // scanner past the lease check and before its write (held there by the test hook), the
    // worst moment: when it wakes, after the takeover, that write is refused by the fence.
    let victim = index(&term.0);
    ids.push(pay(replicas[(victim + 1) % 3].base.clone()).await);
    std::fs::write(hold_file(victim), b"").expect("hold");
    eventually(30, "the leader's scanner held before its write", || async {
        replicas[victim]
            .logged("held at the test hold point")
            .then_some(())
    })
    .await;
    let since = Instant::now();
    // SAFETY: signals a child this test spawned.
    unsafe { libc::kill(pid(&replicas[victim]), libc::SIGSTOP) };
    let (next, took) = next_term(&c, "alpha", term.1, since).await;
    eprintln!(
        "failover: SIGSTOP of {}: {} took alpha over after {took:?}",
        term.0, next.0
    );
    assert_ne!(next.0, term.0);
    // The new leader writes under its term before the old one wakes.
    let new_leader = index(&next.0);
    ids.push(pay(replicas[new_leader].base.clone()).await);
    std::fs::remove_file(hold_file(victim)).expect("release the hold");
    // SAFETY: as above.
    unsafe { libc::kill(pid(&replicas[victim]), libc::SIGCONT) };
    eventually(
        30,
        "the stale leader's write refused by the fence",
        || async {
            replicas[victim]
                .logged("write refused by the lease fence")
                .then_some(())
        },
    )
    .await;
    let refused = {
        let text = http
            .get(format!("{}/metrics", replicas[victim].base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        crate::helpers::metric(&text, "ctrip_chain_fenced_writes_total{chain=\"alpha\"}")
            .unwrap_or(0.0)
    };
    assert!(refused >= 1.0, "the refusal is counted");
    eprintln!(
        "failover: SIGCONT of {}: its held write was refused by the fence ({refused} refused)",
        term.0
    );

    // Every payment is confirmed, once, and the stale leader never takes the lease back
    // behind the new term's back.
    dev.mine(3).await.expect("mine");
    let base = replicas[(victim + 1) % 3].base.clone();
    for id in &ids {
        eventually(60, "each payment confirmed", || async {
            dev.mine(1).await.ok();
            let g: Value = http
                .get(format!("{base}/v1/payments/{id}"))
                .bearer_auth(&key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (g["status"] == "confirmed").then_some(())
        })
        .await;
    }
    let (now_holder, now_token) = holder(&c, "alpha").await.expect("a holder");
    assert!(now_token >= next.1, "tokens never go back");
    eprintln!("failover: alpha now led by {now_holder} (token {now_token})");
    for id in &ids {
        let id: uuid::Uuid = id.parse().expect("uuid");
        let transfers: i64 = c
            .query_one(
                "SELECT count(*) FROM payment_transfers WHERE payment_id = $1 AND NOT removed",
                &[&id],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(transfers, 1, "one transfer recorded for {id}");
        let rows = c
            .query(
                "SELECT type, count(*) FROM events WHERE payment_id = $1 GROUP BY type",
                &[&id],
            )
            .await
            .expect("events");
        for r in &rows {
            let (t, n): (String, i64) = (r.get(0), r.get(1));
            assert_eq!(n, 1, "{t} announced once for {id}");
        }
        let confirmed = rows
            .iter()
            .any(|r| r.get::<_, String>(0) == "payment.confirmed");
        assert!(confirmed, "{id} announced as confirmed");
    }
    // The other chain kept one leader throughout.
    assert!(holder(&c, "beta").await.is_some());
    for r in &mut replicas {
        r.stop(true).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
