//! A worker of the webhook dispatcher pool. Each tick claims a batch of due deliveries
//! (`FOR UPDATE SKIP LOCKED` with a lease, safe with several gateway processes on one
//! database), sends them concurrently, signed per Standard Webhooks, and records every
//! attempt. Delivery is at least once: a crash mid-attempt leaves the lease to expire and
//! the delivery is tried again with the same `webhook-id`.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use slog::Logger;

use super::metrics::WebhookMetrics;
use super::schedule::{next_delay, parse_retry_after};
use super::signature::signature_header;
use super::ssrf::{check_url, GuardedResolver};
use crate::config::WebhookSettings;
use crate::store::webhooks::{claim_due, record_attempt, Attempt, AttemptOutcome, Claimed};
use crate::store::{Store, StoreError};
use crate::telemetry::trace;
use crate::worker::Work;

/// The most of a response body that is read (and discarded) to keep the connection reusable.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// One worker of the dispatcher pool.
pub struct Dispatcher {
    store: Store,
    http: reqwest::Client,
    schedule: Vec<Duration>,
    max_attempts: u32,
    allow_private: bool,
    batch: usize,
    per_endpoint: i64,
    idle: Duration,
    lease_seconds: f64,
    metrics: WebhookMetrics,
    log: Logger,
    busy: bool,
    send_traceparent: bool,
}

/// One attempt's result.
struct Sent {
    started: chrono::DateTime<Utc>,
    latency: Duration,
    http_status: Option<u16>,
    error: Option<String>,
    outcome: AttemptOutcome,
    label: &'static str,
    /// The attempt's span, when traced.
    traceparent: Option<String>,
}

impl Dispatcher {
    /// Builds a worker. Fails rather than fall back to a client without the SSRF resolver,
    /// the timeout or the redirect policy.
    pub fn new(
        settings: &WebhookSettings,
        store: Store,
        metrics: WebhookMetrics,
        log: Logger,
    ) -> Result<Self, reqwest::Error> {
        let http = Self::client(settings)?;
        Ok(Self {
            store,
            http,
            schedule: settings.retry_schedule.clone(),
            max_attempts: settings.max_attempts,
            allow_private: settings.allow_private_targets,
            batch: settings.batch_size,
            per_endpoint: i64::from(settings.max_in_flight_per_endpoint.max(1)),
            idle: settings.poll_interval,
            // Short enough that a crashed worker's claims return soon.
            lease_seconds: Self::lease(settings).as_secs_f64(),
            metrics,
            log,
            busy: false,
            send_traceparent: settings.traceparent,
        })
    }

    /// The delivery client: the SSRF guard in its resolver, no redirects, a timeout, and no
    /// proxy unless one is configured explicitly (an environment proxy would resolve target
    /// names itself, around the guard).
    pub fn client(settings: &WebhookSettings) -> Result<reqwest::Client, reqwest::Error> {
        let timeout = settings.request_timeout;
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(std::sync::Arc::new(GuardedResolver {
                allow_private: settings.allow_private_targets,
            }))
            .user_agent(concat!("ctrip-gateway/", env!("CARGO_PKG_VERSION")));
        let builder = match &settings.proxy {
            Some(p) => builder.proxy(reqwest::Proxy::all(p.expose().as_str())?),
            None => builder.no_proxy(),
        };
        builder.build()
    }

    /// Longer than any attempt can take, so a lease never expires under a live attempt.
    pub fn lease(settings: &WebhookSettings) -> Duration {
        settings.request_timeout * 2 + Duration::from_secs(5)
    }

