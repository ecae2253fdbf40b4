//! The binary itself: `ctrip dev` end to end, and `ctrip config check`.

use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::Address;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::TEST_MNEMONIC;

use crate::helpers::ctrip;

async fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .await
        .expect("sh runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn dev_prints_a_working_curl_and_stops_cleanly() {
    let mut child = ctrip()
        .args(["dev", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctrip dev starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut create, mut pay, mut token_pay) = (None, None, None);
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("curl") && line.contains("/v1/payments") {
                create = Some(line);
            } else if line.starts_with("curl") && line.contains("\"value\"") {
                pay = Some(line);
            } else if line.starts_with("curl") && line.contains("\"data\"") {
                token_pay = Some(line);
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("ctrip dev printed its commands in time");
    let create = create.expect("a create command");
    let pay = pay.expect("a pay command");

    // The printed curl works as written.
    let out = sh(&format!("{create} -w '\\n%{{http_code}}'")).await;
    let (body, code) = out.rsplit_once('\n').expect("body and status");
    assert_eq!(code, "201", "{out}");
    let payment: serde_json::Value = serde_json::from_str(body).expect("json");
    let address = payment["address"].as_str().expect("address");
    assert_eq!(
        Address::from_str(address)
            .map(|a| a.to_checksum(None))
            .ok()
            .as_deref(),
        Some(address)
    );
    // And so does the printed payment command.
    let out = sh(&pay.replace("ADDRESS", address)).await;
    let rpc: serde_json::Value = serde_json::from_str(&out).expect("rpc json");
    assert!(
        rpc["result"].as_str().unwrap_or("").starts_with("0x"),
        "{out}"
    );

    // The gateway sweeps the paid native payment to the devnet treasury by itself.
    let id = payment["id"].as_str().expect("id").to_string();
    let key = create
        .split("Bearer ")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("api key in the curl")
        .to_string();
    let url = create
        .split(' ')
        .find(|w| w.starts_with("http://"))
        .expect("url")
        .to_string();
    let swept = crate::helpers::eventually(90, "the dev payment to be swept", || {
        let (url, key, id) = (url.clone(), key.clone(), id.clone());
        async move {
            let p: serde_json::Value = reqwest::Client::new()
                .get(format!("{url}/{id}"))
                .bearer_auth(&key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (p["settlement"]["status"] == "swept").then_some(p)
        }
    })
    .await;
    assert!(swept["settlement"]["tx_hash"]
        .as_str()
        .is_some_and(|h| h.starts_with("0x")));

    // The token payment command works too, for a DEMO payment.
    let token_pay = token_pay.expect("a token pay command");
    let api_key = create
        .split("Bearer ")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("api key in the curl")
        .to_string();
    let base = create
        .split(' ')
        .find(|w| w.starts_with("http://"))
        .expect("url")
        .trim_end_matches("/v1/payments");
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/v1/payments"))
        .bearer_auth(&api_key)
        .json(&serde_json::json!({"chain": "anvil", "asset": "DEMO", "amount": "0.5"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let token_address = r["address"]
        .as_str()
        .expect("address")
        .trim_start_matches("0x")
        .to_lowercase();
    let out = sh(&token_pay.replace("ADDRESS", &token_address)).await;
    let rpc: serde_json::Value = serde_json::from_str(&out).expect("rpc json");
    assert!(
        rpc["result"].as_str().unwrap_or("").starts_with("0x"),
        "{out}"
    );

    // SIGTERM stops it cleanly.
    let pid = child.id().expect("pid") as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn config_check_redacts_secrets_and_names_bad_keys() {
    let out = ctrip()
        .args(["config", "check"])
        .env(
            "CTRIP__DATABASE__URL",
            "postgres://ctrip:hunter2secret@db.internal:5432/ctrip",
        )
        .env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC)
        .env("CTRIP__ADMIN__TOKEN", "admin-token-abcdefghijkl")
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("db.internal"));
    for secret in ["hunter2secret", "test test", "admin-token-abcdefghijkl"] {
        assert!(!stdout.contains(secret), "{secret} printed");
    }

    let out = ctrip()
        .args(["config", "check"])
        .env("CTRIP__DATABASE__URL", "postgres://ctrip@127.0.0.1/ctrip")
        .env("CTRIP__ADMIN__TOKEN", "admin-token-abcdefghijkl")
        .env_remove("CTRIP__WALLET__MNEMONIC")
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("wallet.mnemonic"), "{stderr}");

    let out = ctrip()
        .args(["config", "check"])
        .env("CTRIP__DATABASE__URL", "postgres://ctrip@127.0.0.1/ctrip")
        .env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC)
        .env("CTRIP__ADMIN__TOKEN", "admin-token-abcdefghijkl")
        .env("CTRIP__DATABASE__POOL_SIZE", "lots")
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("pool_size"), "{stderr}");
}

#[tokio::test]
async fn operators_manage_merchants_and_keys_from_the_cli() {
    let db = crate::helpers::create_database(&crate::helpers::maintenance_url()).await;
    let run = |args: &[&str]| {
        let mut c = ctrip();
        c.args(args)
            .env("CTRIP__DATABASE__URL", &db)
            .env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC)
            .env("CTRIP__ADMIN__TOKEN", crate::helpers::ADMIN_TOKEN);
        c
    };
    let field = |out: &str, name: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .expect("field")
            .to_string()
    };
    let out = run(&["merchant", "create", "--name", "Shop"])
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let merchant = field(&text, "merchant_id:");
    assert!(field(&text, "api_key:").starts_with("ck_live_"));
    let out = run(&["apikey", "create", "--merchant", &merchant])
        .output()
        .await
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let key_id = field(&text, "api_key_id:");
    let out = run(&["apikey", "revoke", &key_id])
        .output()
        .await
        .expect("runs");
    assert!(out.status.success());
    // Revoking twice, or an unknown merchant, is a one-line error.
    let out = run(&["apikey", "revoke", &key_id])
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1
    );
    let out = run(&[
        "apikey",
        "create",
        "--merchant",
        "00000000-0000-0000-0000-000000000000",
    ])
    .output()
    .await
    .expect("runs");
    assert!(!out.status.success());
    // Branding: what the merchant's payers see.
    let out = run(&[
        "merchant",
        "branding",
        &merchant,
        "--name",
        "Corner Shop",
        "--accent",
        "#FFCC00",
        "--token-qr",
        "eip681",
    ])
    .output()
    .await
    .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(c.1);
    let row =
        c.0.query_one(
            "SELECT name, accent_color, token_qr FROM merchants WHERE id = $1::text::uuid",
            &[&merchant],
        )
        .await
        .expect("row");
    let (name, accent, qr): (String, Option<String>, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (name.as_str(), accent.as_deref(), qr.as_str()),
        ("Corner Shop", Some("#ffcc00"), "eip681")
    );
    // A bad colour or mode is refused before anything is written, naming the option.
    for (option, value) in [("--accent", "yellow"), ("--token-qr", "qr")] {
        let out = run(&["merchant", "branding", &merchant, option, value])
            .output()
            .await
            .expect("runs");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(option));
    }
    let out = run(&["merchant", "branding", &merchant, "--accent", "default"])
        .output()
        .await
        .expect("runs");
    assert!(out.status.success());
    let row =
        c.0.query_one(
            "SELECT accent_color FROM merchants WHERE id = $1::text::uuid",
            &[&merchant],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, Option<String>>(0), None);
    let out = run(&["migrate"]).output().await.expect("runs");
    assert!(out.status.success());
}

