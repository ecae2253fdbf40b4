//! The binary itself: `ctrip dev` end to end, and `ctrip config check`.

use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::Address;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::TEST_MNEMONIC;

fn ctrip() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctrip"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CTRIP_ENV")
        .kill_on_drop(true);
    c
}

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
    let (mut create, mut pay) = (None, None);
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("curl") && line.contains("/v1/payments") {
                create = Some(line);
            } else if line.starts_with("curl") && line.contains("eth_sendTransaction") {
                pay = Some(line);
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
