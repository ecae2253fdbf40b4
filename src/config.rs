//! Layered configuration.
//!
//! Layers, later wins: the embedded `config/default.toml`, then `config/default.toml` and
//! `config/{CTRIP_ENV}.toml` from the configuration directory (`CTRIP_CONFIG_DIR`, default
//! `config`) when present, then the file given with `--config`, then `CTRIP__SECTION__KEY`
//! environment variables. Secrets may come from `*_file` keys. [`Settings::validate`] turns
//! every unusable value into a one-line [`ConfigError`] that names the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use std::time::Duration;

use alloy::primitives::Address;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The defaults compiled into the binary, so that `ctrip` runs from any directory.
pub mod sealed;

const EMBEDDED_DEFAULT: &str = include_str!("../config/default.toml");

/// A configuration problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is missing or unusable.
    #[error("configuration error: {key}: {problem}")]
    Invalid {
        /// The dotted key, e.g. `chains[0].rpc_urls`.
        key: String,
        /// What is wrong, without echoing secret values.
        problem: String,
    },
    /// The layered sources could not be read or deserialised.
    #[error("configuration error: {0}")]
    Load(String),
}

impl ConfigError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// A secret string: never printed by `Debug` or `Serialize`, zeroed in memory when dropped.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }
    /// The secret itself; callers must not log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    fn is_empty(&self) -> bool {
        self.expose().trim().is_empty()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_empty() {
            s.serialize_str("")
        } else {
            s.serialize_str("[redacted]")
        }
    }
}

/// Durations written as whole milliseconds (`*_ms` keys) or seconds (`*_seconds` keys).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub mod ms {
        use super::*;
        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            u64::deserialize(d).map(Duration::from_millis)
        }
    }

    pub mod secs {
        use super::*;
        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(d.as_secs())
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            u64::deserialize(d).map(Duration::from_secs)
        }
    }

    pub mod opt_ms {
        use super::*;
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::ms::serialize(d, s),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<u64>::deserialize(d).map(|v| v.map(Duration::from_millis))
        }
    }

    pub mod vec_ms {
        use super::*;
        use serde::ser::SerializeSeq;
        pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for d in v {
                seq.serialize_element(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX))?;
            }
            seq.end()
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
            Vec::<u64>::deserialize(d).map(|v| v.into_iter().map(Duration::from_millis).collect())
        }
    }
}

/// A value parsed from its text form at load time (`FromStr`), shown as that text again.
fn parse_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

const SOCKET_ADDR: &str = "must be host:port with a literal IP, e.g. 127.0.0.1:8080";

fn parse_socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(|_| serde::de::Error::custom(SOCKET_ADDR))
}

fn parse_opt_socket_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|t| t.parse().map_err(|_| serde::de::Error::custom(SOCKET_ADDR)))
        .transpose()
}

/// A log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something an operator should look at.
    Warning,
    /// A failure.
    Error,
    /// A failure that needs action now.
    Critical,
}

impl LogLevel {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }
}

impl FromStr for LogLevel {
    type Err = &'static str;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "info" => Self::Info,
            "warn" | "warning" => Self::Warning,
            "error" => Self::Error,
            "critical" => Self::Critical,
            _ => return Err("must be one of trace, debug, info, warning, error, critical"),
        })
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_text(d)
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The access log's level, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLogLevel(pub Option<LogLevel>);

impl FromStr for AccessLogLevel {
    type Err = &'static str;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        name.parse()
            .map(|l| Self(Some(l)))
            .map_err(|_| "must be one of trace, debug, info, warning, error, critical, off")
    }
}

impl<'de> Deserialize<'de> for AccessLogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_text(d)
    }
}

impl Serialize for AccessLogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.map_or("off", LogLevel::as_str))
    }
}

/// All settings of one gateway process.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP server.
    pub server: ServerSettings,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// The HD wallet that derives deposit addresses.
    pub wallet: WalletSettings,
    /// Payment defaults.
    pub payments: PaymentSettings,
    /// Webhook delivery.
    pub webhooks: WebhookSettings,
    /// Logs and error reporting.
    pub telemetry: TelemetrySettings,
    /// Operator endpoints.
    pub admin: AdminSettings,
    /// The actor tree: restart policies, watchdog, intervals.
    pub supervision: SupervisionSettings,
    /// The chains this gateway watches.
    #[serde(default)]
    pub chains: Vec<ChainSettings>,
    /// Where signatures come from: a separate `ctrip signer`, or this process.
    #[serde(default)]
    pub signer: SignerSettings,
}

/// `[signer]`: read by both sides. The gateway connects to `socket` (unset: it signs
/// in-process with `wallet.mnemonic`); `ctrip signer` listens there and uses the rest.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignerSettings {
    /// The signer's Unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Gateway side: a call to the signer gives up after this.
    #[serde(
        rename = "timeout_ms",
        with = "duration::ms",
        default = "default_signer_timeout"
    )]
    pub timeout: Duration,
    /// Signer side: the append-only audit log of every request and decision.
    #[serde(default = "default_audit_log")]
    pub audit_log: PathBuf,
    /// Signer side: treasuries allowed besides each chain's own, by chain name (merchants'
    /// own treasuries must be listed here to be swept to).
    #[serde(default)]
    pub treasuries: std::collections::BTreeMap<String, Vec<Address>>,
    /// Signer side: serve `/health` and `/metrics` here.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "parse_opt_socket_addr"
    )]
    pub ops_bind: Option<SocketAddr>,
}

impl Default for SignerSettings {
    fn default() -> Self {
        Self {
            socket: None,
            timeout: default_signer_timeout(),
            audit_log: default_audit_log(),
            treasuries: Default::default(),
            ops_bind: None,
        }
    }
}

