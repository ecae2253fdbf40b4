//! Live payer pages: which pages are open on this replica, and the nudge each gets when its
//! payment changes anywhere.
//!
//! A trigger notifies `ctrip_payments` with the payment's id whenever its status,
//! confirmations or received amount change, whichever replica (or chain worker) wrote it.
//! Every replica keeps one `LISTEN` session on that channel and nudges the event streams
//! open for that id. A nudge carries nothing but "changed": the page then re-reads its
//! status document, which stays the one source of truth, so a nudge lost or doubled costs
//! at most a read. While the session is down nothing arrives, so on every (re)subscription
//! every open page is nudged once, and the pages keep polling slowly as well.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use prometheus::IntGauge;
use slog::Logger;
use tokio::sync::mpsc;
use tokio::time::Sleep;
use uuid::Uuid;
use warp::sse::Event;

use crate::store::listen::Notice;
use crate::store::Store;

/// The channel the payments trigger notifies.
pub const CHANNEL: &str = "ctrip_payments";

/// How long one stream stays open; the browser then reconnects by itself (after the
/// `retry` the stream announced), which also re-checks that the payment still exists.
const STREAM_LIFETIME: Duration = Duration::from_secs(600);

/// The reconnect delay a stream announces to the browser.
const RETRY: Duration = Duration::from_secs(3);

/// The open event streams of this replica, by payment.
pub struct PaymentChanges {
    inner: Mutex<Inner>,
    max_streams: usize,
    open: IntGauge,
}

#[derive(Default)]
struct Inner {
    /// Each open stream's sender, by payment id and stream number.
    streams: HashMap<Uuid, Vec<(u64, mpsc::Sender<()>)>>,
    next: u64,
    count: usize,
    /// Whether the replica's subscription to payment changes is in place.
    listening: bool,
    /// Set at shutdown: no new stream opens, and every open one ends.
    closed: bool,
}

impl PaymentChanges {
    /// A hub admitting at most `max_streams` streams at once; `open` counts them.
    pub fn new(max_streams: usize, open: IntGauge) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_streams,
            open,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent at every await-free step, so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a stream of nudges for payment `id`, or `None` when the replica already holds
    /// its maximum (or is shutting down). The stream's first event is a nudge, because the
    /// payment may have changed between the page's render and the stream's opening.
    pub fn follow(self: &Arc<Self>, id: Uuid) -> Option<Nudges> {
        let mut inner = self.lock();
        if inner.closed || inner.count >= self.max_streams {
            return None;
        }
        // One pending nudge is enough: nudges carry nothing, so they coalesce.
        let (tx, rx) = mpsc::channel(1);
        let token = inner.next;
        inner.next += 1;
        inner.count += 1;
        inner.streams.entry(id).or_default().push((token, tx));
        self.open.set(inner.count as i64);
        Some(Nudges {
            rx,
            first: true,
            until: Box::pin(tokio::time::sleep(STREAM_LIFETIME)),
            _guard: Guard {
                hub: self.clone(),
                id,
                token,
            },
        })
    }

    /// Nudges every stream open for `id`.
    pub fn changed(&self, id: Uuid) {
        if let Some(senders) = self.lock().streams.get(&id) {
            for (_, tx) in senders {
                let _ = tx.try_send(());
            }
        }
    }

    /// The subscription is in place: nudges every open stream, since notices may have been
    /// missed while it was not.
    pub fn subscribed(&self) {
        let mut inner = self.lock();
        inner.listening = true;
        for senders in inner.streams.values() {
            for (_, tx) in senders {
                let _ = tx.try_send(());
            }
        }
    }

    /// The subscription was lost: nothing arrives until it is back.
    pub fn unsubscribed(&self) {
        self.lock().listening = false;
    }

    /// Whether changes written anywhere reach this replica's streams now.
    pub fn is_listening(&self) -> bool {
        self.lock().listening
    }

