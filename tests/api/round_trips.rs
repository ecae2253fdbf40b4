//! The API's hot path costs one statement round trip per request: counted on the wire by
//! a proxy between the gateway and PostgreSQL.

use crate::helpers::{create_database, eventually, maintenance_url, native_body, spawn_app_on};
use crate::pgwire::CountingProxy;

#[tokio::test]
async fn creating_and_reading_a_payment_cost_one_round_trip_each() {
    let url = create_database(&maintenance_url()).await;
    let target = "127.0.0.1:5432";
    assert!(url.contains(target), "the test server is on {target}");
    let proxy = CountingProxy::start(target.parse().unwrap(), "ctrip").await;
    let app = spawn_app_on(&url.replace(target, &proxy.addr.to_string()), |s| {
        // One connection, so each statement is prepared once during the warm-up below,
        // and a reservation large enough that the measured creates need no new block.
        s.database.pool_size = 1;
        s.payments.address_reservation = 100;
    })
    .await;
    eventually(10, "the API key change subscription", || async {
        app.state.keys.active().then_some(())
    })
    .await;
    // Warm-up: the key is read once, the statements are prepared, a block is reserved.
    let first = app.create_payment("1").await;
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(app.get(&format!("/v1/payments/{id}")).await.status(), 200);
    let r = app
        .post_payment_as(&app.api_key, &native_body("1"), Some("warm-up"))
        .await;
    assert_eq!(r.status(), 201);

    let n = 20;
    let mut counts = Vec::new();
    for (what, kind) in [
        ("POST /v1/payments", 0),
        ("POST /v1/payments with an Idempotency-Key", 1),
        ("POST /v1/payments replayed", 2),
        ("GET /v1/payments/{id}", 3),
    ] {
        let before = proxy.round_trips();
        for i in 0..n {
            let r = match kind {
                0 => app.post_payment(&native_body("1")).await,
                1 => {
                    app.post_payment_as(&app.api_key, &native_body("1"), Some(&format!("k{i}")))
                        .await
                }
                2 => {
                    let r = app
                        .post_payment_as(&app.api_key, &native_body("1"), Some(&format!("k{i}")))
                        .await;
                    assert_eq!(r.headers()["idempotent-replayed"], "true");
                    r
                }
                _ => app.get(&format!("/v1/payments/{id}")).await,
            };
            assert!(r.status().is_success(), "{what}: {}", r.status());
        }
        let spent = proxy.round_trips() - before;
        println!("{what}: {spent} round trips for {n} requests");
        counts.push((what, spent));
    }
    for (what, spent) in &counts {
        assert_eq!(*spent, n, "{what}: {spent} round trips for {n} requests");
    }
    // A replay created nothing and gave its index back: the creates used consecutive
    // indexes from the reserved block.
    let c = app.store.client().await.unwrap();
    let (count, lo, hi): (i64, i32, i32) = {
        let r = c
            .query_one(
                "SELECT count(*), min(derivation_index), max(derivation_index) \
                 FROM payments WHERE merchant_id = $1",
                &[&app.merchant_id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(count, 2 + 2 * n as i64);
    assert_eq!(i64::from(hi - lo) + 1, count, "no index was skipped");
}
