//! The gateway's side of a separate signer: [`Signer`] over the signer's Unix socket.
//!
//! One connection, one request at a time (signing is rare and fast). A connection that
//! fails or times out is dropped, so an answer that arrives late can never be taken for
//! the next request's; the next call connects again. While the signer is away every call
//! fails as [`WalletError::Unavailable`], which the sweeper retries on its next tick; the
//! API keeps deriving addresses from the account keys it already has.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy::eips::eip7702::Authorization;
use alloy::primitives::{Address, Signature};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use super::protocol::{Answer, Call, Reply, Request};
use crate::wallet::{KeyRef, Signer, UnsignedTx, WalletError};

struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

/// A separate signer, reached over its Unix socket.
pub struct RemoteSigner {
    path: PathBuf,
    timeout: Duration,
    conn: Mutex<Option<Conn>>,
    next: AtomicU64,
    tank: std::sync::OnceLock<Address>,
}

impl RemoteSigner {
    /// A client for the signer listening at `path`; every call gives up after `timeout`.
    pub fn new(path: PathBuf, timeout: Duration) -> Self {
        Self {
            path,
            timeout,
            conn: Mutex::new(None),
            next: AtomicU64::new(1),
            tank: std::sync::OnceLock::new(),
        }
    }

    /// Sends one request and waits for its answer.
    pub async fn call(&self, request: Request) -> Result<Answer, WalletError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut line = serde_json::to_string(&Call { id, request })
            .map_err(|_| WalletError::Unavailable("could not encode the request".into()))?;
        line.push('\n');
        let mut guard = self.conn.lock().await;
        match tokio::time::timeout(self.timeout, self.exchange(&mut guard, &line, id)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                *guard = None;
                Err(e)
            }
            Err(_) => {
                *guard = None;
                Err(WalletError::Unavailable("no answer in time".into()))
            }
        }
    }

    async fn exchange(
        &self,
        conn: &mut Option<Conn>,
        line: &str,
        id: u64,
    ) -> Result<Answer, WalletError> {
        let unavailable = |what: &str| WalletError::Unavailable(what.to_string());
        if conn.is_none() {
            let stream = UnixStream::connect(&self.path)
                .await
                .map_err(|_| unavailable("cannot connect to the signer's socket"))?;
            let (r, w) = stream.into_split();
            *conn = Some(Conn {
                reader: BufReader::new(r),
                writer: w,
            });
        }
        let Some(c) = conn.as_mut() else {
            return Err(unavailable("no connection"));
        };
        c.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|_| unavailable("the connection to the signer broke"))?;
        let mut answer = String::new();
        let n = c
            .reader
            .read_line(&mut answer)
            .await
            .map_err(|_| unavailable("the connection to the signer broke"))?;
        if n == 0 {
            return Err(unavailable("the signer closed the connection"));
        }
        let reply: Reply =
            serde_json::from_str(&answer).map_err(|_| unavailable("an unreadable answer"))?;
        if reply.id != id {
            return Err(unavailable("an answer to another request"));
        }
        Ok(reply.answer)
    }

    fn unexpected(answer: Answer) -> WalletError {
        match answer {
            Answer::Refused(why) => WalletError::Refused(why),
            Answer::Error(why) => WalletError::Unavailable(why),
            _ => WalletError::Unavailable("an answer of the wrong kind".into()),
        }
    }
}

#[async_trait::async_trait]
impl Signer for RemoteSigner {
    fn is_separate(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<(), WalletError> {
        match self.call(Request::Health).await? {
            Answer::Healthy(_) => Ok(()),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn address(&self, key: KeyRef) -> Result<Address, WalletError> {
        // The tank's address never changes: asked once.
        if key == KeyRef::GasTank {
            if let Some(a) = self.tank.get() {
                return Ok(*a);
            }
        }
        match self.call(Request::Address { key }).await? {
            Answer::Address(a) => {
                if key == KeyRef::GasTank {
                    let _ = self.tank.set(a);
                }
                Ok(a)
            }
            other => Err(Self::unexpected(other)),
        }
    }

    async fn account_xpub(&self, account: u32) -> Result<String, WalletError> {
        match self.call(Request::AccountXpub { account }).await? {
            Answer::Xpub(x) => Ok(x),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn sign_transaction(
        &self,
        key: KeyRef,
        tx: &UnsignedTx,
        recipient: Option<KeyRef>,
    ) -> Result<Signature, WalletError> {
        let request = Request::SignTransaction {
            key,
            tx: tx.clone(),
            recipient,
        };
        match self.call(request).await? {
            Answer::Signature(sig) => {
                // Never trust a signature blindly: it must be the key's, over this
                // transaction.
                let hash = tx.signature_hash();
                let signer = sig
                    .recover_address_from_prehash(&hash)
                    .map_err(|_| WalletError::Signing)?;
                if signer != self.address(key).await? {
                    return Err(WalletError::Signing);
                }
                Ok(sig)
            }
            other => Err(Self::unexpected(other)),
        }
    }

    async fn sign_authorization(
        &self,
        key: KeyRef,
        auth: &Authorization,
    ) -> Result<Signature, WalletError> {
        let request = Request::SignAuthorization {
            key,
            auth: auth.clone(),
        };
        match self.call(request).await? {
            Answer::Signature(sig) => {
                let signer = sig
                    .recover_address_from_prehash(&auth.signature_hash())
                    .map_err(|_| WalletError::Signing)?;
                if signer != self.address(key).await? {
                    return Err(WalletError::Signing);
                }
                Ok(sig)
            }
            other => Err(Self::unexpected(other)),
        }
    }
}