fn default_signer_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_audit_log() -> PathBuf {
    PathBuf::from("signer-audit.log")
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Listen address, e.g. `127.0.0.1:8080`; port 0 picks a free port.
    #[serde(deserialize_with = "parse_socket_addr")]
    pub bind: SocketAddr,
    /// Largest accepted request body.
    pub request_body_limit_bytes: u64,
    /// A request head must arrive within this (the connection is closed otherwise); it also
    /// bounds how long a keep-alive connection waits for its next request.
    #[serde(rename = "header_read_timeout_ms", with = "duration::ms")]
    pub header_read_timeout: Duration,
    /// A request body must arrive within this (408 otherwise).
    #[serde(rename = "request_timeout_ms", with = "duration::ms")]
    pub request_timeout: Duration,
    /// A connection with no traffic either way for this long is closed.
    #[serde(rename = "idle_timeout_ms", with = "duration::ms")]
    pub idle_timeout: Duration,
    /// The largest request head accepted (431 beyond); it bounds per-connection memory.
    pub max_header_bytes: usize,
    /// Concurrent connections at most; past it a new connection gets 503 and is closed.
    pub max_connections: usize,
    /// A separate listen address for `/metrics` and `/health/detail`; when set they are
    /// served only there (`/health/live` and `/health/ready` stay on both).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "parse_opt_socket_addr"
    )]
    pub ops_bind: Option<SocketAddr>,
    /// How long a verified API key is trusted from memory at most. Revocations reach every
    /// replica through the database at once; this bounds a revocation whose notice was
    /// lost. Zero: every request reads its key from the database.
    #[serde(rename = "api_key_cache_ttl_ms", with = "duration::ms")]
    pub api_key_cache_ttl: Duration,
    /// Payer pages following their payment live at once at most (each holds a
    /// connection); past it a page gets 503 for its event stream and polls instead. Zero:
    /// every page polls.
    pub max_event_streams: usize,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL; it usually holds a password, so it is a secret.
    #[serde(default, serialize_with = "serialize_db_url")]
    pub url: Secret,
    /// Read `url` from this file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// Most connections the pool opens.
    pub pool_size: usize,
    /// Server-side `statement_timeout` for every connection.
    #[serde(rename = "statement_timeout_ms", with = "duration::ms")]
    pub statement_timeout: Duration,
    /// How long opening a connection may take.
    #[serde(rename = "connect_timeout_ms", with = "duration::ms")]
    pub connect_timeout: Duration,
    /// How long a request may wait for a free pooled connection before it fails as
    /// unavailable (counted in `ctrip_db_pool_timeouts_total{kind="wait"}`).
    #[serde(
        rename = "pool_wait_timeout_ms",
        with = "duration::ms",
        default = "default_pool_wait"
    )]
    pub pool_wait_timeout: Duration,
    /// A statement slower than this writes a `slow_query` warning (its name, never its
    /// parameters).
    #[serde(
        rename = "slow_query_ms",
        with = "duration::ms",
        default = "default_slow_query"
    )]
    pub slow_query: Duration,
}

fn default_pool_wait() -> Duration {
    Duration::from_secs(5)
}

fn default_slow_query() -> Duration {
    Duration::from_millis(500)
}

/// `[wallet]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WalletSettings {
    /// BIP-39 mnemonic.
    #[serde(default)]
    pub mnemonic: Secret,
    /// Read `mnemonic` from this file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnemonic_file: Option<PathBuf>,
    /// Or open it from this sealed file (`ctrip signer seal-mnemonic` writes one) with
    /// `seal_passphrase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnemonic_sealed_file: Option<PathBuf>,
    /// Account extended public keys pinned by the operator (`ctrip signer account-xpub`
    /// prints them), by merchant account number: a watch-only gateway derives those
    /// accounts' addresses from these and refuses a signer or database that disagrees.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub account_xpubs: std::collections::BTreeMap<String, String>,
    /// The passphrase of `mnemonic_sealed_file`.
    #[serde(default)]
    pub seal_passphrase: Secret,
    /// Read `seal_passphrase` from this file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_passphrase_file: Option<PathBuf>,
    /// Optional BIP-39 passphrase.
    #[serde(default)]
    pub passphrase: Secret,
}

/// `[payments]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettings {
    /// `expires_in` when a create request gives none.
    #[serde(rename = "default_expires_in_seconds", with = "duration::secs")]
    pub default_expires_in: Duration,
    /// Largest `expires_in` a merchant may ask for.
    #[serde(rename = "max_expires_in_seconds", with = "duration::secs")]
    pub max_expires_in: Duration,
    /// How long an expired payment's address stays watched for late funds.
    #[serde(rename = "late_funds_window_seconds", with = "duration::secs")]
    pub late_funds_window: Duration,
    /// Derivation indexes a replica reserves per merchant at a time, so that creating a
    /// payment does not wait for the index sequence. Indexes a stopped process had
    /// reserved and not used are skipped, never reused.
    pub address_reservation: u32,
}

/// `[webhooks]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Dispatcher pool size.
    pub workers: usize,
    /// Timeout of one delivery attempt.
    #[serde(rename = "request_timeout_ms", with = "duration::ms")]
    pub request_timeout: Duration,
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
    /// Allow loopback/private targets (dev and tests only).
    pub allow_private_targets: bool,
    /// Delay after each failed attempt, in milliseconds (the last entry repeats).
    #[serde(rename = "retry_schedule_ms", with = "duration::vec_ms")]
    pub retry_schedule: Vec<Duration>,
    /// How often an idle dispatcher looks for due deliveries.
    #[serde(rename = "poll_interval_ms", with = "duration::ms")]
    pub poll_interval: Duration,
    /// Deliveries one worker claims and sends concurrently per tick.
    pub batch_size: usize,
    /// Default grace period of a secret rotation.
    #[serde(rename = "rotation_grace_seconds", with = "duration::secs")]
    pub rotation_grace: Duration,
    /// `webhooks:oldestPendingAge` turns `warn` past this.
    #[serde(rename = "backlog_warn_seconds", with = "duration::secs")]
    pub backlog_warn: Duration,
    /// Attempts in flight to one endpoint at most, across the pool.
    pub max_in_flight_per_endpoint: u32,
    /// Ports a webhook URL may name: single ports and `low-high` ranges.
    pub allowed_ports: PortPolicy,
    /// Webhook endpoints one merchant may have (deleted ones do not count).
    pub max_endpoints_per_merchant: u32,
    /// Whether deliveries carry a W3C `traceparent` naming the attempt's span (the
    /// signature covers the id, timestamp and body only, so it is unaffected).
    #[serde(default = "default_true")]
    pub traceparent: bool,
    /// An explicit HTTP(S) proxy for deliveries. Unset: no proxy, whatever `HTTP_PROXY` and
    /// `HTTPS_PROXY` say (a proxy resolves names itself, out of the SSRF guard's sight).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "parse_opt_text"
    )]
    pub proxy: Option<ProxyUrl>,
}

