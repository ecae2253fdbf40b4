//! Distributed tracing through the OpenTelemetry API, exported as OTLP/HTTP (protobuf)
//! when `telemetry.otlp_endpoint` is set and off (no span is even built) otherwise.
//!
//! The active span travels as an `opentelemetry::Context` attached to the future doing the
//! work ([`opentelemetry::context::FutureExt::with_context`]), so code below the API
//! handler or the worker tick (the store writing an outbox event, the RPC client, the
//! logger) finds it with [`Context::current`] without every signature carrying it.
//!
//! Logs: [`TraceIds`] is a drain that runs on the logging thread, before any async drain,
//! and adds `trace_id` and `span_id` to every record written inside a span. Reading the
//! context later, on slog-async's worker thread, would find no span or another one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter,
};
use prometheus::{IntCounter, IntCounterVec};
use slog::{Drain, OwnedKVList, Record, KV};

use crate::config::{InboundTrace, TelemetrySettings};
use crate::telemetry::metrics::cross;

crate::declare_metrics! {
    /// The span exporter's own health: OpenTelemetry reports export failures only to a
    /// `tracing` subscriber, which this service does not run.
    pub struct TraceMetrics() {
        exports: IntCounterVec = "otel_export_total" ["result"],
            "Span batches handed to the OTLP endpoint, by result (ok, error).",
            zero = cross(&[&["ok", "error"]]);
        spans: IntCounter = "otel_exported_spans_total" [],
            "Spans in batches the OTLP endpoint accepted.";
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static TRACER: Mutex<Option<SdkTracer>> = Mutex::new(None);

/// Whether spans are recorded at all. When not, every helper here returns at once.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn tracer() -> Option<SdkTracer> {
    if !enabled() {
        return None;
    }
    TRACER.lock().ok().and_then(|t| t.clone())
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: {0}")]
pub struct TraceInitError(String);

/// The running tracer provider; [`Tracing::shutdown`] flushes what is queued.
#[derive(Clone, Default)]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Starts exporting to `telemetry.otlp_endpoint` (nothing is started without one).
    /// Export runs on the batch processor's own thread: a slow or dead collector costs
    /// dropped spans and an `otel_export_total{result="error"}`, never request time.
    pub fn start(
        settings: &TelemetrySettings,
        metrics: TraceMetrics,
    ) -> Result<Self, TraceInitError> {
        let Some(endpoint) = &settings.otlp_endpoint else {
            return Ok(Self::default());
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TraceInitError(e.to_string()))?;
        let processor = BatchSpanProcessor::builder(Counted {
            inner: exporter,
            metrics,
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(8192)
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.trace_sample_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("ctrip")
                    .with_attributes([
                        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                        KeyValue::new("deployment.environment.name", settings.environment.clone()),
                    ])
                    .build(),
            )
            .build();
        if let Ok(mut t) = TRACER.lock() {
            *t = Some(provider.tracer("ctrip"));
        }
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Self {
            provider: Some(provider),
        })
    }

    /// Exports every finished span now (tests call it before reading the collector).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }

    /// Stops recording and exports what is queued.
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider {
            ENABLED.store(false, Ordering::Relaxed);
            if let Ok(mut t) = TRACER.lock() {
                *t = None;
            }
            let _ = p.shutdown();
        }
    }
}

/// `http://host:4318` becomes `http://host:4318/v1/traces`; a URL with a path is kept.
fn traces_url(endpoint: &url::Url) -> String {
    if endpoint.path().is_empty() || endpoint.path() == "/" {
        let mut u = endpoint.clone();
        u.set_path("/v1/traces");
        u.to_string()
    } else {
        endpoint.to_string()
    }
}

/// Counts each export's result, since the SDK would report it nowhere we can see.
struct Counted<E> {
    inner: E,
    metrics: TraceMetrics,
}

impl<E: std::fmt::Debug> std::fmt::Debug for Counted<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                self.metrics.exports.with_label_values(&["ok"]).inc();
                self.metrics.spans.inc_by(n);
            }
            Err(_) => self.metrics.exports.with_label_values(&["error"]).inc(),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Starts a span named `name` as a child of `parent` (or of nothing: a new trace) and
/// returns the context holding it. Without tracing it returns `parent` unchanged.
pub fn start(
    name: &'static str,
    kind: SpanKind,
    parent: &Context,
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
) -> Context {
    let Some(tracer) = tracer() else {
        return parent.clone();
    };
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .with_links(links)
        .start_with_context(&tracer, parent);
    parent.with_span(span)
}

