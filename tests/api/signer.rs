//! Custody: `ctrip signer` as a separate process. A hostile caller on its socket, the
//! audit log, a watch-only gateway whose memory holds no key, and sweeps that survive the
//! signer being killed mid-way.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alloy::consensus::TxEip1559;
use alloy::eips::eip7702::Authorization;
use alloy::primitives::{Address, Bytes, TxKind, U256};
use ctrip::config::ChainSettings;
use ctrip::custody::protocol::{Answer, Request};
use ctrip::custody::remote::RemoteSigner;
use ctrip::domain::sweep::{delegate_address, transfer_call};
use ctrip::wallet::{HdWallet, KeyRef, Signer, UnsignedTx, WalletError};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{TEST_MNEMONIC, TKN};

/// A `ctrip signer` process of the test's own, on a socket in a directory of its own.
pub struct SignerProcess {
    pub socket: PathBuf,
    pub audit: PathBuf,
    pub dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    pub ops_port: Option<u16>,
    /// Where the mnemonic comes from: the environment unless set.
    key_env: Vec<(String, String)>,
}

/// The `[[chains]]` of a configuration file for `chains` (what the signer's policy
/// reads: ids, treasuries, tokens, fee caps), with `extra` treasuries listed for the
/// signer.
fn signer_config(chains: &[ChainSettings], extra: &[(String, Address)]) -> String {
    let mut out = String::from("[telemetry]\naccess_log_level = \"off\"\n");
    if !extra.is_empty() {
        out.push_str("[signer.treasuries]\n");
        for (chain, a) in extra {
            out.push_str(&format!("{chain} = [\"{a}\"]\n"));
        }
    }
    for c in chains {
        out.push_str(&format!(
            "[[chains]]\nname = \"{}\"\nchain_id = {}\nrpc_urls = [\"http://127.0.0.1:1\"]\n\
             confirmations = 1\nblock_time_ms = 1000\n",
            c.name, c.chain_id
        ));
        if let Some(t) = c.treasury {
            out.push_str(&format!("treasury = \"{t}\"\n"));
        }
        for t in &c.tokens {
            out.push_str(&format!(
                "[[chains.tokens]]\nsymbol = \"{}\"\naddress = \"{}\"\ndecimals = {}\n",
                t.symbol, t.address, t.decimals
            ));
        }
        out.push_str(&format!(
            "[chains.sweep]\nmax_fee_per_gas_wei = {}\n",
            c.sweep.max_fee_per_gas_wei
        ));
    }
    out
}

impl SignerProcess {
    /// Starts a signer for `chains` (and `extra` treasuries), with its health and metrics
    /// on a free port.
    pub async fn start(chains: &[ChainSettings], extra: &[(String, Address)]) -> Self {
        Self::start_keyed(chains, extra, vec![]).await
    }

    /// [`SignerProcess::start`] with the mnemonic given by `key_env` instead (a sealed
    /// file, say).
    pub async fn start_keyed(
        chains: &[ChainSettings],
        extra: &[(String, Address)],
        key_env: Vec<(String, String)>,
    ) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ctrip-signer-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = dir.join("signer.toml");
        std::fs::write(&config, signer_config(chains, extra)).expect("config");
        let mut s = Self {
            socket: dir.join("signer.sock"),
            audit: dir.join("audit.log"),
            dir,
            config,
            child: None,
            ops_port: None,
            key_env,
        };
        s.launch().await;
        s
    }

    async fn launch(&mut self) {
        let mut c = crate::helpers::ctrip();
        c.args(["signer", "--config"])
            .arg(&self.config)
            .env("CTRIP__SIGNER__SOCKET", &self.socket)
            .env("CTRIP__SIGNER__AUDIT_LOG", &self.audit)
            .env("CTRIP__SIGNER__OPS_BIND", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if self.key_env.is_empty() {
            c.env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC);
        }
        c.envs(self.key_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = c.spawn().expect("ctrip signer");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut ops_port = None;
        tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if v["msg"] == "serving the signer's health and metrics" {
                    ops_port = v["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                }
                if v["msg"] == "signer listening" {
                    return;
                }
            }
            panic!("the signer exited before listening");
        })
        .await
        .expect("the signer listens in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.ops_port = ops_port;
        self.child = Some(child);
    }

    /// `kill -9`: no chance to finish anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts it again after [`SignerProcess::kill`].
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }

    /// Every audit line so far.
    pub fn audit_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }

    /// A client, as the gateway has.
    pub fn client(&self) -> RemoteSigner {
        RemoteSigner::new(self.socket.clone(), Duration::from_secs(5))
    }
}