/// The ports a webhook URL may name (by default 80, 443 and every port from 1024), so the
/// attempt log cannot be used to scan the well-known services of a host. Written as a list
/// of single ports and `low-high` ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPolicy(Vec<(u16, u16)>);

impl<'de> Deserialize<'de> for PortPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(d)?;
        Self::parse(&entries).ok_or_else(|| {
            serde::de::Error::custom(
                "must be a list of ports or ranges such as \"80\", \"1024-65535\"",
            )
        })
    }
}

impl Serialize for PortPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        entries.serialize(s)
    }
}

impl PortPolicy {
    /// Parses `"80"`, `"1024-65535"` entries; `None` if one is malformed.
    pub fn parse(entries: &[String]) -> Option<Self> {
        entries
            .iter()
            .map(|e| match e.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                    (a <= b).then_some((a, b))
                }
                None => e.trim().parse().ok().map(|p| (p, p)),
            })
            .collect::<Option<Vec<_>>>()
            .map(Self)
    }

    /// Whether `port` is allowed.
    pub fn allows(&self, port: u16) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&port))
    }
}

/// `[telemetry]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `json` or `pretty`.
    pub log_format: LogFormat,
    /// `trace`, `debug`, `info`, `warning`, `error` or `critical`.
    pub log_level: LogLevel,
    /// Sentry DSN; errors go to Sentry when set.
    #[serde(default)]
    pub sentry_dsn: Secret,
    /// Read `sentry_dsn` from this file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentry_dsn_file: Option<PathBuf>,
    /// The level of the one access-log line every HTTP request writes (a log level, or
    /// `off`).
    #[serde(default = "default_access_log_level")]
    pub access_log_level: AccessLogLevel,
    /// Where spans go, as OTLP/HTTP protobuf (`http://collector:4318`; `/v1/traces` is
    /// added to a bare host). Unset: no span is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<url::Url>,
    /// The share of new traces recorded (a caller's sampled flag is honoured under
    /// `inbound_trace = "parent"`).
    #[serde(default = "default_sample_ratio")]
    pub trace_sample_ratio: f64,
    /// What an incoming `traceparent` on the HTTP API does.
    #[serde(default)]
    pub inbound_trace: InboundTrace,
    /// The deployment's name in Sentry events and span resources.
    #[serde(default = "default_environment")]
    pub environment: String,
}

fn default_true() -> bool {
    true
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_environment() -> String {
    "production".into()
}

/// What an incoming W3C `traceparent` on the public API does.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InboundTrace {
    /// A new trace, linked to the caller's: a client cannot choose our trace ids or
    /// sampling, yet the two traces stay connected.
    #[default]
    Link,
    /// The request's span is a child of the caller's (for trusted callers only).
    Parent,
    /// The caller's context is dropped.
    Ignore,
}

fn default_access_log_level() -> AccessLogLevel {
    AccessLogLevel(Some(LogLevel::Info))
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line.
    Json,
    /// Human-readable terminal output.
    Pretty,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token for `/admin/v1/*`.
    #[serde(default)]
    pub token: Secret,
    /// Read `token` from this file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// `[supervision]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionSettings {
    /// Run the actor tree (false for API-only processes and API tests).
    pub enabled: bool,
    /// How often supervisors look for stalled children.
    #[serde(rename = "watchdog_interval_ms", with = "duration::ms")]
    pub watchdog_interval: Duration,
    /// A worker with no progress for this long is killed and restarted; 0 derives it per
    /// chain as max(30 s, 10 ticks).
    #[serde(rename = "stall_timeout_ms", with = "duration::ms")]
    pub stall_timeout: Duration,
    /// Worker restart backoff, first delay.
    #[serde(rename = "restart_backoff_min_ms", with = "duration::ms")]
    pub restart_backoff_min: Duration,
    /// Worker restart backoff, cap.
    #[serde(rename = "restart_backoff_max_ms", with = "duration::ms")]
    pub restart_backoff_max: Duration,
    /// A chain melts down after more than this many worker restarts ...
    pub chain_max_restarts: usize,
    /// ... within this window; the root then retries the whole chain slowly.
    #[serde(rename = "chain_restart_window_ms", with = "duration::ms")]
    pub chain_restart_window: Duration,
    /// Backoff of the root's retries of a melted-down chain, first delay.
    #[serde(rename = "chain_retry_min_ms", with = "duration::ms")]
    pub chain_retry_min: Duration,
    /// Backoff of the root's retries of a melted-down chain, cap.
    #[serde(rename = "chain_retry_max_ms", with = "duration::ms")]
    pub chain_retry_max: Duration,
    /// How long an actor may take to stop before it is killed.
    #[serde(rename = "shutdown_timeout_ms", with = "duration::ms")]
    pub shutdown_timeout: Duration,
    /// RPC request timeout.
    #[serde(rename = "rpc_timeout_ms", with = "duration::ms")]
    pub rpc_timeout: Duration,
    /// A failed tick is retried after this delay, doubling per consecutive failure ...
    #[serde(rename = "tick_retry_min_ms", with = "duration::ms")]
    pub tick_retry_min: Duration,
    /// ... up to this cap, whatever the worker's own interval (a dead RPC never spins).
    #[serde(rename = "tick_retry_max_ms", with = "duration::ms")]
    pub tick_retry_max: Duration,
    /// How often the idempotency-key purge runs; keys older than a day are deleted.
    #[serde(rename = "idempotency_purge_interval_ms", with = "duration::ms")]
    pub idempotency_purge_interval: Duration,
    /// How long a chain lease lasts unless renewed (a dead leader's chains move after it).
    #[serde(
        rename = "lease_ttl_ms",
        with = "duration::ms",
        default = "default_lease_ttl"
    )]
    pub lease_ttl: Duration,
    /// How often a leader renews its chain leases.
    #[serde(
        rename = "lease_renew_ms",
        with = "duration::ms",
        default = "default_lease_renew"
    )]
    pub lease_renew: Duration,
    /// How often a replica tries to take the leases it does not hold.
    #[serde(
        rename = "lease_poll_ms",
        with = "duration::ms",
        default = "default_lease_poll"
    )]
    pub lease_poll: Duration,
    /// This process's name in the lease table; unset: host name, process id and a random
    /// suffix (unique per start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

