use crate::helpers::{eventually, expect_error, native_body, spawn_app};

#[tokio::test]
async fn missing_invalid_and_revoked_keys_get_401() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/v1/payments"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    expect_error(r, 401, "authentication").await;

    for bad in [
        "nonsense",
        "ck_live_short",
        "ck_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &format!("{}x", &app.api_key[..app.api_key.len() - 1]),
    ] {
        let r = app.post_payment_as(bad, &native_body("1"), None).await;
        expect_error(r, 401, "authentication").await;
    }
    let r = app
        .client
        .get(app.url("/v1/chains"))
        .header("Authorization", format!("Basic {}", app.api_key))
        .send()
        .await
        .expect("sent");
    expect_error(r, 401, "authentication").await;

    // A second key works, then stops working once revoked.
    let (key_id, key) = ctrip::ops::create_api_key(&app.store, app.merchant_id)
        .await
        .expect("db")
        .expect("merchant exists");
    let r = app.post_payment_as(&key, &native_body("1"), None).await;
    assert_eq!(r.status(), 201);
    assert!(ctrip::ops::revoke_api_key(&app.store, key_id)
        .await
        .expect("db"));
    // The revocation reaches the gateway's key cache by a database notice.
    let err = eventually(10, "the revocation to take", || async {
        let r = app.post_payment_as(&key, &native_body("1"), None).await;
        (r.status() == 401).then_some(r)
    })
    .await;
    let err = expect_error(err, 401, "authentication").await;
    assert!(err["message"].as_str().unwrap_or("").contains("revoked"));
    // The first key is unaffected.
    assert_eq!(app.get("/v1/payments").await.status(), 200);
    app.assert_logs_clean(&[&key]);
}

#[tokio::test]
async fn another_merchants_payment_is_404() {
    let app = spawn_app().await;
    let payment = app.create_payment("1").await;
    let other = ctrip::ops::create_merchant(&app.store, "Other")
        .await
        .expect("db");
    let id = payment["id"].as_str().expect("id");
    let r = app
        .client
        .get(app.url(&format!("/v1/payments/{id}")))
        .bearer_auth(&other.api_key)
        .send()
        .await
        .expect("sent");
    expect_error(r, 404, "not_found").await;
    let r = app
        .client
        .post(app.url(&format!("/v1/payments/{id}/cancel")))
        .bearer_auth(&other.api_key)
        .send()
        .await
        .expect("sent");
    expect_error(r, 404, "not_found").await;
    let r = app
        .client
        .get(app.url("/v1/payments"))
        .bearer_auth(&other.api_key)
        .send()
        .await
        .expect("sent");
    let list: serde_json::Value = r.json().await.expect("json");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0));
    app.assert_logs_clean(&[&other.api_key]);
}
