//! Verified API keys are served from memory, and a revocation reaches every replica
//! through PostgreSQL `LISTEN/NOTIFY`, with the cache's time to live as the backstop.

use crate::helpers::{
    create_database, eventually, maintenance_url, metric, native_body, spawn_app_on, TestApp,
};

async fn lookups(app: &TestApp, source: &str) -> f64 {
    metric(
        &app.metrics_text().await,
        &format!("ctrip_api_key_lookups_total{{source=\"{source}\"}}"),
    )
    .unwrap_or(0.0)
}

async fn subscribed(app: &TestApp) {
    eventually(10, "the API key change subscription", || async {
        app.state.keys.active().then_some(())
    })
    .await;
}

/// Status of a create with `key`.
async fn status(app: &TestApp, key: &str) -> u16 {
    app.post_payment_as(key, &native_body("1"), None)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_revoked_key_stops_working_on_every_replica_through_the_notice() {
    let url = create_database(&maintenance_url()).await;
    // A time to live far longer than the test: only the notice can end the cached entry.
    let ttl = |s: &mut ctrip::config::Settings| {
        s.server.api_key_cache_ttl = std::time::Duration::from_secs(3600)
    };
    let a = spawn_app_on(&url, ttl).await;
    let b = spawn_app_on(&url, ttl).await;
    subscribed(&a).await;
    subscribed(&b).await;
    let (key_id, key) = ctrip::ops::create_api_key(&a.store, a.merchant_id)
        .await
        .unwrap()
        .unwrap();
    for app in [&a, &b] {
        let from_db = lookups(app, "database").await;
        assert_eq!(status(app, &key).await, 201);
        assert_eq!(status(app, &key).await, 201);
        assert_eq!(status(app, &key).await, 201);
        assert_eq!(
            lookups(app, "database").await,
            from_db + 1.0,
            "the key row is read once, then served from memory"
        );
        // A wrong secret behind a cached prefix is still refused.
        let forged = format!(
            "{}{}",
            &key[..key.len() - 1],
            if key.ends_with('A') { 'B' } else { 'A' }
        );
        assert_eq!(status(app, &forged).await, 401);
    }
    assert!(ctrip::ops::revoke_api_key(&a.store, key_id).await.unwrap());
    for app in [&a, &b] {
        eventually(10, "the revocation to reach the replica", || async {
            (status(app, &key).await == 401).then_some(())
        })
        .await;
    }
    // The merchant's first key, cached too, is untouched.
    assert_eq!(status(&a, &a.api_key).await, 201);
    a.assert_logs_clean(&[&key]);
}

#[tokio::test]
async fn a_lost_notice_is_bounded_by_the_time_to_live() {
    let url = create_database(&maintenance_url()).await;
    let app = spawn_app_on(&url, |s| {
        s.server.api_key_cache_ttl = std::time::Duration::from_millis(500)
    })
    .await;
    let long = spawn_app_on(&url, |s| {
        s.server.api_key_cache_ttl = std::time::Duration::from_secs(3600)
    })
    .await;
    subscribed(&app).await;
    subscribed(&long).await;
    let (key_id, key) = ctrip::ops::create_api_key(&app.store, app.merchant_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(&app, &key).await, 201);
    assert_eq!(status(&long, &key).await, 201);
    // The notice is lost: the trigger that sends it is off for this revocation.
    let c = app.store.client().await.unwrap();
    c.batch_execute("ALTER TABLE api_keys DISABLE TRIGGER api_keys_changed")
        .await
        .unwrap();
    assert!(ctrip::ops::revoke_api_key(&app.store, key_id)
        .await
        .unwrap());
    c.batch_execute("ALTER TABLE api_keys ENABLE TRIGGER api_keys_changed")
        .await
        .unwrap();
    // Without the notice, a replica trusting the key for an hour still takes it (this is
    // what the time to live bounds) ...
    assert_eq!(status(&long, &key).await, 201);
    // ... and one trusting it for half a second refuses it soon after.
    eventually(10, "the entry to age out", || async {
        (status(&app, &key).await == 401).then_some(())
    })
    .await;
}

#[tokio::test]
async fn while_the_subscription_is_down_keys_are_read_per_request() {
    let url = create_database(&maintenance_url()).await;
    let app = spawn_app_on(&url, |s| {
        s.server.api_key_cache_ttl = std::time::Duration::from_secs(3600)
    })
    .await;
    subscribed(&app).await;
    let (key_id, key) = ctrip::ops::create_api_key(&app.store, app.merchant_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(&app, &key).await, 201);
    // The subscription's session is killed and, in the same breath, the key revoked: the
    // notice may never be delivered. The replica drops everything it trusted when the
    // session is lost and again when it is back, so the revocation still takes.
    let c = app.store.client().await.unwrap();
    c.batch_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'ctrip-listen' AND datname = current_database(); \
         UPDATE api_keys SET revoked_at = now() WHERE id = '{key_id}'"
    ))
    .await
    .unwrap();
    eventually(10, "the lost session to be reported", || async {
        app.log_text()
            .contains("API key change subscription lost")
            .then_some(())
    })
    .await;
    eventually(10, "the revocation to take", || async {
        (status(&app, &key).await == 401).then_some(())
    })
    .await;
    // It subscribes again and serves from memory again.
    subscribed(&app).await;
    let from_memory = lookups(&app, "memory").await;
    assert_eq!(status(&app, &app.api_key).await, 201);
    assert_eq!(status(&app, &app.api_key).await, 201);
    assert!(lookups(&app, "memory").await > from_memory);
}