fn default_lease_renew() -> Duration {
    Duration::from_secs(2)
}

fn default_lease_poll() -> Duration {
    Duration::from_millis(500)
}

/// Where a fresh scan cursor begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartBlock {
    /// The chain head at first start.
    Latest,
    /// A fixed block number.
    Number(u64),
}

impl<'de> Deserialize<'de> for StartBlock {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Self::Number(n)),
            Raw::Text(t) if t == "latest" => Ok(Self::Latest),
            Raw::Text(t) => t
                .parse()
                .map(Self::Number)
                .map_err(|_| serde::de::Error::custom("expected \"latest\" or a block number")),
        }
    }
}

impl Serialize for StartBlock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Latest => s.serialize_str("latest"),
            Self::Number(n) => s.serialize_u64(*n),
        }
    }
}

/// An http(s) URL with a host, checked once at load time.
fn http_url(text: &str) -> Result<url::Url, &'static str> {
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u),
        _ => Err("must be an http(s) URL"),
    }
}

/// An RPC endpoint URL. URLs often embed provider keys, so only the host is ever shown.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcUrl(url::Url);

impl RpcUrl {
    /// Parses an http(s) URL.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        http_url(text).map(Self)
    }
    /// The full URL, for the HTTP client only.
    pub fn expose(&self) -> &url::Url {
        &self.0
    }
    /// `host[:port]`, safe for logs, health output and metrics.
    pub fn host(&self) -> String {
        match (self.0.host_str(), self.0.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => "invalid-url".into(),
        }
    }
}

impl FromStr for RpcUrl {
    type Err = &'static str;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Debug for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.host())
    }
}

impl fmt::Display for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host())
    }
}

impl<'de> Deserialize<'de> for RpcUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_text(d)
    }
}

impl Serialize for RpcUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.host())
    }
}

/// The webhook proxy's URL (http or https). It may carry credentials, so only the host is
/// shown.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(url::Url);

impl ProxyUrl {
    /// The full URL, for the HTTP client only.
    pub fn expose(&self) -> &url::Url {
        &self.0
    }
}

impl FromStr for ProxyUrl {
    type Err = &'static str;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        url::Url::parse(text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .map(Self)
            .ok_or("must be an http or https URL")
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.host_str().unwrap_or(""))
    }
}

impl Serialize for ProxyUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.host_str().unwrap_or(""))
    }
}

/// Like [`parse_text`], for an optional value.
fn parse_opt_text<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// `[[chains]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSettings {
    /// Label used in the API, metrics and health.
    pub name: String,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Several URLs give failover.
    pub rpc_urls: Vec<RpcUrl>,
    /// Symbol of the native asset (`ETH`, `POL`, ...).
    #[serde(default = "default_native_symbol")]
    pub native_symbol: String,
    /// Default confirmations for payments on this chain.
    pub confirmations: u32,
    /// Expected block interval.
    #[serde(rename = "block_time_ms", with = "duration::ms")]
    pub block_time: Duration,
    /// Scanner and confirmer tick; defaults to `block_time_ms` (within 250 ms..15 s).
    #[serde(
        rename = "poll_interval_ms",
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::opt_ms"
    )]
    pub poll_interval: Option<Duration>,
    /// An endpoint whose head trails the best by more than this is avoided.
    #[serde(default = "default_max_head_lag")]
    pub max_head_lag_blocks: u64,
    /// Most blocks scanned per tick (a provider refusing a log range that large gets it
    /// split).
    #[serde(default = "default_scan_batch")]
    pub scan_batch_blocks: u64,
    /// Where a fresh cursor begins.
    #[serde(default = "default_start_block")]
    pub start_block: StartBlock,
    /// Where swept funds go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub treasury: Option<Address>,
    /// ERC-20 tokens accepted on this chain.
    #[serde(default)]
    pub tokens: Vec<TokenSettings>,
    /// How confirmed funds are swept to `treasury`.
    #[serde(default)]
    pub sweep: SweepSettings,
}

/// `[chains.sweep]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSettings {
    /// Sweep only funds worth at least this many times the fee (10: the fee is at most a
    /// tenth of the value) ...
    #[serde(default = "default_fee_multiple")]
    pub fee_multiple: u32,
    /// ... or funds older than this that are still worth more than the fee.
    #[serde(
        rename = "max_age_seconds",
        with = "duration::secs",
        default = "default_sweep_max_age"
    )]
    pub max_age: Duration,
    /// The most a sweep offers per gas, in wei; when the network asks more, sweeps wait.
    #[serde(default = "default_max_fee_per_gas")]
    pub max_fee_per_gas_wei: u64,
    /// A sweep transaction with no receipt this long after it was signed is replaced with
    /// higher fees (wall-clock, so it fires even when no block comes); default three block
    /// times.
    #[serde(
        rename = "bump_after_ms",
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::opt_ms"
    )]
    pub bump_after: Option<Duration>,
    /// Token sweeps through an EIP-7702 delegate, batched: `auto` (if the chain supports
    /// EIP-7702, which is probed once), `on` or `off` (seeding instead).
    #[serde(default)]
    pub eip7702: Eip7702Mode,
    /// The L1 data fee an OP-stack chain adds to every transaction: `op` asks the
    /// `GasPriceOracle` predeploy for its upper bound; `none` (default) for other chains.
    #[serde(default)]
    pub l1_fee: L1FeeMode,
}

