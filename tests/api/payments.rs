use std::collections::HashSet;
use std::str::FromStr;

use alloy::primitives::{Address, U256};
use serde_json::{json, Value};

use crate::helpers::{expect_error, native_body, spawn_app, TKN};

fn is_eip55(s: &str) -> bool {
    Address::from_str(s)
        .map(|a| a.to_checksum(None) == s)
        .unwrap_or(false)
}

#[tokio::test]
async fn create_returns_a_complete_payment_with_an_eip55_address() {
    let app = spawn_app().await;
    let r = app
        .post_payment(&json!({
            "chain": "devchain", "asset": "TKN", "amount": "12.5",
            "order_id": "order-1", "metadata": {"cart": 7}, "expires_in": 600
        }))
        .await;
    assert_eq!(r.status(), 201);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("application/json"));
    let p: Value = r.json().await.expect("json");
    assert_eq!(p["object"], "payment");
    assert_eq!(p["chain"], "devchain");
    assert_eq!(p["chain_id"], 31337);
    assert_eq!(p["asset"]["symbol"], "TKN");
    assert_eq!(p["asset"]["contract"], TKN);
    assert_eq!(p["asset"]["decimals"], 18);
    assert_eq!(p["amount"], "12.5");
    assert_eq!(p["amount_raw"], "12500000000000000000");
    assert_eq!(p["amount_received"], "0");
    assert_eq!(p["status"], "pending");
    assert_eq!(p["exception"], Value::Null);
    assert_eq!(p["confirmations_required"], 3);
    assert_eq!(p["order_id"], "order-1");
    assert_eq!(p["metadata"]["cart"], 7);
    assert_eq!(p["settlement"]["status"], "unswept");
    assert!(p["created_at"].as_str().unwrap_or("").ends_with('Z'));
    assert!(p["expires_at"].as_str().unwrap_or("").ends_with('Z'));
    for k in ["detected_at", "confirmed_at"] {
        assert_eq!(p[k], Value::Null, "{k}");
    }
    assert!(
        is_eip55(p["address"].as_str().unwrap_or("")),
        "{}",
        p["address"]
    );
    assert_eq!(p["history"][0]["to"], "pending");
    assert_eq!(p["history"][0]["from"], Value::Null);

    // GET returns the same object.
    let id = p["id"].as_str().expect("id");
    let g: Value = app
        .get(&format!("/v1/payments/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(g["address"], p["address"]);
    assert_eq!(g["amount_raw"], p["amount_raw"]);
    assert_eq!(g["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(g["transfers"], json!([]));
}

#[tokio::test]
async fn bad_amounts_answer_4xx_naming_amount() {
    let app = spawn_app().await;
    // 2^256 raw units of an 18-decimal asset: one more than fits.
    let over = "115792089237316195423570985008687907853269984665640564039457.584007913129639936";
    let cases = [
        json!("0"),
        json!("0.0"),
        json!("-1"),
        json!("1.0000001"), // USDC has 6 decimals
        json!(over),
        json!(5), // a JSON number
        json!(1.5),
        json!("garbage"),
        json!(""),
        json!(null),
        json!(["1"]),
        json!("1e6"),
    ];
    for amount in cases {
        let r = app
            .post_payment(&json!({"chain": "devchain", "asset": "USDC", "amount": amount}))
            .await;
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "{amount}: {status}");
        let err = expect_error(r, status, "invalid_request").await;
        assert_eq!(err["param"], "amount", "{amount}");
    }
    let r = app
        .post_payment(&json!({"chain": "devchain", "asset": "native", "amount": over}))
        .await;
    assert_eq!(
        expect_error(r, 400, "invalid_request").await["param"],
        "amount"
    );
}

#[tokio::test]
async fn unknown_chain_or_asset_is_refused() {
    let app = spawn_app().await;
    let r = app
        .post_payment(&json!({"chain": "dogechain", "asset": "native", "amount": "1"}))
        .await;
    assert_eq!(
        expect_error(r, 400, "invalid_request").await["param"],
        "chain"
    );
    for asset in [
        "DOGE",
        "0x0000000000000000000000000000000000000001",
        "",
        "0xzz",
    ] {
        let r = app
            .post_payment(&json!({"chain": "devchain", "asset": asset, "amount": "1"}))
            .await;
        assert_eq!(
            expect_error(r, 400, "invalid_request").await["param"],
            "asset",
            "{asset}"
        );
    }
    // The contract address of a configured token works in any case.
    let r = app
        .post_payment(&json!({"chain": "devchain", "asset": TKN.to_lowercase(), "amount": "1"}))
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn max_u256_raw_amount_round_trips_exactly() {
    let app = spawn_app().await;
    let amount = ctrip::domain::format_units(U256::MAX, 18);
    let r = app.post_payment(&native_body(&amount)).await;
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.expect("json");
    assert_eq!(p["amount_raw"], U256::MAX.to_string());
    assert_eq!(p["amount"], amount);
    let g: Value = app
        .get(&format!("/v1/payments/{}", p["id"].as_str().unwrap_or("")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(g["amount_raw"], U256::MAX.to_string());
    assert_eq!(g["amount"], amount);
}

#[tokio::test]
async fn idempotent_replay_and_conflict() {
    let app = spawn_app().await;
    let body = json!({"chain": "devchain", "asset": "native", "amount": "1.5", "order_id": "o-9"});
    let first = app
        .post_payment_as(&app.api_key, &body, Some("key-1"))
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    // Same body (keys in another order) replays the first response.
    let same = json!({"order_id": "o-9", "amount": "1.5", "asset": "native", "chain": "devchain"});
    let replay = app
        .post_payment_as(&app.api_key, &same, Some("key-1"))
        .await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(replay, first);
    // Same key, different body: 409.
    let r = app
        .post_payment_as(&app.api_key, &native_body("2"), Some("key-1"))
        .await;
    expect_error(r, 409, "conflict").await;
    // Another merchant may use the same key independently.
    let other = ctrip::ops::create_merchant(&app.store, "Other")
        .await
        .expect("db");
    let r = app
        .post_payment_as(&other.api_key, &body, Some("key-1"))
        .await;
    assert_eq!(r.status(), 201);
    // Only one payment was created for the first merchant.
    let list: Value = app.get("/v1/payments").await.json().await.expect("json");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    // Concurrent first uses of one key create exactly one payment.
    let body3 = native_body("3");
    let futs = (0..10).map(|_| app.post_payment_as(&app.api_key, &body3, Some("key-2")));
    let results = futures::future::join_all(futs).await;
    let mut ids = HashSet::new();
    for r in results {
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.expect("json");
        ids.insert(v["id"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(ids.len(), 1);
    // Key length is bounded.
    let r = app
        .post_payment_as(&app.api_key, &native_body("1"), Some(&"k".repeat(256)))
        .await;
    expect_error(r, 400, "invalid_request").await;
}

#[tokio::test]
async fn pagination_returns_each_payment_exactly_once() {
    let app = spawn_app().await;
    let mut created = HashSet::new();
    for i in 0..23 {
        let body = json!({"chain": "devchain", "asset": "native", "amount": "1", "order_id": format!("o{}", i % 2)});
        let p: Value = app.post_payment(&body).await.json().await.expect("json");
        created.insert(p["id"].as_str().unwrap_or("").to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/payments?limit=5&starting_after={c}"),
            None => "/v1/payments?limit=5".to_string(),
        };
        let page: Value = app.get(&path).await.json().await.expect("json");
        let data = page["data"].as_array().cloned().unwrap_or_default();
        for p in &data {
            seen.push(p["id"].as_str().unwrap_or("").to_string());
        }
        if page["has_more"] != true {
            break;
        }
        cursor = data
            .last()
            .and_then(|p| p["id"].as_str())
            .map(str::to_string);
    }
    assert_eq!(seen.len(), 23);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), created);
    // Newest first.
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted);
    // Filters.
    let page: Value = app
        .get("/v1/payments?order_id=o1&limit=100")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(11));
    let page: Value = app
        .get("/v1/payments?status=canceled")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(0));
    for bad in [
        "limit=0",
        "limit=101",
        "status=paid",
        "chain=x",
        "starting_after=zz",
        "bogus=1",
    ] {
        let r = app.get(&format!("/v1/payments?{bad}")).await;
        expect_error(r, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn cancel_works_only_while_pending() {
    let app = spawn_app().await;
    let p = app.create_payment("1").await;
    let id = p["id"].as_str().expect("id").to_string();
    let r = app.post(&format!("/v1/payments/{id}/cancel")).await;
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.expect("json");
    assert_eq!(c["status"], "canceled");
    assert_eq!(c["history"][1]["from"], "pending");
    assert_eq!(c["history"][1]["to"], "canceled");
    let r = app.post(&format!("/v1/payments/{id}/cancel")).await;
    expect_error(r, 409, "conflict").await;

    // The transition wrote exactly one outbox event.
    let client = app.store.client().await.expect("db");
    let row = client
        .query_one(
            "SELECT count(*), min(type), min(sequence) FROM events WHERE payment_id = $1::text::uuid",
            &[&id],
        )
        .await
        .expect("query");
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), "payment.canceled");
    assert_eq!(row.get::<_, i32>(2), 1);

    // A payment that received something cannot be canceled.
    let p = app.create_payment("1").await;
    let id2 = p["id"].as_str().expect("id").to_string();
    client
        .execute(
            "UPDATE payments SET status = 'partially_paid', amount_received_raw = 5 WHERE id = $1::text::uuid",
            &[&id2],
        )
        .await
        .expect("update");
    let r = app.post(&format!("/v1/payments/{id2}/cancel")).await;
    expect_error(r, 409, "conflict").await;
    let r = app
        .post("/v1/payments/00000000-0000-0000-0000-000000000000/cancel")
        .await;
    expect_error(r, 404, "not_found").await;
}

#[tokio::test]
async fn concurrent_creates_get_distinct_addresses_and_indices() {
    let app = spawn_app().await;
    let body = native_body("0.01");
    let futs = (0..200).map(|_| app.post_payment(&body));
    let results = futures::future::join_all(futs).await;
    let mut addresses = HashSet::new();
    for r in results {
        assert_eq!(r.status(), 201);
        let p: Value = r.json().await.expect("json");
        addresses.insert(p["address"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(addresses.len(), 200);
    let client = app.store.client().await.expect("db");
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT derivation_index), count(DISTINCT address) \
             FROM deposit_addresses WHERE merchant_id = $1",
            &[&app.merchant_id],
        )
        .await
        .expect("query");
    assert_eq!(row.get::<_, i64>(0), 200);
    assert_eq!(row.get::<_, i64>(1), 200);
    assert_eq!(row.get::<_, i64>(2), 200);
    // Every address is the one the wallet derives at its recorded index.
    let wallet =
        ctrip::wallet::HdWallet::from_mnemonic(crate::helpers::TEST_MNEMONIC, "").expect("wallet");
    let rows = client
        .query(
            "SELECT d.derivation_index, d.address, m.account_index FROM deposit_addresses d \
             JOIN merchants m ON m.id = d.merchant_id WHERE d.merchant_id = $1",
            &[&app.merchant_id],
        )
        .await
        .expect("query");
    for row in rows {
        let idx: i32 = row.get(0);
        let addr: String = row.get(1);
        let account: i32 = row.get(2);
        let derived = wallet
            .deposit_address(account as u32, idx as u32)
            .expect("derive");
        assert_eq!(format!("{derived:#x}"), addr);
    }
}

#[tokio::test]
async fn malformed_requests_never_give_500() {
    let app = spawn_app().await;
    let key = app.api_key.clone();
    let raw_bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{".to_vec()),
        ("application/json", b"[]".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", b"\"str\"".to_vec()),
        ("application/json", vec![0xff, 0xfe, 0x00]),
        ("application/json", b"".to_vec()),
        ("text/plain", b"{\"chain\":\"devchain\"}".to_vec()),
        (
            "application/json",
            br#"{"chain":1,"asset":2,"amount":3}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"chain":"devchain","asset":"native","amount":"1","metadata":"x"}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"chain":"devchain","asset":"native","amount":"1","expires_in":-5}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"chain":"devchain","asset":"native","amount":"1","expires_in":1e99}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"chain":"devchain","asset":"native","amount":"1","confirmations":99999999999}"#
                .to_vec(),
        ),
    ];
    for (ct, body) in raw_bodies {
        let r = app
            .client
            .post(app.url("/v1/payments"))
            .bearer_auth(&key)
            .header("content-type", ct)
            .body(body.clone())
            .send()
            .await
            .expect("sent");
        let s = r.status().as_u16();
        assert!(
            (400..500).contains(&s),
            "{ct} {:?} -> {s}",
            String::from_utf8_lossy(&body)
        );
        expect_error(r, s, "invalid_request").await;
    }
    // Oversized body.
    let big = format!(
        r#"{{"chain":"devchain","asset":"native","amount":"1","metadata":{{"x":"{}"}}}}"#,
        "a".repeat(20_000)
    );
    let r = app
        .client
        .post(app.url("/v1/payments"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("sent");
    expect_error(r, 413, "invalid_request").await;
    // Odd paths and methods.
    for path in [
        "/v1/payments/not-a-uuid",
        "/v1/payments/%00",
        "/v1/nothing",
        "/",
        "/v1/payments/x/y/z",
    ] {
        let r = app.get(path).await;
        expect_error(r, 404, "not_found").await;
    }
    let r = app
        .client
        .delete(app.url("/v1/payments"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("sent");
    expect_error(r, 405, "invalid_request").await;
    let r = app
        .client
        .put(app.url("/v1/chains"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("sent");
    expect_error(r, 405, "invalid_request").await;
    app.assert_logs_clean(&[]);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/v1/chains"))
        .bearer_auth(&app.api_key)
        .header("x-request-id", "my-trace-123")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.headers()["x-request-id"], "my-trace-123");
    let r = app.get("/v1/nothing").await;
    let rid = r.headers()["x-request-id"]
        .to_str()
        .unwrap_or("")
        .to_string();
    assert!(rid.len() >= 16);
    let err = expect_error(r, 404, "not_found").await;
    assert_eq!(err["request_id"], rid);
}

#[tokio::test]
async fn chains_lists_assets() {
    let app = spawn_app().await;
    let r = app.get("/v1/chains").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let chain = &v["data"][0];
    assert_eq!(chain["name"], "devchain");
    assert_eq!(chain["chain_id"], 31337);
    assert_eq!(chain["confirmations"], 3);
    let assets = chain["assets"].as_array().cloned().unwrap_or_default();
    assert_eq!(assets.len(), 3);
    assert_eq!(assets[0]["asset"], "native");
    assert_eq!(assets[0]["contract"], Value::Null);
    assert_eq!(assets[1]["symbol"], "TKN");
    assert_eq!(assets[1]["contract"], TKN);
    assert_eq!(assets[2]["decimals"], 6);
}

#[tokio::test]
async fn the_openapi_document_is_served_without_auth() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.expect("json");
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));
    assert!(doc["paths"]["/v1/payments"]["post"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}