/// Records, after the fact, a span that began at `started` and ends now, as a child of the
/// current context: for calls (an RPC, a statement) whose timing is already measured.
pub fn record(name: &'static str, kind: SpanKind, started: SystemTime, attributes: Vec<KeyValue>) {
    let Some(tracer) = tracer() else {
        return;
    };
    let mut span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_start_time(started)
        .with_attributes(attributes)
        .start_with_context(&tracer, &Context::current());
    span.end();
}

/// Marks the context's span failed, with a short reason that holds nothing secret.
pub fn fail(cx: &Context, reason: &'static str) {
    cx.span().set_status(Status::error(reason));
}

/// The W3C `traceparent` of the context's span, when it has one.
pub fn traceparent(cx: &Context) -> Option<String> {
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The `traceparent` of the span the current task runs in: what an outbox row stores so
/// the delivery can link back to whatever caused it.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    traceparent(&Context::current())
}

/// Parses a W3C `traceparent`; `None` when absent or malformed.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_string(), value.to_string());
    let cx = TraceContextPropagator::new().extract(&carrier);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// A link to the span `traceparent` names, when it parses.
pub fn link_to(traceparent: Option<&str>) -> Vec<Link> {
    traceparent
        .and_then(parse_traceparent)
        .map(|sc| vec![Link::with_context(sc)])
        .unwrap_or_default()
}

/// Where a request's span hangs, given the caller's `traceparent` and the policy for a
/// public endpoint: a new trace linked to the caller's (`link`), a child of the caller's
/// span (`parent`), or a new trace that ignores it.
pub fn inbound(policy: InboundTrace, traceparent: Option<&str>) -> (Context, Vec<Link>) {
    if !enabled() {
        return (Context::new(), Vec::new());
    }
    match (policy, traceparent.and_then(parse_traceparent)) {
        (InboundTrace::Parent, Some(sc)) => (Context::new().with_remote_span_context(sc), vec![]),
        (InboundTrace::Link, Some(sc)) => (Context::new(), vec![Link::with_context(sc)]),
        _ => (Context::new(), Vec::new()),
    }
}

/// The hex trace id of `cx`'s span, for places that report elsewhere (Sentry).
pub fn trace_id(cx: &Context) -> Option<String> {
    if !enabled() {
        return None;
    }
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// A drain adding `trace_id` and `span_id` to records written inside a recording span.
/// It must sit before any asynchronous drain: it reads the span of the thread that logs.
pub struct TraceIds<D>(pub D);

struct Ids {
    trace_id: String,
    span_id: String,
}

impl KV for Ids {
    fn serialize(&self, _: &Record<'_>, s: &mut dyn slog::Serializer) -> slog::Result {
        s.emit_str("trace_id", &self.trace_id)?;
        s.emit_str("span_id", &self.span_id)
    }
}

impl<D: Drain> Drain for TraceIds<D> {
    type Ok = D::Ok;
    type Err = D::Err;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<D::Ok, D::Err> {
        if !enabled() {
            return self.0.log(record, values);
        }
        let cx = Context::current();
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return self.0.log(record, values);
        }
        let ids = Ids {
            trace_id: sc.trace_id().to_string(),
            span_id: sc.span_id().to_string(),
        };
        let location = slog::RecordLocation {
            file: record.file(),
            line: record.line(),
            column: record.column(),
            function: record.function(),
            module: record.module(),
        };
        let rs = slog::RecordStatic {
            location: &location,
            level: record.level(),
            tag: record.tag(),
        };
        let kv = (record.kv(), ids);
        self.0.log(
            &Record::new(&rs, record.msg(), slog::BorrowedKV(&kv)),
            values,
        )
    }

    fn is_enabled(&self, level: slog::Level) -> bool {
        self.0.is_enabled(level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_garbage_is_refused() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(tp).expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let cx = Context::new().with_remote_span_context(sc);
        assert_eq!(traceparent(&cx).as_deref(), Some(tp));
        for bad in [
            "",
            "00-zz-00-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_otlp_path_is_added_to_a_bare_endpoint_only() {
        let u = |s: &str| url::Url::parse(s).expect("url");
        assert_eq!(traces_url(&u("http://c:4318")), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url(&u("http://c:4318/custom")),
            "http://c:4318/custom"
        );
    }
}