/// Whether transactions pay an L1 data fee on top of gas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L1FeeMode {
    /// No L1 fee (L1 chains, and L2s whose gas estimate includes it).
    #[default]
    None,
    /// OP-stack: `GasPriceOracle.getL1FeeUpperBound` at `0x420…000F`.
    Op,
}

/// Whether token sweeps use EIP-7702.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Eip7702Mode {
    /// Probe the chain once.
    #[default]
    Auto,
    /// Always.
    On,
    /// Never: tokens are swept by seeding.
    Off,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            fee_multiple: default_fee_multiple(),
            max_age: default_sweep_max_age(),
            max_fee_per_gas_wei: default_max_fee_per_gas(),
            bump_after: None,
            eip7702: Eip7702Mode::Auto,
            l1_fee: L1FeeMode::None,
        }
    }
}

fn default_fee_multiple() -> u32 {
    10
}

fn default_sweep_max_age() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_max_fee_per_gas() -> u64 {
    // 500 gwei.
    500_000_000_000
}

impl ChainSettings {
    /// How long a payment may take from its first detection to confirmation and still
    /// count as on time: the confirmations at the nominal block time, plus a minute of
    /// grace for polling and node lag.
    pub fn confirmation_budget(&self) -> Duration {
        self.block_time * self.confirmations + Duration::from_secs(60)
    }

    /// How often the chain's workers tick.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval.unwrap_or_else(|| {
            self.block_time
                .clamp(Duration::from_millis(250), Duration::from_secs(15))
        })
    }
}

fn default_max_head_lag() -> u64 {
    5
}

fn default_scan_batch() -> u64 {
    500
}

fn default_native_symbol() -> String {
    "ETH".into()
}

fn default_start_block() -> StartBlock {
    StartBlock::Latest
}

/// `[[chains.tokens]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Ticker, unique on its chain.
    pub symbol: String,
    /// Contract address.
    pub address: Address,
    /// ERC-20 decimals.
    pub decimals: u8,
    /// Token funds below this many raw units wait for more (tokens have no price here, so
    /// the fee rule cannot judge them), unless older than the chain's sweep `max_age`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "parse_opt_text"
    )]
    pub min_sweep_raw: Option<alloy::primitives::U256>,
}

fn serialize_db_url<S: Serializer>(url: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_db_url(url.expose()))
}

/// Shows a database URL with its password replaced, for `config check` and logs.
pub fn redact_db_url(raw: &str) -> String {
    if raw.is_empty() {
        return String::new();
    }
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("[redacted]"));
            }
            u.to_string()
        }
        Err(_) => "[unparseable]".into(),
    }
}

impl Settings {
    /// Loads every layer, resolves `*_file` secrets and validates.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let dir = std::env::var("CTRIP_CONFIG_DIR").unwrap_or_else(|_| "config".into());
        let env = std::env::var("CTRIP_ENV").ok();
        let mut settings = Self::load_layers(Path::new(&dir), env.as_deref(), config_file, true)?;
        settings.resolve_secret_files()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Builds the layered settings without resolving files or validating; tests use it to
    /// start from the shipped defaults and then override fields.
    pub fn load_layers(
        dir: &Path,
        env: Option<&str>,
        config_file: Option<&Path>,
        with_env_vars: bool,
    ) -> Result<Self, ConfigError> {
        use config::{Config, Environment, File, FileFormat};
        let mut b = Config::builder()
            .add_source(File::from_str(EMBEDDED_DEFAULT, FileFormat::Toml))
            .add_source(File::from(dir.join("default.toml")).required(false));
        if let Some(env) = env {
            b = b.add_source(File::from(dir.join(format!("{env}.toml"))).required(false));
        }
        if let Some(f) = config_file {
            if !f.exists() {
                return Err(ConfigError::invalid(
                    "--config",
                    format!("file {} does not exist", f.display()),
                ));
            }
            b = b.add_source(File::from(f));
        }
        if with_env_vars {
            b = b.add_source(
                Environment::with_prefix("CTRIP")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            );
        }
        let cfg = b.build().map_err(|e| ConfigError::Load(one_line(&e)))?;
        cfg.try_deserialize()
            .map_err(|e| ConfigError::Load(one_line(&e)))
    }