    fn failed(&self, d: &Claimed, retry_after: Option<Duration>) -> AttemptOutcome {
        match next_delay(
            &self.schedule,
            d.attempts + 1,
            self.max_attempts,
            rand::random::<f64>(),
        ) {
            None => AttemptOutcome::Dead,
            Some(delay) => {
                let delay = retry_after.unwrap_or(delay);
                let at = Utc::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::days(1));
                AttemptOutcome::RetryAt(at)
            }
        }
    }

    /// One attempt in its own client span, linked to the span that wrote the event (the
    /// request or tick that changed the payment) and to the request that created the
    /// payment: the delivery runs in another trace, but both stay one click away.
    async fn attempt(&self, d: &Claimed) -> Sent {
        let mut links = trace::link_to(d.event_traceparent.as_deref());
        links.extend(trace::link_to(d.payment_traceparent.as_deref()));
        let cx = trace::start(
            "webhook.deliver",
            SpanKind::Client,
            &Context::current(),
            vec![
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("ctrip.event_id", d.event_id.clone()),
                KeyValue::new("ctrip.attempt", i64::from(d.attempts) + 1),
            ],
            links,
        );
        let traceparent = trace::traceparent(&cx);
        let mut sent = self.send(d, traceparent.as_deref()).await;
        let span = cx.span();
        span.set_attribute(KeyValue::new("ctrip.outcome", sent.label));
        if let Some(code) = sent.http_status {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
        }
        if sent.outcome != AttemptOutcome::Succeeded {
            trace::fail(&cx, sent.label);
        }
        sent.traceparent = traceparent;
        sent
    }

    async fn send(&self, d: &Claimed, traceparent: Option<&str>) -> Sent {
        let started = Utc::now();
        let clock = Instant::now();
        let done = |http_status, error: Option<String>, outcome, label| Sent {
            started,
            latency: clock.elapsed(),
            http_status,
            error,
            outcome,
            label,
            traceparent: None,
        };
        let url = match check_url(&d.url, self.allow_private) {
            Ok(u) => u,
            Err(e) => return done(None, Some(e.to_string()), self.failed(d, None), "refused"),
        };
        let ts = started.timestamp();
        let mut secrets = vec![d.secret.as_str()];
        if let Some(p) = &d.previous_secret {
            secrets.push(p);
        }
        let Ok(signature) = signature_header(&secrets, &d.event_id, ts, d.body.as_bytes()) else {
            return done(
                None,
                Some("malformed endpoint secret".into()),
                AttemptOutcome::Dead,
                "error",
            );
        };
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature);
        if let Some(tp) = traceparent.filter(|_| self.send_traceparent) {
            request = request.header("traceparent", tp);
        }
        let sent = request.body(d.body.clone()).send().await;
        match sent {
            Ok(mut resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, Utc::now()));
                let mut read = 0;
                while let Ok(Some(chunk)) = resp.chunk().await {
                    read += chunk.len();
                    if read > MAX_RESPONSE_BYTES {
                        break;
                    }
                }
                let code = Some(status.as_u16());
                if status.is_success() {
                    done(code, None, AttemptOutcome::Succeeded, "success")
                } else if status.as_u16() == 410 {
                    done(
                        code,
                        Some("410 Gone: endpoint disabled".into()),
                        AttemptOutcome::Gone,
                        "gone",
                    )
                } else {
                    let label = if status.is_server_error() {
                        "http_5xx"
                    } else {
                        "http_4xx"
                    };
                    done(
                        code,
                        Some(format!("HTTP {}", status.as_u16())),
                        self.failed(d, retry_after),
                        label,
                    )
                }
            }
            Err(e) => {
                // reqwest's messages embed the URL; keep only the kind.
                let (label, msg) = if e.is_timeout() {
                    ("timeout", "request timed out")
                } else if e.is_connect() {
                    (
                        "connect_error",
                        "connection failed (or the target was refused by the SSRF guard)",
                    )
                } else {
                    ("error", "request failed")
                };
                done(None, Some(msg.into()), self.failed(d, None), label)
            }
        }
    }

    /// Claims, sends and records one batch; returns how many deliveries it handled.
    pub async fn dispatch_once(&mut self) -> Result<usize, StoreError> {
        let client = self.store.client().await?;
        let claimed = claim_due(
            &client,
            self.batch as i64,
            self.lease_seconds,
            self.per_endpoint,
        )
        .await?;
        drop(client);
        // Anything claimed means more may be due: claim again at once. (A short batch no
        // longer means an empty queue: the per-endpoint cap shortens batches.)
        self.busy = !claimed.is_empty();
        if claimed.is_empty() {
            return Ok(0);
        }
        let results = join_all(claimed.iter().map(|d| self.attempt(d))).await;
        let mut client = self.store.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        for (d, s) in claimed.iter().zip(&results) {
            let attempt = Attempt {
                at: s.started,
                http_status: s.http_status,
                latency_ms: i32::try_from(s.latency.as_millis()).unwrap_or(i32::MAX),
                error: s.error.as_deref(),
                traceparent: s.traceparent.as_deref(),
            };
            if !record_attempt(&tx, d, &attempt, s.outcome).await? {
                slog::info!(self.log, "delivery claimed anew meanwhile; its state is left to the newer claim";
                    "delivery_id" => %d.id, "event_id" => &d.event_id);
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        for (d, s) in claimed.iter().zip(&results) {
            if d.attempts == 0 {
                let lag = (s.started - d.event_created_at).num_milliseconds().max(0);
                self.metrics.dispatch_lag.observe(lag as f64 / 1000.0);
            }
            self.metrics.deliveries.with_label_values(&[s.label]).inc();
            self.metrics
                .duration
                .with_label_values(&[s.label])
                .observe(s.latency.as_secs_f64());
            if matches!(s.outcome, AttemptOutcome::Dead | AttemptOutcome::Gone) {
                self.metrics.dead.inc();
            }
            if s.outcome != AttemptOutcome::Succeeded {
                slog::info!(self.log, "webhook attempt failed";
                    "delivery_id" => %d.id, "event_id" => &d.event_id, "payment_id" => %d.payment_id,
                    "endpoint_id" => %d.endpoint_id, "attempt" => d.attempts + 1,
                    "outcome" => s.label, "error" => s.error.as_deref().unwrap_or(""));
            }
        }
        Ok(claimed.len())
    }
}

impl Work for Dispatcher {
    type Error = StoreError;

    /// Back-to-back while a claim finds work, the poll interval when it finds none.
    fn interval(&self) -> Duration {
        if self.busy {
            Duration::ZERO
        } else {
            self.idle
        }
    }

    async fn tick_once(&mut self) -> Result<(), StoreError> {
        self.dispatch_once().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        crate::config::Settings::load_layers(std::path::Path::new("config"), None, None, false)
            .expect("embedded defaults load")
            .webhooks
    }

    #[test]
    fn the_delivery_client_fails_closed_rather_than_fall_back_to_a_default_one() {
        let mut w = settings();
        assert!(Dispatcher::client(&w).is_ok());
        assert!(
            "http://[::1".parse::<crate::config::ProxyUrl>().is_err(),
            "a proxy URL that cannot be used is refused when the settings load"
        );
        w.proxy = Some("http://127.0.0.1:3128".parse().expect("valid proxy"));
        assert!(Dispatcher::client(&w).is_ok());
    }
}