#[tokio::test]
async fn gas_tank_show_prints_the_tank_and_its_balance_per_chain() {
    let anvil = ctrip::devnet::Anvil::start(None).await.expect("anvil");
    let dir = std::env::temp_dir().join(format!("ctrip-tank-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("chains.toml");
    std::fs::write(
        &file,
        format!(
            "[[chains]]\nname = \"devchain\"\nchain_id = 31337\nrpc_urls = [\"{}\"]\nconfirmations = 1\nblock_time_ms = 1000\n",
            anvil.url()
        ),
    )
    .expect("config");
    let out = ctrip()
        .args(["--config", file.to_str().expect("path"), "gas-tank", "show"])
        .env("CTRIP__DATABASE__URL", "postgres://ctrip@127.0.0.1/ctrip")
        .env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC)
        .env("CTRIP__ADMIN__TOKEN", "admin-token-abcdefghijkl")
        .output()
        .await
        .expect("runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wallet = ctrip::wallet::HdWallet::from_mnemonic(TEST_MNEMONIC, "").expect("wallet");
    let tank = wallet
        .key_address(ctrip::wallet::KeyRef::GasTank)
        .expect("tank")
        .to_checksum(None);
    assert!(stdout.contains(&tank), "{stdout}");
    assert!(stdout.contains("devchain: 0 wei"), "{stdout}");
}