impl Drop for SignerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Treasuries the tests' merchants set for themselves: a separate signer sweeps only to
/// treasuries its own configuration lists, so the suite's signer lists these.
pub fn listed_treasuries(chain: &str) -> Vec<(String, Address)> {
    ["0x000000000000000000000000000000000000cafE"]
        .iter()
        .map(|a| (chain.to_string(), a.parse().expect("address")))
        .collect()
}

const TREASURY: &str = "0x000000000000000000000000000000000000bEEF";
const STRANGER: &str = "0x000000000000000000000000000000000000dEaD";

fn chain() -> ChainSettings {
    let mut c = crate::helpers::test_chain("devchain", 31337, "http://127.0.0.1:1");
    c.treasury = Some(TREASURY.parse().expect("address"));
    c
}

fn deposit() -> KeyRef {
    KeyRef::Deposit {
        account: 1,
        index: 3,
    }
}

fn tx(to: Address, value: U256, input: Vec<u8>, max_fee: u128) -> UnsignedTx {
    UnsignedTx::Eip1559(TxEip1559 {
        chain_id: 31337,
        nonce: 0,
        gas_limit: 60_000,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: 1,
        to: TxKind::Call(to),
        value,
        access_list: Default::default(),
        input: Bytes::from(input),
    })
}