    /// Ends every open stream and admits no new one (the server is draining).
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.streams.clear();
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.lock().count
    }

    fn release(&self, id: Uuid, token: u64) {
        let mut inner = self.lock();
        inner.count -= 1;
        self.open.set(inner.count as i64);
        if let Some(senders) = inner.streams.get_mut(&id) {
            senders.retain(|(t, _)| *t != token);
            if senders.is_empty() {
                inner.streams.remove(&id);
            }
        }
    }
}

/// Removes its stream from the hub when the stream is dropped (the page went away).
struct Guard {
    hub: Arc<PaymentChanges>,
    id: Uuid,
    token: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.hub.release(self.id, self.token);
    }
}

/// One page's nudges as server-sent events: `data: changed` once at the start and after
/// every change, until the stream's lifetime ends or the server drains.
pub struct Nudges {
    rx: mpsc::Receiver<()>,
    first: bool,
    until: Pin<Box<Sleep>>,
    _guard: Guard,
}

fn nudge() -> Event {
    Event::default().data("changed")
}

impl Stream for Nudges {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.first {
            this.first = false;
            return Poll::Ready(Some(Ok(nudge().retry(RETRY))));
        }
        if this.until.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(())) => Poll::Ready(Some(Ok(nudge()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Keeps `hub` subscribed to payment changes until the task is dropped, reconnecting with
/// a backoff (0.1 s doubling to 5 s). A lost session only slows pages down to their
/// polling; it loses nothing, since every page re-reads its status on the next nudge.
pub async fn follow_changes(store: Store, hub: Arc<PaymentChanges>, log: Logger) {
    store
        .follow(
            CHANNEL,
            Duration::from_secs(15),
            |n| match n {
                Notice::Listening => hub.subscribed(),
                Notice::Payload(id) => {
                    if let Ok(id) = Uuid::parse_str(&id) {
                        hub.changed(id);
                    }
                }
            },
            |e| {
                hub.unsubscribed();
                slog::warn!(log, "payment change subscription lost; payer pages fall back to polling until it is back";
                    "error" => %e);
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn hub(max: usize) -> Arc<PaymentChanges> {
        Arc::new(PaymentChanges::new(
            max,
            IntGauge::new("open", "open streams").unwrap(),
        ))
    }

    fn data(e: Event) -> String {
        e.to_string()
    }

    #[tokio::test]
    async fn a_stream_starts_with_a_nudge_and_gets_only_its_own() {
        let h = hub(10);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut sa = h.follow(a).unwrap();
        let mut sb = h.follow(b).unwrap();
        assert!(data(sa.next().await.unwrap().unwrap()).contains("data:changed"));
        assert!(data(sb.next().await.unwrap().unwrap()).contains("retry:3000"));
        h.changed(a);
        // Nudges coalesce: two changes before a read are one nudge.
        h.changed(a);
        assert!(data(sa.next().await.unwrap().unwrap()).contains("changed"));
        let pending = futures::poll!(sb.next());
        assert!(pending.is_pending(), "b was not changed");
        let pending = futures::poll!(sa.next());
        assert!(pending.is_pending(), "two nudges coalesced into one");
        h.subscribed();
        assert!(h.is_listening());
        assert!(sb.next().await.is_some());
    }

    #[tokio::test]
    async fn streams_are_capped_released_and_ended_at_shutdown() {
        let h = hub(2);
        let id = Uuid::new_v4();
        let s1 = h.follow(id).unwrap();
        let mut s2 = h.follow(id).unwrap();
        assert!(h.follow(id).is_none(), "the cap holds");
        drop(s1);
        assert_eq!(h.open_streams(), 1);
        assert_eq!(h.open.get(), 1);
        let _s3 = h.follow(Uuid::new_v4()).unwrap();
        s2.next().await;
        h.close();
        assert!(
            s2.next().await.is_none(),
            "a draining server ends its streams"
        );
        assert!(h.follow(id).is_none());
    }
}
