//! `ctrip signer`: the one process that holds the mnemonic. It listens on a Unix socket
//! (mode 0660: the gateway's group may connect, nobody else), answers addresses and
//! account public keys, and signs only what its policy allows. Every request and its
//! decision is appended to the audit log, and synced to disk, before the answer leaves.
//! Its own `/health` and `/metrics` are served on `signer.ops_bind` when set.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use prometheus::{IntCounterVec, IntGauge};
use serde_json::json;
use slog::Logger;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use warp::Filter;

use super::local::{sign_authorization_checked, sign_transaction_checked};
use super::policy::Policy;
use super::protocol::{Answer, Call, Reply, Request, MAX_LINE};
use crate::config::Settings;
use crate::telemetry::metrics::{new_registry, BuildMetrics, Registry};
use crate::wallet::{HdWallet, KeyRef, UnsignedTx, WalletError};

crate::declare_metrics! {
    /// The signer's own metrics (served by `ctrip signer`, not by the gateway).
    pub struct SignerMetrics() {
        requests: IntCounterVec = "signer_requests_total" ["op", "decision"],
            "Requests to the signer by operation and decision (answered, signed, refused, error).";
        connections: IntGauge = "signer_connections" [],
            "Clients connected to the signer's socket now.";
    }
}

/// The append-only audit log: one JSON line per request, synced before the answer.
struct Audit {
    file: Mutex<tokio::fs::File>,
}

impl Audit {
    async fn open(path: &Path) -> anyhow::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .await
            .with_context(|| format!("cannot open signer.audit_log {}", path.display()))?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    async fn record(&self, entry: serde_json::Value) -> std::io::Result<()> {
        let mut line = entry.to_string();
        line.push('\n');
        let mut f = self.file.lock().await;
        f.write_all(line.as_bytes()).await?;
        f.sync_data().await
    }
}

/// Who is on the other end of a connection, as the kernel says.
#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    pid: Option<i32>,
    uid: u32,
}

/// Answers requests: the keys, the policy, the audit log.
pub struct SignerService {
    wallet: HdWallet,
    policy: Policy,
    audit: Audit,
    metrics: SignerMetrics,
    log: Logger,
}

fn key_text(key: KeyRef) -> String {
    match key {
        KeyRef::Deposit { account, index } => format!("deposit/{account}/{index}"),
        KeyRef::GasTank => "gas_tank".into(),
    }
}

impl SignerService {
    /// Answers one request and writes its audit line; an answer whose audit line could not
    /// be written is withheld (nothing is signed without a record).
    async fn answer(&self, request: Request, peer: Peer) -> Answer {
        let op = request.op();
        let mut entry = json!({
            "at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "op": op,
            "peer_pid": peer.pid,
            "peer_uid": peer.uid,
        });
        let answer = match &request {
            Request::Address { key } => {
                entry["key"] = json!(key_text(*key));
                match self.wallet.key_address(*key) {
                    Ok(a) => Answer::Address(a),
                    Err(e) => Answer::Error(e.to_string()),
                }
            }
            Request::AccountXpub { account } => {
                entry["account"] = json!(account);
                if *account >= crate::wallet::GAS_TANK_ACCOUNT {
                    Answer::Refused("not a merchant account".into())
                } else {
                    match self.wallet.account_xpub(*account) {
                        Ok(x) => Answer::Xpub(x),
                        Err(e) => Answer::Error(e.to_string()),
                    }
                }
            }
            Request::SignTransaction { key, tx, recipient } => {
                entry["key"] = json!(key_text(*key));
                let (chain_id, nonce, to, value, fee) = match tx {
                    UnsignedTx::Eip1559(t) => (
                        t.chain_id,
                        t.nonce,
                        t.to.to().copied(),
                        t.value,
                        t.max_fee_per_gas,
                    ),
                    UnsignedTx::Eip7702(t) => {
                        (t.chain_id, t.nonce, Some(t.to), t.value, t.max_fee_per_gas)
                    }
                };
                entry["chain_id"] = json!(chain_id);
                entry["nonce"] = json!(nonce);
                entry["to"] = json!(to);
                entry["value"] = json!(value.to_string());
                entry["max_fee_per_gas"] = json!(fee.to_string());
                entry["signature_hash"] = json!(tx.signature_hash());
                if let Some(r) = recipient {
                    entry["recipient"] = json!(key_text(*r));
                }
                to_answer(sign_transaction_checked(
                    &self.wallet,
                    &self.policy,
                    *key,
                    tx,
                    *recipient,
                    &[],
                ))
            }
            Request::SignAuthorization { key, auth } => {
                entry["key"] = json!(key_text(*key));
                entry["chain_id"] = json!(auth.chain_id.to_string());
                entry["delegate"] = json!(auth.address);
                entry["nonce"] = json!(auth.nonce);
                to_answer(sign_authorization_checked(
                    &self.wallet,
                    &self.policy,
                    *key,
                    auth,
                    &[],
                ))
            }
            Request::Health => {
                let mut ids: Vec<u64> = self.policy_chain_ids();
                ids.sort_unstable();
                Answer::Healthy(ids)
            }
        };
        let decision = match &answer {
            Answer::Signature(_) => "signed",
            Answer::Refused(_) => "refused",
            Answer::Error(_) => "error",
            _ => "answered",
        };
        entry["decision"] = json!(decision);
        if let Answer::Refused(why) | Answer::Error(why) = &answer {
            entry["reason"] = json!(why);
        }
        self.metrics
            .requests
            .with_label_values(&[op, decision])
            .inc();
        if decision == "refused" {
            slog::warn!(self.log, "signing refused"; "op" => op, "reason" => entry["reason"].as_str().unwrap_or(""),
                "peer_pid" => peer.pid.unwrap_or(-1));
        }
        if let Err(e) = self.audit.record(entry).await {
            slog::error!(self.log, "cannot write the audit log; answer withheld"; "error" => %e);
            return Answer::Error("the signer cannot write its audit log".into());
        }
        answer
    }