fn refused(r: Result<alloy::primitives::Signature, WalletError>, why: &str) {
    match r {
        Err(WalletError::Refused(reason)) => assert!(reason.contains(why), "{reason}"),
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

#[tokio::test]
async fn a_hostile_caller_on_the_socket_gets_only_what_the_policy_allows_and_all_is_audited() {
    let c = chain();
    let cap = u128::from(c.sweep.max_fee_per_gas_wei);
    let signer = SignerProcess::start(&[c], &[]).await;
    // Only the owner and its group may connect.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&signer.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    let client = signer.client();
    let treasury: Address = TREASURY.parse().expect("address");
    let stranger: Address = STRANGER.parse().expect("address");
    let token: Address = TKN.parse().expect("address");
    let wallet = HdWallet::from_mnemonic(TEST_MNEMONIC, "").expect("wallet");
    let from = wallet.key_address(deposit()).expect("address");
    assert_eq!(client.address(deposit()).await.expect("address"), from);

    // What a compromised gateway would ask for.
    let one = U256::from(10u64).pow(U256::from(18u64));
    refused(
        client
            .sign_transaction(deposit(), &tx(stranger, one, vec![], cap), None)
            .await,
        "not a treasury",
    );
    refused(
        client
            .sign_transaction(
                deposit(),
                &tx(stranger, U256::ZERO, transfer_call(treasury, one), cap),
                None,
            )
            .await,
        "not a configured token",
    );
    refused(
        client
            .sign_transaction(
                deposit(),
                &tx(token, U256::ZERO, transfer_call(stranger, one), cap),
                None,
            )
            .await,
        "not a treasury",
    );
    refused(
        client
            .sign_transaction(deposit(), &tx(treasury, one, vec![], cap + 1), None)
            .await,
        "above the chain's cap",
    );
    refused(
        client
            .sign_transaction(KeyRef::GasTank, &tx(stranger, one, vec![], cap), None)
            .await,
        "only as a seed",
    );
    refused(
        client
            .sign_transaction(
                KeyRef::GasTank,
                &tx(stranger, U256::from(1000u64), vec![], cap),
                Some(deposit()),
            )
            .await,
        "not the deposit address named",
    );
    let auth = |chain: u64, to: Address| Authorization {
        chain_id: U256::from(chain),
        address: to,
        nonce: 0,
    };
    refused(
        client
            .sign_authorization(deposit(), &auth(0, delegate_address(treasury)))
            .await,
        "chain id 0",
    );
    refused(
        client
            .sign_authorization(deposit(), &auth(31337, stranger))
            .await,
        "not a treasury's sweep delegate",
    );

    // What a sweep asks for is signed, by the deposit key, over exactly this transaction.
    let sweep = tx(treasury, one, vec![], cap);
    let sig = client
        .sign_transaction(deposit(), &sweep, None)
        .await
        .expect("a sweep to the treasury is signed");
    assert_eq!(
        sig.recover_address_from_prehash(&sweep.signature_hash())
            .expect("recovers"),
        from
    );
    client
        .sign_authorization(deposit(), &auth(31337, delegate_address(treasury)))
        .await
        .expect("an authorization to the treasury's delegate");
    // An account's public key, but never the gas tank's account.
    assert!(client
        .account_xpub(1)
        .await
        .expect("xpub")
        .starts_with("xpub"));
    match client
        .call(Request::AccountXpub {
            account: ctrip::wallet::GAS_TANK_ACCOUNT,
        })
        .await
    {
        Ok(Answer::Refused(_)) => {}
        other => panic!("{other:?}"),
    }

    // Garbage on the socket: an error answer, the connection and the signer survive.
    let mut raw = tokio::net::UnixStream::connect(&signer.socket)
        .await
        .expect("connects");
    raw.write_all(b"{\"id\": 7, \"op\": \"export_mnemonic\"}\nnot json\n")
        .await
        .expect("writes");
    let mut answers = BufReader::new(raw).lines();
    for _ in 0..2 {
        let line = answers.next_line().await.expect("reads").expect("a line");
        assert!(line.contains("\"error\""), "{line}");
    }

    // Every request and decision is in the audit log, refusals with their reason.
    let audit = signer.audit_lines();
    let decisions: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| {
            (
                e["op"].as_str().unwrap_or(""),
                e["decision"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let count = |op: &str, d: &str| decisions.iter().filter(|x| **x == (op, d)).count();
    assert_eq!(count("sign_transaction", "refused"), 6, "{decisions:?}");
    assert_eq!(count("sign_authorization", "refused"), 2);
    assert_eq!(count("sign_transaction", "signed"), 1);
    assert_eq!(count("sign_authorization", "signed"), 1);
    assert_eq!(count("account_xpub", "refused"), 1);
    assert_eq!(count("malformed", "error"), 2);
    for e in &audit {
        assert!(e["at"].is_string() && e["peer_uid"].is_number(), "{e}");
        if e["decision"] == "refused" {
            assert!(!e["reason"].as_str().unwrap_or("").is_empty(), "{e}");
        }
    }
    let signed = audit
        .iter()
        .find(|e| e["decision"] == "signed" && e["op"] == "sign_transaction")
        .expect("the signed sweep");
    assert_eq!(
        signed["signature_hash"].as_str(),
        Some(sweep.signature_hash().to_string().as_str())
    );
    let text = std::fs::read_to_string(&signer.audit).expect("audit");
    assert!(!text.contains("test test"), "no secret in the audit log");

    // Its own health and metrics.
    let port = signer.ops_port.expect("ops port");
    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        crate::helpers::metric(
            &metrics,
            "ctrip_signer_requests_total{decision=\"refused\",op=\"sign_transaction\"}"
        ),
        Some(6.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_gateway_without_a_signer_socket_refuses_to_start_with_a_mnemonic_beside_one() {
    let out = crate::helpers::ctrip()
        .args(["config", "check"])
        .env("CTRIP__DATABASE__URL", "postgres://ctrip@127.0.0.1/ctrip")
        .env("CTRIP__ADMIN__TOKEN", crate::helpers::ADMIN_TOKEN)
        .env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC)
        .env("CTRIP__SIGNER__SOCKET", "/tmp/nowhere.sock")
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("wallet.mnemonic"), "{stderr}");
    // The signer itself needs its socket.
    let out = crate::helpers::ctrip()
        .arg("signer")
        .env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC)
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("signer.socket"));
}

/// Runs the memory scanner on `pid` for `secrets`; returns what it found.
async fn scan(pid: u32, secrets: &[(&str, Vec<u8>)]) -> Vec<String> {
    let mut c = Command::new("python3");
    c.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tools/scan_memory.py"
    ))
    .arg(pid.to_string());
    for (name, bytes) in secrets {
        c.arg(format!("{name}={}", hex::encode(bytes)));
    }
    let out = c.output().await.expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let scanned: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("scanned "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a byte count");
    assert!(
        scanned > 1 << 20,
        "the scan read the process's memory: {text}"
    );
    text.lines()
        .filter(|l| l.starts_with("found"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_watch_only_gateway_holds_no_mnemonic_seed_or_key_anywhere() {
    let anvil = ctrip::devnet::Anvil::start(None).await.expect("anvil");
    let mut c = chain();
    c.rpc_urls = vec![ctrip::config::RpcUrl::parse(&anvil.url()).expect("url")];
    let signer = SignerProcess::start(std::slice::from_ref(&c), &[]).await;
    // The operator pins the shop's account key (account 1: a placeholder takes 0), as the
    // signer's own tool prints it.
    let out = crate::helpers::ctrip()
        .args(["signer", "account-xpub", "--account", "1"])
        .env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC)
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pinned = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(pinned.starts_with("xpub"), "{pinned}");
    let config = signer.dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[telemetry]\naccess_log_level = \"off\"\n\
             [wallet.account_xpubs]\n\"1\" = \"{pinned}\"\n\
             [[chains]]\nname = \"devchain\"\nchain_id = 31337\nrpc_urls = [\"{}\"]\n\
             confirmations = 1\nblock_time_ms = 250\nstart_block = 0\ntreasury = \"{TREASURY}\"\n",
            anvil.url()
        ),
    )
    .expect("config");
    let wallet = HdWallet::from_mnemonic(TEST_MNEMONIC, "").expect("wallet");
    let seed = bip39::Mnemonic::parse_normalized(TEST_MNEMONIC)
        .expect("mnemonic")
        .to_seed_normalized("");
    let mut secrets: Vec<(&str, Vec<u8>)> = vec![
        ("mnemonic", TEST_MNEMONIC.as_bytes().to_vec()),
        ("seed", seed.to_vec()),
        (
            "gas_tank_key",
            wallet
                .signing_key(ctrip::wallet::GAS_TANK_ACCOUNT, 0)
                .expect("key")
                .to_vec(),
        ),
    ];
    for index in 0..3 {
        secrets.push((
            "deposit_key",
            wallet.signing_key(1, index).expect("key").to_vec(),
        ));
    }

    // Control: the same scan finds the secrets of a gateway that signs in-process, so a
    // clean result below means something.
    let db = crate::helpers::create_database(&crate::helpers::maintenance_url()).await;
    let mut holder = crate::chaos::Gateway {
        config: config.clone(),
        db: db.clone(),
        child: None,
        base: String::new(),
        env: vec![],
        lines: Default::default(),
    };
    holder.start().await;
    let pid = holder.child.as_ref().and_then(|c| c.id()).expect("pid");
    let found = scan(pid, &secrets).await;
    assert!(
        found
            .iter()
            .any(|f| f.contains("mnemonic") || f.contains("seed")),
        "the control holds its secrets: {found:?}"
    );
    holder.stop(true).await;

    // Watch-only: the signer's socket instead of the mnemonic.
    let db = crate::helpers::create_database(&crate::helpers::maintenance_url()).await;
    let env = vec![(
        "CTRIP__SIGNER__SOCKET".to_string(),
        signer.socket.display().to_string(),
    )];
    let mut gateway = crate::chaos::Gateway {
        config: config.clone(),
        db: db.clone(),
        child: None,
        base: String::new(),
        env: env.clone(),
        lines: Default::default(),
    };
    gateway.start().await;
    assert!(gateway.logged("watch-only"), "it says how it signs");
    // Payments get deposit addresses derived from the account's public key alone, the
    // same addresses the private derivation gives.
    let store =
        ctrip::store::Store::new(&crate::helpers::base_settings(&db).database).expect("store");
    ctrip::ops::create_merchant(&store, "placeholder")
        .await
        .expect("merchant");
    let shop = ctrip::ops::create_merchant(&store, "shop")
        .await
        .expect("merchant");
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let r = http
            .post(format!("{}/v1/payments", gateway.base))
            .bearer_auth(&shop.api_key)
            .json(&serde_json::json!({"chain": "devchain", "asset": "native", "amount": "1"}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
        let p: Value = r.json().await.expect("json");
        let address: Address = p["address"]
            .as_str()
            .expect("address")
            .parse()
            .expect("address");
        let index_of = (0..64u32)
            .find(|i| wallet.deposit_address(shop.merchant.account_index, *i).ok() == Some(address))
            .expect("an address of the merchant's account");
        assert!(index_of < 64);
    }
    let pid = gateway.child.as_ref().and_then(|c| c.id()).expect("pid");
    let found = scan(pid, &secrets).await;
    assert!(found.is_empty(), "a watch-only gateway holds: {found:?}");
    // Its configuration as `config check` prints it: the socket, no mnemonic.
    let out = crate::helpers::ctrip()
        .args(["config", "check", "--config"])
        .arg(&config)
        .env("CTRIP__DATABASE__URL", &db)
        .env("CTRIP__ADMIN__TOKEN", crate::helpers::ADMIN_TOKEN)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("signer.sock"), "{printed}");
    assert!(
        printed.contains(&pinned),
        "the pinned public key: {printed}"
    );
    assert!(!printed.contains("test test"), "{printed}");
    // The signer away: sweeps wait, but payments still get addresses (from the stored
    // account key).
    let signer_check = |base: String| async move {
        let v: Value = reqwest::get(format!("{base}/health/detail"))
            .await
            .expect("health")
            .json()
            .await
            .expect("json");
        v["checks"]["signer:responseTime"][0]["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(signer_check(gateway.base.clone()).await, "pass");
    let mut signer = signer;
    signer.kill().await;
    gateway.stop(true).await;
    gateway.start().await;
    let r = http
        .post(format!("{}/v1/payments", gateway.base))
        .bearer_auth(&shop.api_key)
        .json(&serde_json::json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "addresses without the signer");
    assert_eq!(
        signer_check(gateway.base.clone()).await,
        "warn",
        "the operator sees the signer is away"
    );
    gateway.stop(true).await;
}

#[tokio::test]
async fn a_signer_opens_a_sealed_mnemonic_and_keeps_no_passphrase() {
    let dir = std::env::temp_dir().join(format!("ctrip-seal-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let sealed = dir.join("mnemonic.sealed");
    let passphrase_file = dir.join("passphrase");
    let passphrase = "a long and private passphrase";
    std::fs::write(&passphrase_file, passphrase).expect("passphrase");
    let seal = |args: &[&str]| {
        let mut c = crate::helpers::ctrip();
        c.args(["signer", "seal-mnemonic", "--scrypt-log-n", "10", "--out"])
            .arg(&sealed)
            .args(args)
            .env("CTRIP__WALLET__MNEMONIC", TEST_MNEMONIC)
            .env("CTRIP__WALLET__SEAL_PASSPHRASE_FILE", &passphrase_file);
        c
    };
    let out = seal(&[]).output().await.expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sealed)
            .expect("file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&sealed).expect("sealed");
    assert!(!text.contains("test"), "the file shows nothing");
    // Never written over.
    assert!(!seal(&[]).output().await.expect("runs").status.success());

    let sealed_env = |pass: &std::path::Path| {
        vec![
            (
                "CTRIP__WALLET__MNEMONIC_SEALED_FILE".to_string(),
                sealed.display().to_string(),
            ),
            (
                "CTRIP__WALLET__SEAL_PASSPHRASE_FILE".to_string(),
                pass.display().to_string(),
            ),
        ]
    };
    // A wrong passphrase: one line naming the key, and no signer.
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "not the passphrase at all").expect("wrong");
    let out = crate::helpers::ctrip()
        .arg("signer")
        .env("CTRIP__SIGNER__SOCKET", dir.join("x.sock"))
        .envs(sealed_env(&wrong))
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("wallet.mnemonic_sealed_file"), "{stderr}");

    // The right one: the signer holds the same keys.
    let signer = SignerProcess::start_keyed(&[chain()], &[], sealed_env(&passphrase_file)).await;
    let wallet = HdWallet::from_mnemonic(TEST_MNEMONIC, "").expect("wallet");
    assert_eq!(
        signer.client().address(deposit()).await.expect("address"),
        wallet.key_address(deposit()).expect("address")
    );
    // The passphrase is gone from its memory once the mnemonic is open.
    let pid = signer.child.as_ref().and_then(|c| c.id()).expect("pid");
    let found = scan(pid, &[("passphrase", passphrase.as_bytes().to_vec())]).await;
    assert!(found.is_empty(), "{found:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_pinned_account_key_that_the_signer_contradicts_stops_that_account() {
    // Another wallet's key pinned for the test merchant's account (1).
    let other = HdWallet::from_mnemonic(
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        "",
    )
    .expect("wallet");
    let wrong = other.account_xpub(1).expect("xpub");
    let app = crate::helpers::spawn_app_with(move |s| {
        s.wallet.account_xpubs.insert("1".into(), wrong);
    })
    .await;
    let r = app.post_payment(&crate::helpers::native_body("1")).await;
    assert_eq!(r.status(), 500, "no address from a key nobody vouches for");
    assert!(app.log_text().contains("differs from the pinned one"));
    // A malformed pin is a one-line start-up error naming the key.
    let mut s = crate::helpers::base_settings("postgres://x@127.0.0.1/x");
    s.wallet
        .account_xpubs
        .insert("1".into(), "xpub-nonsense".into());
    assert!(s
        .validate()
        .unwrap_err()
        .to_string()
        .contains("wallet.account_xpubs"));
}
