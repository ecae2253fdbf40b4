//! A PostgreSQL proxy that counts round trips: every `Sync` (the end of an extended-query
//! exchange) and every simple `Query` a client sends is one wait for the server. Only the
//! sessions whose `application_name` is counted are counted, so the gateway's `LISTEN`
//! session (`ctrip-listen`) and the test's own connections stay out of the figure.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct CountingProxy {
    pub addr: SocketAddr,
    round_trips: Arc<AtomicU64>,
    accept: AbortHandle,
}

const SSL_REQUEST: u32 = 80_877_103;
const GSS_REQUEST: u32 = 80_877_104;

impl CountingProxy {
    /// Proxies to `target`, counting the sessions named `application`.
    pub async fn start(target: SocketAddr, application: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_r, mut client_w) = inbound.into_split();
                    let (mut server_r, server_w) = outbound.into_split();
                    let back = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
                    });
                    let _ = pump(client_r, server_w, counter, application).await;
                    back.abort();
                });
            }
        })
        .abort_handle();
        Self {
            addr,
            round_trips,
            accept,
        }
    }

    /// Round trips counted so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Forwards the client's messages, counting `Sync` and `Query` once the startup message
/// named a counted application.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    counter: Arc<AtomicU64>,
    application: &str,
) -> std::io::Result<()> {
    // Untyped messages first: SSL/GSS requests (answered with one byte), then startup.
    let counted = loop {
        let len = from.read_u32().await?;
        let mut body = vec![0; len as usize - 4];
        from.read_exact(&mut body).await?;
        to.write_u32(len).await?;
        to.write_all(&body).await?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code == SSL_REQUEST || code == GSS_REQUEST {
            continue;
        }
        let params: Vec<&[u8]> = body[4..].split(|b| *b == 0).collect();
        break params
            .windows(2)
            .any(|w| w[0] == b"application_name" && w[1] == application.as_bytes());
    };
    loop {
        let tag = from.read_u8().await?;
        let len = from.read_u32().await?;
        let mut body = vec![0; len as usize - 4];
        from.read_exact(&mut body).await?;
        to.write_u8(tag).await?;
        to.write_u32(len).await?;
        to.write_all(&body).await?;
        if counted && (tag == b'S' || tag == b'Q') {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}