    fn policy_chain_ids(&self) -> Vec<u64> {
        self.policy.chain_ids()
    }
}

fn to_answer(r: Result<alloy::primitives::Signature, WalletError>) -> Answer {
    match r {
        Ok(sig) => Answer::Signature(sig),
        Err(WalletError::Refused(why)) => Answer::Refused(why),
        Err(e) => Answer::Error(e.to_string()),
    }
}

/// Reads one line of at most `max` bytes (without its newline); `None` at the end.
async fn read_line(
    r: &mut (impl AsyncBufRead + Unpin),
    max: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        if let Some(i) = available.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&available[..i]);
            r.consume(i + 1);
            return Ok(Some(line));
        }
        let n = available.len();
        line.extend_from_slice(available);
        r.consume(n);
        if line.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request line too long",
            ));
        }
    }
}

async fn serve_connection(service: Arc<SignerService>, stream: UnixStream) {
    let cred = stream.peer_cred().ok();
    let peer = Peer {
        pid: cred.and_then(|c| c.pid()),
        uid: cred.map(|c| c.uid()).unwrap_or(u32::MAX),
    };
    service.metrics.connections.inc();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    while let Ok(Some(line)) = read_line(&mut r, MAX_LINE).await {
        let reply = match serde_json::from_slice::<Call>(&line) {
            Ok(call) => Reply {
                id: call.id,
                answer: service.answer(call.request, peer).await,
            },
            Err(_) => {
                let entry = json!({
                    "at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "op": "malformed", "peer_pid": peer.pid, "peer_uid": peer.uid,
                    "decision": "error", "reason": "not a request",
                });
                service
                    .metrics
                    .requests
                    .with_label_values(&["malformed", "error"])
                    .inc();
                if service.audit.record(entry).await.is_err() {
                    break;
                }
                Reply {
                    id: 0,
                    answer: Answer::Error("not a request".into()),
                }
            }
        };
        let Ok(mut text) = serde_json::to_string(&reply) else {
            break;
        };
        text.push('\n');
        if w.write_all(text.as_bytes()).await.is_err() {
            break;
        }
    }
    service.metrics.connections.dec();
}

/// Binds the socket at `path`, replacing a stale socket file (never any other file), with
/// mode 0660.
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        anyhow::ensure!(
            meta.file_type().is_socket(),
            "signer.socket {} exists and is not a socket",
            path.display()
        );
        std::fs::remove_file(path)
            .with_context(|| format!("cannot replace signer.socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on signer.socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of signer.socket {}", path.display()))?;
    Ok(listener)
}

/// Runs the signer until `shutdown` resolves. The mnemonic is taken out of `settings`
/// (and zeroed there) into the wallet, which zeroes its seed when dropped.
pub async fn run(
    mut settings: Settings,
    log: Logger,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let wallet = HdWallet::from_mnemonic(
        settings.wallet.mnemonic.expose(),
        settings.wallet.passphrase.expose(),
    )
    .context("wallet.mnemonic")?;
    settings.wallet.mnemonic = crate::config::Secret::default();
    settings.wallet.passphrase = crate::config::Secret::default();
    let socket: PathBuf = settings
        .signer
        .socket
        .clone()
        .context("signer.socket is not set")?;
    let policy = Policy::from_settings(&settings);
    let registry: Registry = new_registry()?;
    let _build = BuildMetrics::new(&registry)?;
    let metrics = SignerMetrics::register(&registry)?;
    let audit = Audit::open(&settings.signer.audit_log).await?;
    let listener = bind(&socket)?;
    let service = Arc::new(SignerService {
        wallet,
        policy,
        audit,
        metrics,
        log: log.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let ops = match settings.signer.ops_bind {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on signer.ops_bind {addr}"))?;
            slog::info!(log, "serving the signer's health and metrics"; "port" => l.local_addr()?.port());
            let health = warp::path!("health").map(|| warp::reply::json(&json!({"status": "ok"})));
            let r = registry.clone();
            let metrics = warp::path!("metrics").map(move || {
                let text = crate::telemetry::metrics::render(&r);
                warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4")
            });
            Some(tokio::spawn(
                warp::serve(health.or(metrics))
                    .incoming(l)
                    .graceful(stopped())
                    .run(),
            ))
        }
        None => None,
    };
    // Said last: whoever waits for this line finds everything up.
    let tank = service.wallet.key_address(KeyRef::GasTank)?;
    slog::info!(log, "signer listening"; "socket" => %socket.display(), "gas_tank" => %tank,
        "chains" => service.policy_chain_ids().len());
    let mut stop = std::pin::pin!(stopped());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(service.clone(), stream));
                }
                Err(e) => {
                    slog::warn!(log, "accept failed"; "error" => %e);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    let _ = std::fs::remove_file(&socket);
    if let Some(ops) = ops {
        let _ = ops.await;
    }
    slog::info!(log, "signer stopped");
    Ok(())
}
