//! `LISTEN` sessions: one connection of its own per channel, outside the pool (a pooled
//! connection would hand the subscription to whichever request borrows it next).

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{Store, StoreError};

/// What a listening session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The subscription is in place: every notification committed from now on arrives.
    /// Anything committed before (or while no session was listening) was missed.
    Listening,
    /// A notification's payload.
    Payload(String),
}

impl Store {
    /// Opens a connection of its own, subscribes to `channel` and hands every notice to
    /// `on` until the session fails; it never returns `Ok`. The session is checked with a
    /// round trip every `ping`, so a connection that died silently (a host gone, a
    /// dropped route) is noticed within that time rather than when the kernel gives up.
    /// `channel` must be a plain identifier: it is written into the statement.
    pub async fn listen(
        &self,
        channel: &'static str,
        ping: Duration,
        mut on: impl FnMut(Notice),
    ) -> Result<(), StoreError> {
        debug_assert!(channel.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        let mut config = (*self.config).clone();
        config.application_name("ctrip-listen");
        let (client, mut connection) = config.connect(NoTls).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        // The connection object must be polled for the client to make progress; it is
        // also where notifications surface.
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(Ok(n.payload().to_string())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let session = async {
            client.batch_execute(&format!("LISTEN {channel}")).await?;
            on(Notice::Listening);
            let mut ticker = tokio::time::interval(ping);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(Ok(payload)) => on(Notice::Payload(payload)),
                        Some(Err(e)) => return Err(StoreError::Db(e)),
                        None => return Err(StoreError::SessionLost("the connection closed")),
                    },
                    _ = ticker.tick() => {
                        match tokio::time::timeout(ping, client.simple_query("")).await {
                            Ok(r) => { r?; }
                            Err(_) => return Err(StoreError::SessionLost("no answer to a ping")),
                        }
                    }
                }
            }
        };
        let result = session.await;
        driver.abort();
        result
    }

    /// Keeps a session on `channel` for as long as the calling task runs: `on` sees every
    /// notice of every session, and `lost` is told whenever one ends (nothing arrives
    /// from then until the next [`Notice::Listening`]). Sessions are opened again after a
    /// backoff of 0.1 s doubling to 5 s, back to 0.1 s after one that lasted 30 s.
    pub async fn follow(
        &self,
        channel: &'static str,
        ping: Duration,
        mut on: impl FnMut(Notice),
        mut lost: impl FnMut(StoreError),
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            if let Err(e) = self.listen(channel, ping, &mut on).await {
                lost(e);
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(100);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