    /// Reads `*_file` secrets; a key may be given directly or by file, not both.
    pub fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        fn resolve(
            value: &mut Secret,
            file: &Option<PathBuf>,
            key: &str,
        ) -> Result<(), ConfigError> {
            let Some(path) = file else { return Ok(()) };
            if !value.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}_file"),
                    format!("set either {key} or {key}_file, not both"),
                ));
            }
            // The file's bytes are a secret too: zeroed once copied.
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(
                    format!("{key}_file"),
                    format!("cannot read {}: {}", path.display(), e.kind()),
                )
            })?);
            *value = Secret::new(text.trim().to_string());
            Ok(())
        }
        resolve(
            &mut self.database.url,
            &self.database.url_file,
            "database.url",
        )?;
        resolve(
            &mut self.wallet.mnemonic,
            &self.wallet.mnemonic_file,
            "wallet.mnemonic",
        )?;
        resolve(
            &mut self.wallet.seal_passphrase,
            &self.wallet.seal_passphrase_file,
            "wallet.seal_passphrase",
        )?;
        if let Some(path) = &self.wallet.mnemonic_sealed_file {
            if !self.wallet.mnemonic.is_empty() {
                return Err(ConfigError::invalid(
                    "wallet.mnemonic_sealed_file",
                    "set either wallet.mnemonic (or its file) or wallet.mnemonic_sealed_file, not both",
                ));
            }
            if self.wallet.seal_passphrase.is_empty() {
                return Err(ConfigError::invalid(
                    "wallet.seal_passphrase",
                    "missing: wallet.mnemonic_sealed_file needs it (or wallet.seal_passphrase_file)",
                ));
            }
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(
                    "wallet.mnemonic_sealed_file",
                    format!("cannot read {}: {}", path.display(), e.kind()),
                )
            })?;
            let words = sealed::open(&text, self.wallet.seal_passphrase.expose())
                .map_err(|e| ConfigError::invalid("wallet.mnemonic_sealed_file", e.to_string()))?;
            self.wallet.mnemonic = Secret::new(words.as_str());
            // The passphrase has done its work; it is not kept.
            self.wallet.seal_passphrase = Secret::default();
        }
        resolve(&mut self.admin.token, &self.admin.token_file, "admin.token")?;
        resolve(
            &mut self.telemetry.sentry_dsn,
            &self.telemetry.sentry_dsn_file,
            "telemetry.sentry_dsn",
        )?;
        Ok(())
    }

    fn validate_mnemonic(&self) -> Result<(), ConfigError> {
        if self.wallet.mnemonic.is_empty() {
            return Err(ConfigError::invalid(
                "wallet.mnemonic",
                "missing (set it, CTRIP__WALLET__MNEMONIC or wallet.mnemonic_file)",
            ));
        }
        if bip39::Mnemonic::parse_normalized(self.wallet.mnemonic.expose()).is_err() {
            return Err(ConfigError::invalid(
                "wallet.mnemonic",
                "not a valid BIP-39 English mnemonic",
            ));
        }
        Ok(())
    }

    /// Loads the settings of `ctrip signer`: the mnemonic, the socket and the chains'
    /// rules; the gateway's database and admin token are not its business.
    pub fn load_for_signer(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let dir = std::env::var("CTRIP_CONFIG_DIR").unwrap_or_else(|_| "config".into());
        let env = std::env::var("CTRIP_ENV").ok();
        let mut settings = Self::load_layers(Path::new(&dir), env.as_deref(), config_file, true)?;
        settings.resolve_secret_files()?;
        settings.validate_signer()?;
        Ok(settings)
    }

    /// Checks what `ctrip signer` needs.
    pub fn validate_signer(&self) -> Result<(), ConfigError> {
        self.validate_mnemonic()?;
        if self.signer.socket.is_none() {
            return Err(ConfigError::invalid(
                "signer.socket",
                "missing: the Unix socket the signer listens on",
            ));
        }
        let names: Vec<&str> = self.chains.iter().map(|c| c.name.as_str()).collect();
        if let Some(chain) = self
            .signer
            .treasuries
            .keys()
            .find(|k| !names.contains(&k.as_str()))
        {
            return Err(ConfigError::invalid(
                "signer.treasuries",
                format!("names chain {chain}, which is not configured"),
            ));
        }
        Ok(())
    }

    /// Checks every value; the first problem is returned as a one-line error naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.request_body_limit_bytes < 1024 {
            return Err(ConfigError::invalid(
                "server.request_body_limit_bytes",
                "must be at least 1024",
            ));
        }
        if self.database.url.is_empty() {
            return Err(ConfigError::invalid(
                "database.url",
                "missing (set it, CTRIP__DATABASE__URL or database.url_file)",
            ));
        }
        tokio_postgres::Config::from_str(self.database.url.expose()).map_err(|_| {
            ConfigError::invalid(
                "database.url",
                "not a valid PostgreSQL URL (postgres://user:password@host:port/db)",
            )
        })?;
        let sv = &self.supervision;
        if sv.lease_renew.is_zero() || sv.lease_poll.is_zero() || sv.lease_ttl < sv.lease_renew * 2
        {
            return Err(ConfigError::invalid(
                "supervision.lease_ttl_ms",
                "must be at least twice supervision.lease_renew_ms (and both, with lease_poll_ms, above 0)",
            ));
        }
        if !(0.0..=1.0).contains(&self.telemetry.trace_sample_ratio) {
            return Err(ConfigError::invalid(
                "telemetry.trace_sample_ratio",
                "must be between 0 and 1",
            ));
        }
        if self
            .telemetry
            .otlp_endpoint
            .as_ref()
            .is_some_and(|u| !matches!(u.scheme(), "http" | "https"))
        {
            return Err(ConfigError::invalid(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        if self.database.pool_size == 0 || self.database.pool_size > 1000 {
            return Err(ConfigError::invalid(
                "database.pool_size",
                "must be between 1 and 1000",
            ));
        }
        for (account, xpub) in &self.wallet.account_xpubs {
            if account.parse::<u32>().map_or(true, |a| a >= 0x7fff_ffff) {
                return Err(ConfigError::invalid(
                    "wallet.account_xpubs",
                    format!("{account} is not a merchant account number"),
                ));
            }
            let depth = bip32::XPub::from_str(xpub).map(|k| k.attrs().depth);
            if depth.ok() != Some(4) {
                return Err(ConfigError::invalid(
                    "wallet.account_xpubs",
                    format!("account {account}: not an account's external-chain xpub (m/44'/60'/{account}'/0)"),
                ));
            }
        }
        if self.signer.socket.is_some() {
            // Watch-only: the keys live in the signer process alone.
            if !self.wallet.mnemonic.is_empty()
                || self.wallet.mnemonic_file.is_some()
                || self.wallet.mnemonic_sealed_file.is_some()
            {
                return Err(ConfigError::invalid(
                    "wallet.mnemonic",
                    "must not be set when signer.socket is: only the signer holds it",
                ));
            }
        } else {
            self.validate_mnemonic()?;
        }
        if self.admin.token.expose().len() < 16 {
            return Err(ConfigError::invalid(
                "admin.token",
                "missing or shorter than 16 characters (set it, CTRIP__ADMIN__TOKEN or admin.token_file)",
            ));
        }
        let p = &self.payments;
        if p.max_expires_in > Duration::from_secs(366 * 86_400) {
            return Err(ConfigError::invalid(
                "payments.max_expires_in_seconds",
                "must be at most one year (31622400)",
            ));
        }
        if p.default_expires_in < Duration::from_secs(60) || p.default_expires_in > p.max_expires_in
        {
            return Err(ConfigError::invalid(
                "payments.default_expires_in_seconds",
                "must be at least 60 and at most payments.max_expires_in_seconds",
            ));
        }
        if self.webhooks.workers == 0 || self.webhooks.workers > 256 {
            return Err(ConfigError::invalid(
                "webhooks.workers",
                "must be between 1 and 256",
            ));
        }
        if self.webhooks.retry_schedule.is_empty() {
            return Err(ConfigError::invalid(
                "webhooks.retry_schedule_ms",
                "must not be empty",
            ));
        }
        if self.webhooks.poll_interval.is_zero()
            || self.webhooks.batch_size == 0
            || self.webhooks.batch_size > 1000
        {
            return Err(ConfigError::invalid(
                "webhooks.poll_interval_ms",
                "poll_interval_ms must be positive and batch_size between 1 and 1000",
            ));
        }
        if self.webhooks.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "webhooks.request_timeout_ms",
                "must be positive",
            ));
        }
        if self.webhooks.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "webhooks.max_attempts",
                "must be at least 1",
            ));
        }
        let sv = &self.server;
        for (key, v) in [
            ("server.header_read_timeout_ms", sv.header_read_timeout),
            ("server.request_timeout_ms", sv.request_timeout),
            ("server.idle_timeout_ms", sv.idle_timeout),
        ] {
            if v.is_zero() {
                return Err(ConfigError::invalid(key, "must be positive"));
            }
        }
        if !(1024..=1 << 20).contains(&sv.max_header_bytes) {
            return Err(ConfigError::invalid(
                "server.max_header_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        if sv.max_connections == 0 {
            return Err(ConfigError::invalid(
                "server.max_connections",
                "must be positive",
            ));
        }
        if sv.api_key_cache_ttl > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                "server.api_key_cache_ttl_ms",
                "must be at most 3600000 (one hour)",
            ));
        }
        if !(1..=1000).contains(&self.payments.address_reservation) {
            return Err(ConfigError::invalid(
                "payments.address_reservation",
                "must be between 1 and 1000",
            ));
        }
        let sv = &self.supervision;
        for (key, v) in [
            ("supervision.watchdog_interval_ms", sv.watchdog_interval),
            ("supervision.restart_backoff_min_ms", sv.restart_backoff_min),
            (
                "supervision.chain_restart_window_ms",
                sv.chain_restart_window,
            ),
            ("supervision.chain_retry_min_ms", sv.chain_retry_min),
            ("supervision.shutdown_timeout_ms", sv.shutdown_timeout),
            ("supervision.rpc_timeout_ms", sv.rpc_timeout),
            ("supervision.tick_retry_min_ms", sv.tick_retry_min),
            (
                "supervision.idempotency_purge_interval_ms",
                sv.idempotency_purge_interval,
            ),
        ] {
            if v.is_zero() {
                return Err(ConfigError::invalid(key, "must be positive"));
            }
        }
        if sv.restart_backoff_max < sv.restart_backoff_min {
            return Err(ConfigError::invalid(
                "supervision.restart_backoff_max_ms",
                "must be at least restart_backoff_min_ms",
            ));
        }
        if sv.tick_retry_max < sv.tick_retry_min {
            return Err(ConfigError::invalid(
                "supervision.tick_retry_max_ms",
                "must be at least tick_retry_min_ms",
            ));
        }
        if sv.chain_retry_max < sv.chain_retry_min {
            return Err(ConfigError::invalid(
                "supervision.chain_retry_max_ms",
                "must be at least chain_retry_min_ms",
            ));
        }
        self.validate_chains()
    }

    fn validate_chains(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for (i, c) in self.chains.iter().enumerate() {
            let key = |k: &str| format!("chains[{i}].{k}");
            let name_ok = !c.name.is_empty()
                && c.name.len() <= 32
                && c.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !name_ok {
                return Err(ConfigError::invalid(
                    key("name"),
                    "must be 1-32 characters of a-z, 0-9, '-' or '_'",
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err(ConfigError::invalid(key("name"), "duplicate chain name"));
            }
            if c.chain_id == 0 || !ids.insert(c.chain_id) {
                return Err(ConfigError::invalid(
                    key("chain_id"),
                    "must be positive and unique",
                ));
            }
            if c.rpc_urls.is_empty() {
                return Err(ConfigError::invalid(key("rpc_urls"), "must not be empty"));
            }
            if c.confirmations == 0 || c.confirmations > 10_000 {
                return Err(ConfigError::invalid(
                    key("confirmations"),
                    "must be between 1 and 10000",
                ));
            }
            if c.poll_interval == Some(Duration::ZERO) {
                return Err(ConfigError::invalid(
                    key("poll_interval_ms"),
                    "must be positive",
                ));
            }
            if c.scan_batch_blocks == 0 || c.scan_batch_blocks > 10_000 {
                return Err(ConfigError::invalid(
                    key("scan_batch_blocks"),
                    "must be between 1 and 10000",
                ));
            }
            if c.block_time.is_zero() {
                return Err(ConfigError::invalid(
                    key("block_time_ms"),
                    "must be positive",
                ));
            }
            let mut symbols = std::collections::HashSet::new();
            let mut addrs = std::collections::HashSet::new();
            for (j, t) in c.tokens.iter().enumerate() {
                let tkey = |k: &str| format!("chains[{i}].tokens[{j}].{k}");
                let sym = t.symbol.to_ascii_lowercase();
                if t.symbol.is_empty()
                    || t.symbol.len() > 16
                    || sym == "native"
                    || !t
                        .symbol
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.')
                    || !symbols.insert(sym)
                {
                    return Err(ConfigError::invalid(
                        tkey("symbol"),
                        "must be 1-16 letters or digits, unique on the chain, not \"native\"",
                    ));
                }
                if !addrs.insert(t.address) {
                    return Err(ConfigError::invalid(
                        tkey("address"),
                        "must be a unique 20-byte hex address",
                    ));
                }
                if t.decimals > 77 {
                    return Err(ConfigError::invalid(tkey("decimals"), "must be at most 77"));
                }
            }
        }
        Ok(())
    }

    /// The configuration as TOML with every secret redacted, for `ctrip config check`.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The `config` crate's messages can span lines; the contract wants one line.
fn one_line(e: &config::ConfigError) -> String {
    e.to_string().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        let mut s = Settings::load_layers(Path::new("config"), None, None, false)
            .expect("embedded defaults load");
        s.database.url = Secret::new("postgres://u:hunter2@127.0.0.1:5432/db");
        s.wallet.mnemonic =
            Secret::new("test test test test test test test test test test test junk");
        s.admin.token = Secret::new("0123456789abcdef0123");
        s
    }

    #[test]
    fn defaults_with_secrets_validate() {
        base().validate().expect("valid");
    }

    #[test]
    fn missing_secrets_name_their_key() {
        let mut s = base();
        s.wallet.mnemonic = Secret::default();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("wallet.mnemonic"), "{e}");
        assert!(!e.contains('\n'));
        let mut s = base();
        s.admin.token = Secret::default();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("admin.token"));
    }

    #[test]
    fn bad_mnemonic_is_not_echoed() {
        let mut s = base();
        s.wallet.mnemonic = Secret::new("correct horse battery staple");
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("wallet.mnemonic") && !e.contains("horse"), "{e}");
    }

    #[test]
    fn redacted_output_hides_secrets_and_rpc_paths() {
        let mut s = base();
        s.chains.push(ChainSettings {
            name: "eth".into(),
            chain_id: 1,
            rpc_urls: vec![RpcUrl::parse("https://rpc.example.com/v2/SECRETKEY").unwrap()],
            max_head_lag_blocks: 5,
            scan_batch_blocks: 500,
            poll_interval: None,
            native_symbol: "ETH".into(),
            confirmations: 12,
            block_time: std::time::Duration::from_millis(12000),
            start_block: StartBlock::Latest,
            treasury: None,
            tokens: vec![],
            sweep: Default::default(),
        });
        let out = s.redacted_toml();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("junk"), "{out}");
        assert!(!out.contains("0123456789abcdef"), "{out}");
        assert!(!out.contains("SECRETKEY"), "{out}");
        assert!(out.contains("rpc.example.com"));
    }

    #[test]
    fn shipped_configs_load_and_validate() {
        for (env, file) in [
            ("docker", None),
            ("dev", None),
            ("test", None),
            ("x", Some("config/example.toml")),
        ] {
            let mut s =
                Settings::load_layers(Path::new("config"), Some(env), file.map(Path::new), false)
                    .unwrap_or_else(|e| panic!("{env}: {e}"));
            s.database.url = Secret::new("postgres://u@127.0.0.1/db");
            s.wallet.mnemonic =
                Secret::new("test test test test test test test test test test test junk");
            s.admin.token = Secret::new("0123456789abcdef0123");
            s.database.url_file = None;
            s.wallet.mnemonic_file = None;
            s.admin.token_file = None;
            s.validate().unwrap_or_else(|e| panic!("{env}: {e}"));
        }
        let s =
            Settings::load_layers(Path::new("config"), Some("docker"), None, false).expect("loads");
        assert_eq!(s.chains[0].start_block, StartBlock::Number(0));
        assert_eq!(s.server.bind.to_string(), "0.0.0.0:8080");
    }

    /// Loads the shipped defaults with `toml` as the `--config` layer.
    fn load_with(toml: &str) -> Result<Settings, ConfigError> {
        let path = std::env::temp_dir().join(format!("ctrip-config-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, toml).expect("temp file");
        let r = Settings::load_layers(Path::new("config"), None, Some(&path), false);
        let _ = std::fs::remove_file(&path);
        r
    }

    fn load_error(toml: &str) -> String {
        let e = load_with(toml).expect_err("refused").to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    #[test]
    fn chain_errors_name_the_key() {
        let e = load_error(
            "[[chains]]\nname = \"eth\"\nchain_id = 1\nrpc_urls = [\"ftp://x\"]\nconfirmations = 12\nblock_time_ms = 12000\n",
        );
        assert!(e.contains("rpc_urls") && e.contains("http(s)"), "{e}");
        let e = load_error(
            "[[chains]]\nname = \"eth\"\nchain_id = 1\nrpc_urls = [\"http://x\"]\nconfirmations = 12\nblock_time_ms = 12000\ntreasury = \"0x12\"\n",
        );
        assert!(e.contains("treasury"), "{e}");
    }

    #[test]
    fn an_unknown_key_in_any_layer_is_an_error_naming_it() {
        let e = load_error("[telemetry]\notlp_endpiont = \"http://collector:4317\"\n");
        assert!(e.contains("otlp_endpiont"), "{e}");
        let e = load_error("[sever]\nbind = \"127.0.0.1:1\"\n");
        assert!(e.contains("sever"), "{e}");
        let e = load_error(
            "[[chains]]\nname = \"eth\"\nchain_id = 1\nrpc_urls = [\"http://x\"]\nconfirmations = 12\nblock_time_ms = 12000\ntreasurey = \"0x12\"\n",
        );
        assert!(e.contains("treasurey"), "{e}");
        // The environment layer too.
        std::env::set_var("CTRIP__SERVER__BIDN", "127.0.0.1:1");
        let e = Settings::load_layers(Path::new("config"), None, None, true)
            .expect_err("refused")
            .to_string();
        std::env::remove_var("CTRIP__SERVER__BIDN");
        assert!(e.contains("bidn") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn values_are_parsed_into_types_at_load_naming_the_key() {
        let e = load_error("[server]\nbind = \"localhost\"\n");
        assert!(e.contains("server.bind"), "{e}");
        let e = load_error("[telemetry]\nlog_level = \"loud\"\n");
        assert!(
            e.contains("telemetry.log_level") && e.contains("trace"),
            "{e}"
        );
        let e = load_error("[webhooks]\nproxy = \"socks://x\"\n");
        assert!(e.contains("webhooks.proxy"), "{e}");
        let e = load_error("[webhooks]\nallowed_ports = [\"99999\"]\n");
        assert!(e.contains("webhooks.allowed_ports"), "{e}");
        let s = load_with(
            "[server]\nbind = \"0.0.0.0:9000\"\nrequest_timeout_ms = 1500\n[telemetry]\naccess_log_level = \"off\"\n",
        )
        .expect("loads");
        assert_eq!(s.server.bind.port(), 9000);
        assert_eq!(s.server.request_timeout, Duration::from_millis(1500));
        assert_eq!(s.telemetry.access_log_level, AccessLogLevel(None));
    }
}
