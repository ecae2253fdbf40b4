//! The payer's page in a real browser: Debian's Chromium, driven by playwright-core from
//! `tests/browser/checkout.mjs`. That script owns the browser and asks this test, one JSON
//! line at a time, for what happens outside it: a payment created through the API, paid
//! on anvil, blocks mined, a window closed. The scanner and the confirmer run one tick per
//! step here, so the page sees each change as soon as the step is answered, and the test
//! waits on nothing else.
//!
//! Screenshots of every state the page shows land in `artifacts/checkout/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use ctrip::devnet::ANVIL_PAYER;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::chain::{address_of, harness, Harness};

/// Where the screenshots go (kept by CI as artifacts).
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts/checkout")
}

/// The states the script photographs; each must exist after the run.
const SHOTS: &[&str] = &[
    "waiting",
    "partially_paid",
    "processing",
    "confirmed",
    "expired",
    "underpaid",
    "not_found",
    "nojs-waiting",
    "nojs-partially_paid",
    "nojs-processing",
    "nojs-confirmed",
];

/// Does one step the script asked for and returns the answer.
async fn answer(h: &mut Harness, step: &Value) -> Value {
    match step["step"].as_str().unwrap_or_default() {
        "create" => {
            let mut body =
                json!({"chain": "devchain", "asset": "native", "amount": step["amount"]});
            if let Some(url) = step["return_url"].as_str() {
                body["return_url"] = json!(url);
            }
            let p = h.create(body).await;
            json!({"ok": true, "id": p["id"], "address": p["address"]})
        }
        "pay" => {
            let p = h.get(&json!({"id": step["id"]})).await;
            let wei = ctrip::domain::parse_units(step["amount"].as_str().unwrap_or_default(), 18)
                .expect("an amount");
            h.dev
                .pay_native(ANVIL_PAYER, address_of(&p), wei)
                .await
                .expect("pays");
            h.scan().await;
            h.confirm().await;
            json!({"ok": true})
        }
        "confirm" => {
            h.dev
                .rpc("anvil_mine", json!(["0x3"]))
                .await
                .expect("mines");
            h.scan().await;
            h.confirm().await;
            json!({"ok": true})
        }
        "expire" => {
            h.sql(
                "UPDATE payments SET expires_at = now() - interval '1 second' WHERE id = $1::text::uuid",
                &json!({"id": step["id"]}),
            )
            .await;
            h.confirm().await;
            json!({"ok": true})
        }
        "done" => json!({"ok": true}),
        other => json!({"ok": false, "error": format!("unknown step {other}")}),
    }
}

#[tokio::test]
async fn a_payer_watches_the_page_follow_the_payment_with_and_without_javascript() {
    let mut h = harness().await;
    h.scan().await;
    let dir = screenshots();
    let _ = std::fs::remove_dir_all(&dir);
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("node")
        .arg("tests/browser/checkout.mjs")
        .current_dir(root)
        .env("CTRIP_BASE", &h.app.address)
        .env("CTRIP_SHOTS", &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs it)");
    let mut steps = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut replies = child.stdin.take().expect("stdin");
    let mut done = false;
    while !done {
        let line = tokio::time::timeout(Duration::from_secs(120), steps.next_line())
            .await
            .expect("the browser script asks for its next step in time")
            .expect("reads");
        let Some(line) = line else {
            break;
        };
        let step: Value = serde_json::from_str(&line).expect("a step");
        let reply = answer(&mut h, &step).await;
        done = step["step"] == "done";
        replies
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .expect("answers");
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the browser script ends")
        .expect("waits");
    assert!(status.success(), "the browser checks failed (see above)");
    assert!(done, "the script ran to its end");
    for name in SHOTS {
        let file = dir.join(format!("{name}.png"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "screenshot {} was taken", file.display());
    }
}
