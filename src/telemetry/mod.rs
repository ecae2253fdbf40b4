//! Logs (slog, JSON by default), Sentry, and the Prometheus registry with the declaration
//! macro every component's metrics use.
//!
//! Log lines carry `ts`, `level`, `msg` and `module`; callers add `request_id`, `chain`,
//! `actor` or `payment_id` as key-values. Nothing secret is ever passed to a logger: API
//! keys, the mnemonic and RPC URLs stay out of every record.

pub mod metrics;
pub mod trace;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use slog::{o, Drain, FnValue, Level, Logger, Record};

use crate::config::{LogFormat, LogLevel, TelemetrySettings};

/// Where log lines go.
#[derive(Clone)]
pub enum LogSink {
    /// Standard output, through an async drain.
    Stdout,
    /// An in-memory buffer (tests read it back to check what was logged).
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// The slog level of a configured one.
pub fn slog_level(level: LogLevel) -> Level {
    match level {
        LogLevel::Trace => Level::Trace,
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warning => Level::Warning,
        LogLevel::Error => Level::Error,
        LogLevel::Critical => Level::Critical,
    }
}

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.lock() {
            Ok(mut b) => b.extend_from_slice(buf),
            Err(p) => p.into_inner().extend_from_slice(buf),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Flushes buffered log lines when dropped; keep it until the process ends.
pub struct LogGuard(#[allow(dead_code)] Option<slog_async::AsyncGuard>);

/// Builds the root logger for the configured format and level.
pub fn build_logger(settings: &TelemetrySettings, sink: LogSink) -> (Logger, LogGuard) {
    let level = slog_level(settings.log_level);
    let module = FnValue(|r: &Record<'_>| r.module());
    let sentry_on = !settings.sentry_dsn.expose().is_empty();
    match (sink, settings.log_format) {
        (LogSink::Buffer(buf), _) => {
            let json = slog_json::Json::new(BufferWriter(buf))
                .add_default_keys()
                .build();
            let drain = trace::TraceIds(SentryReport {
                inner: Mutex::new(json).ignore_res(),
                on: sentry_on,
            });
            let log = Logger::root(
                drain.filter_level(level).ignore_res(),
                o!("module" => module),
            );
            (log, LogGuard(None))
        }
        (LogSink::Stdout, LogFormat::Json) => {
            let json = slog_json::Json::new(io::stdout())
                .add_default_keys()
                .build();
            let (drain, guard) = slog_async::Async::new(json.ignore_res())
                .chan_size(4096)
                .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
                .build_with_guard();
            let drain = trace::TraceIds(SentryReport {
                inner: drain.ignore_res(),
                on: sentry_on,
            })
            .filter_level(level)
            .ignore_res();
            (
                Logger::root(drain, o!("module" => module)),
                LogGuard(Some(guard)),
            )
        }
        (LogSink::Stdout, LogFormat::Pretty) => {
            let decorator = slog_term::TermDecorator::new().stdout().build();
            let fmt = slog_term::FullFormat::new(decorator).build().ignore_res();
            let (drain, guard) = slog_async::Async::new(fmt)
                .chan_size(4096)
                .build_with_guard();
            let drain = trace::TraceIds(SentryReport {
                inner: drain.ignore_res(),
                on: sentry_on,
            })
            .filter_level(level)
            .ignore_res();
            (
                Logger::root(drain, o!("module" => module)),
                LogGuard(Some(guard)),
            )
        }
    }
}

/// Starts Sentry when a DSN is configured; the guard must live as long as the process.
/// Without `telemetry.sentry_dsn` nothing is started, whatever `SENTRY_DSN` says.
pub fn init_sentry(settings: &TelemetrySettings) -> Option<sentry::ClientInitGuard> {
    let dsn = settings.sentry_dsn.expose();
    if dsn.is_empty() {
        return None;
    }
    let mut options = sentry::ClientOptions::default();
    options.release = sentry::release_name!();
    options.environment = Some(settings.environment.clone().into());
    options.send_default_pii = false;
    Some(sentry::init((dsn.to_string(), options)))
}

/// A drain reporting to Sentry: errors and criticals become events, warnings breadcrumbs.
/// The `chain`, `actor` (or a supervisor's `group`) and `trace_id` of a record become the
/// event's tags. It sits before any asynchronous drain, so the Sentry hub it reports to is
/// the one of the task that logged (a worker's hub carries its chain and actor).
pub struct SentryReport<D> {
    inner: D,
    on: bool,
}

impl<D: Drain> Drain for SentryReport<D> {
    type Ok = D::Ok;
    type Err = D::Err;

    fn log(&self, record: &Record<'_>, values: &slog::OwnedKVList) -> Result<D::Ok, D::Err> {
        if self.on {
            match record.level() {
                Level::Critical | Level::Error => {
                    let mut event = sentry::integrations::slog::event_from_record(record, values);
                    for (from, tag) in [
                        ("chain", "chain"),
                        ("group", "chain"),
                        ("actor", "actor"),
                        ("trace_id", "trace_id"),
                    ] {
                        if let Some(serde_json::Value::String(v)) = event.extra.remove(from) {
                            event.tags.insert(tag.into(), v);
                        }
                    }
                    sentry::capture_event(event);
                }
                Level::Warning => sentry::add_breadcrumb(
                    sentry::integrations::slog::breadcrumb_from_record(record, values),
                ),
                _ => {}
            }
        }
        self.inner.log(record, values)
    }

    fn is_enabled(&self, level: Level) -> bool {
        self.inner.is_enabled(level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_contract_fields() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let settings = TelemetrySettings {
            log_format: LogFormat::Json,
            log_level: LogLevel::Info,
            sentry_dsn: Default::default(),
            sentry_dsn_file: None,
            access_log_level: crate::config::AccessLogLevel(Some(LogLevel::Info)),
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
            inbound_trace: Default::default(),
            environment: "test".into(),
        };
        let (log, _guard) = build_logger(&settings, LogSink::Buffer(buf.clone()));
        slog::info!(log, "hello"; "request_id" => "r1");
        slog::debug!(log, "hidden");
        let text = String::from_utf8(buf.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        let line: serde_json::Value =
            serde_json::from_str(text.lines().next().unwrap_or("{}")).unwrap_or_default();
        for k in ["ts", "level", "msg", "module", "request_id"] {
            assert!(line.get(k).is_some(), "missing {k} in {text}");
        }
        assert_eq!(text.lines().count(), 1);
    }
}
