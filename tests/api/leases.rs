//! Chain leadership on PostgreSQL leases: one leader per chain, fencing of a stale term,
//! hand-over on shutdown, with real PostgreSQL and anvil.

use std::time::Duration;

use ctrip::devnet::{Anvil, DevChain, ANVIL_PAYER};
use ctrip::store::leases::{self, fence_value};
use ctrip::store::{Fence, Store};
use serde_json::Value;

use crate::helpers::{
    create_database, eventually, maintenance_url, metric, spawn_app_on, test_chain, TestApp,
};

const LEASE: &str = "chain:devchain";

#[tokio::test]
async fn a_stale_term_cannot_write_once_another_replica_took_the_lease() {
    let app = crate::helpers::spawn_app().await;
    let c = app.store.client().await.expect("db");
    let ttl = Duration::from_secs(60);
    let a = leases::acquire(&c, LEASE, "replica-a", ttl)
        .await
        .expect("acquire")
        .expect("free lease");
    assert_eq!(
        leases::acquire(&c, LEASE, "replica-b", ttl)
            .await
            .expect("acquire"),
        None,
        "a held lease is not taken"
    );
    let pool = Store::separate_pool(&app.state.settings.database, 4).expect("pool");
    let stale = pool.fenced(
        Fence::new(fence_value(LEASE, Some(a))),
        Duration::from_secs(10),
    );
    let sc = stale.client().await.expect("fenced client");
    ctrip::store::chain::record_head(&sc, "devchain", 5)
        .await
        .expect("the holder writes");
    drop(sc);

    // A pauses past its term; B takes over with the next token.
    c.execute(
        "UPDATE leases SET expires_at = now() - interval '1 second' WHERE name = $1",
        &[&LEASE],
    )
    .await
    .expect("lapse");
    let b = leases::acquire(&c, LEASE, "replica-b", ttl)
        .await
        .expect("acquire")
        .expect("a lapsed lease is taken");
    assert_eq!(b, a + 1);
    assert!(!leases::renew(&c, LEASE, "replica-a", a, ttl)
        .await
        .expect("renew"));

    // A wakes up: whatever it writes to a chain table is refused.
    let sc = stale.client().await.expect("fenced client");
    let e = ctrip::store::chain::record_head(&sc, "devchain", 6)
        .await
        .expect_err("the stale term is fenced");
    assert!(e.is_fenced(), "{e:?}");
    assert!(
        e.is_retryable(),
        "a fenced worker stands by, it is not restarted"
    );
    // A replica that leads nothing is fenced too.
    let none = pool.fenced(
        Fence::new(fence_value(LEASE, None)),
        Duration::from_secs(10),
    );
    let nc = none.client().await.expect("client");
    assert!(ctrip::store::chain::record_head(&nc, "devchain", 6)
        .await
        .expect_err("no term")
        .is_fenced());
    // The new holder writes; the API, which is never fenced, is unaffected.
    let fresh = pool.fenced(
        Fence::new(fence_value(LEASE, Some(b))),
        Duration::from_secs(10),
    );
    let fc = fresh.client().await.expect("client");
    ctrip::store::chain::record_head(&fc, "devchain", 7)
        .await
        .expect("the new holder writes");
    let r = app.post_payment(&crate::helpers::native_body("1")).await;
    assert_eq!(r.status(), 201);

    // Release hands the lease over at once.
    assert!(leases::release(&c, LEASE, "replica-b", b)
        .await
        .expect("release"));
    assert_eq!(
        leases::acquire(&c, LEASE, "replica-a", ttl)
            .await
            .expect("acquire"),
        Some(b + 1)
    );
}

async fn replica(db: &str, rpc: &str, id: &str) -> TestApp {
    let (rpc, id) = (rpc.to_string(), id.to_string());
    spawn_app_on(db, move |s| {
        let mut chain = test_chain("devchain", 31337, &rpc);
        chain.poll_interval = Some(Duration::from_millis(200));
        chain.confirmations = 3;
        chain.tokens.clear();
        s.chains = vec![chain];
        s.supervision.enabled = true;
        s.supervision.lease_ttl = Duration::from_secs(3);
        s.supervision.lease_renew = Duration::from_millis(500);
        s.supervision.lease_poll = Duration::from_millis(100);
        s.supervision.replica_id = Some(id);
        s.webhooks.workers = 1;
    })
    .await
}

/// The payment's status as `app` serves it, asked with `key` (the merchant's own key: each
/// test replica made a merchant of its own, and they share one database).
async fn status(app: &TestApp, key: &str, id: &str) -> Option<String> {
    let g: Value = app
        .client
        .get(app.url(&format!("/v1/payments/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    g["status"].as_str().map(str::to_string)
}

async fn leads(app: &TestApp) -> bool {
    let text = app.metrics_text().await;
    metric(&text, r#"ctrip_chain_lease_leader{chain="devchain"}"#) == Some(1.0)
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_hand_the_chain_over_on_shutdown() {
    let anvil = Anvil::start(None).await.expect("anvil");
    let dev = DevChain::new(anvil.url());
    let db = create_database(&maintenance_url()).await;
    let first = replica(&db, &anvil.url(), "replica-1").await;
    let second = replica(&db, &anvil.url(), "replica-2").await;

    let first_leads = eventually(30, "one leader", || async {
        match (leads(&first).await, leads(&second).await) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    })
    .await;
    let (leader, follower) = if first_leads {
        (first, second)
    } else {
        (second, first)
    };
    let (_, d) = follower.health_detail().await;
    let holder = &d["checks"]["devchain.lease:holder"][0];
    assert_eq!(holder["status"], "pass", "{d}");
    let token = holder["observedValue"]["token"].as_i64().expect("token");
    let leader_id = holder["observedValue"]["holder"]
        .as_str()
        .expect("holder")
        .to_string();
    // The follower's workers stand by, healthy.
    assert_eq!(
        d["checks"]["devchain.scanner:heartbeat"][0]["status"], "pass",
        "{d}"
    );

    // A payment is detected by whichever replica leads.
    let p: Value = leader.create_payment("1").await;
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
    let id = p["id"].as_str().expect("id").to_string();
    let key = leader.api_key.clone();
    eventually(30, "the payment detected", || async {
        (status(&follower, &key, &id).await? == "processing").then_some(())
    })
    .await;

    // The leader shuts down: it releases the lease and the other replica takes it over
    // without waiting for the lease to lapse.
    let follower_id = if first_leads {
        "replica-2"
    } else {
        "replica-1"
    };
    assert_ne!(leader_id, follower_id);
    drop(leader);
    let survivor = follower;
    eventually(30, "the survivor to lead", || async {
        leads(&survivor).await.then_some(())
    })
    .await;
    let (_, d) = survivor.health_detail().await;
    let holder = &d["checks"]["devchain.lease:holder"][0]["observedValue"];
    assert_eq!(holder["holder"], follower_id, "{d}");
    assert_eq!(holder["token"], token + 1, "{d}");
    let text = survivor.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            r#"ctrip_chain_lease_takeovers_total{chain="devchain"}"#
        ),
        Some(1.0)
    );

    // The new leader goes on confirming the chain: the payment still needs two blocks.
    assert_eq!(
        status(&survivor, &key, &id).await.as_deref(),
        Some("processing")
    );
    dev.mine(2).await.expect("mine");
    eventually(30, "the payment confirmed by the new leader", || async {
        dev.mine(1).await.ok();
        (status(&survivor, &key, &id).await? == "confirmed").then_some(())
    })
    .await;
}
