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

use alloy::primitives::Address;
use serde::{Deserialize, Serialize, Serializer};

/// The defaults compiled into the binary, so that `ctrip` runs from any directory.
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

/// A secret string: never printed by `Debug` or `Serialize`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

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

/// All settings of one gateway process.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerSettings {
    /// Listen address, e.g. `127.0.0.1:8080`; port 0 picks a free port.
    pub bind: String,
    /// Largest accepted request body.
    pub request_body_limit_bytes: u64,
    /// A request head must arrive within this (the connection is closed otherwise); it also
    /// bounds how long a keep-alive connection waits for its next request.
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this (408 otherwise).
    pub request_timeout_ms: u64,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout_ms: u64,
    /// The largest request head accepted (431 beyond); it bounds per-connection memory.
    pub max_header_bytes: usize,
    /// Concurrent connections at most; past it a new connection gets 503 and is closed.
    pub max_connections: usize,
    /// A separate listen address for `/metrics` and `/health/detail`; when set they are
    /// served only there (`/health/live` and `/health/ready` stay on both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_bind: Option<String>,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    pub statement_timeout_ms: u64,
    /// How long opening a connection may take.
    pub connect_timeout_ms: u64,
}

/// `[wallet]`
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WalletSettings {
    /// BIP-39 mnemonic.
    #[serde(default)]
    pub mnemonic: Secret,
    /// Read `mnemonic` from this file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnemonic_file: Option<PathBuf>,
    /// Optional BIP-39 passphrase.
    #[serde(default)]
    pub passphrase: Secret,
}

/// `[payments]`
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PaymentSettings {
    /// `expires_in` when a create request gives none.
    pub default_expires_in_seconds: u64,
    /// Largest `expires_in` a merchant may ask for.
    pub max_expires_in_seconds: u64,
    /// How long an expired payment's address stays watched for late funds.
    pub late_funds_window_seconds: u64,
}

/// `[webhooks]`
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebhookSettings {
    /// Dispatcher pool size.
    pub workers: usize,
    /// Timeout of one delivery attempt.
    pub request_timeout_ms: u64,
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
    /// Allow loopback/private targets (dev and tests only).
    pub allow_private_targets: bool,
    /// Delay after each failed attempt, in milliseconds (the last entry repeats).
    pub retry_schedule_ms: Vec<u64>,
    /// How often an idle dispatcher looks for due deliveries.
    pub poll_interval_ms: u64,
    /// Deliveries one worker claims and sends concurrently per tick.
    pub batch_size: usize,
    /// Default grace period of a secret rotation.
    pub rotation_grace_seconds: u64,
    /// `webhooks:oldestPendingAge` turns `warn` past this.
    pub backlog_warn_seconds: u64,
    /// Attempts in flight to one endpoint at most, across the pool.
    pub max_in_flight_per_endpoint: u32,
    /// Ports a webhook URL may name: single ports and `low-high` ranges.
    pub allowed_ports: Vec<String>,
    /// Webhook endpoints one merchant may have (deleted ones do not count).
    pub max_endpoints_per_merchant: u32,
    /// An explicit HTTP(S) proxy for deliveries. Unset: no proxy, whatever `HTTP_PROXY` and
    /// `HTTPS_PROXY` say (a proxy resolves names itself, out of the SSRF guard's sight).
    #[serde(default)]
    pub proxy: Option<String>,
}

/// The ports a webhook URL may name (by default 80, 443 and every port from 1024), so the
/// attempt log cannot be used to scan the well-known services of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPolicy(Vec<(u16, u16)>);

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
pub struct TelemetrySettings {
    /// `json` or `pretty`.
    pub log_format: LogFormat,
    /// `trace`, `debug`, `info`, `warning`, `error` or `critical`.
    pub log_level: String,
    /// Sentry DSN; errors go to Sentry when set.
    #[serde(default)]
    pub sentry_dsn: Secret,
    /// Read `sentry_dsn` from this file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentry_dsn_file: Option<PathBuf>,
    /// The level of the one access-log line every HTTP request writes (a log level, or
    /// `off`).
    #[serde(default = "default_access_log_level")]
    pub access_log_level: String,
}

fn default_access_log_level() -> String {
    "info".into()
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
pub struct SupervisionSettings {
    /// Run the actor tree (false for API-only processes and API tests).
    pub enabled: bool,
    /// How often supervisors look for stalled children.
    pub watchdog_interval_ms: u64,
    /// A worker with no progress for this long is killed and restarted; 0 derives it per
    /// chain as max(30 s, 10 ticks).
    pub stall_timeout_ms: u64,
    /// Worker restart backoff, first delay.
    pub restart_backoff_min_ms: u64,
    /// Worker restart backoff, cap.
    pub restart_backoff_max_ms: u64,
    /// A chain melts down after more than this many worker restarts ...
    pub chain_max_restarts: usize,
    /// ... within this window; the root then retries the whole chain slowly.
    pub chain_restart_window_ms: u64,
    /// Backoff of the root's retries of a melted-down chain, first delay.
    pub chain_retry_min_ms: u64,
    /// Backoff of the root's retries of a melted-down chain, cap.
    pub chain_retry_max_ms: u64,
    /// How long an actor may take to stop before it is killed.
    pub shutdown_timeout_ms: u64,
    /// RPC request timeout.
    pub rpc_timeout_ms: u64,
    /// A failed tick is retried after this delay, doubling per consecutive failure ...
    pub tick_retry_min_ms: u64,
    /// ... up to this cap, whatever the worker's own interval (a dead RPC never spins).
    pub tick_retry_max_ms: u64,
    /// How often the idempotency-key purge runs; keys older than a day are deleted.
    pub idempotency_purge_interval_ms: u64,
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

/// An RPC endpoint URL. URLs often embed provider keys, so only the host is ever shown.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct RpcUrl(String);

impl RpcUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }
    /// The full URL, for the HTTP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `host[:port]`, safe for logs, health output and metrics.
    pub fn host(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(u) => match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => "invalid-url".into(),
            },
            Err(_) => "invalid-url".into(),
        }
    }
}

impl fmt::Debug for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.host())
    }
}

impl Serialize for RpcUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.host())
    }
}

/// `[[chains]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    pub block_time_ms: u64,
    /// Scanner and confirmer tick; defaults to `block_time_ms` (within 250 ms..15 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<u64>,
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
    pub treasury: Option<String>,
    /// ERC-20 tokens accepted on this chain.
    #[serde(default)]
    pub tokens: Vec<TokenSettings>,
}

impl ChainSettings {
    /// How often the chain's workers tick.
    pub fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.poll_interval_ms
                .unwrap_or_else(|| self.block_time_ms.clamp(250, 15_000)),
        )
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
pub struct TokenSettings {
    /// Ticker, unique on its chain.
    pub symbol: String,
    /// Contract address.
    pub address: String,
    /// ERC-20 decimals.
    pub decimals: u8,
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
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(
                    format!("{key}_file"),
                    format!("cannot read {}: {}", path.display(), e.kind()),
                )
            })?;
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
        resolve(&mut self.admin.token, &self.admin.token_file, "admin.token")?;
        resolve(
            &mut self.telemetry.sentry_dsn,
            &self.telemetry.sentry_dsn_file,
            "telemetry.sentry_dsn",
        )?;
        Ok(())
    }

    /// Checks every value; the first problem is returned as a one-line error naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server_bind()?;
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
        if self.database.pool_size == 0 || self.database.pool_size > 1000 {
            return Err(ConfigError::invalid(
                "database.pool_size",
                "must be between 1 and 1000",
            ));
        }
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
        if self.admin.token.expose().len() < 16 {
            return Err(ConfigError::invalid(
                "admin.token",
                "missing or shorter than 16 characters (set it, CTRIP__ADMIN__TOKEN or admin.token_file)",
            ));
        }
        let p = &self.payments;
        if p.max_expires_in_seconds > 366 * 86_400 {
            return Err(ConfigError::invalid(
                "payments.max_expires_in_seconds",
                "must be at most one year (31622400)",
            ));
        }
        if p.default_expires_in_seconds < 60
            || p.default_expires_in_seconds > p.max_expires_in_seconds
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
        if self.webhooks.retry_schedule_ms.is_empty() {
            return Err(ConfigError::invalid(
                "webhooks.retry_schedule_ms",
                "must not be empty",
            ));
        }
        if self.webhooks.poll_interval_ms == 0
            || self.webhooks.batch_size == 0
            || self.webhooks.batch_size > 1000
        {
            return Err(ConfigError::invalid(
                "webhooks.poll_interval_ms",
                "poll_interval_ms must be positive and batch_size between 1 and 1000",
            ));
        }
        if self.webhooks.request_timeout_ms == 0 {
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
        if crate::telemetry::parse_level(&self.telemetry.log_level).is_none() {
            return Err(ConfigError::invalid(
                "telemetry.log_level",
                "must be one of trace, debug, info, warning, error, critical",
            ));
        }
        let sv = &self.server;
        for (key, v) in [
            ("server.header_read_timeout_ms", sv.header_read_timeout_ms),
            ("server.request_timeout_ms", sv.request_timeout_ms),
            ("server.idle_timeout_ms", sv.idle_timeout_ms),
        ] {
            if v == 0 {
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
        self.ops_bind()?;
        if let Some(p) = &self.webhooks.proxy {
            if url::Url::parse(p).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                return Err(ConfigError::invalid(
                    "webhooks.proxy",
                    "must be an http or https URL",
                ));
            }
        }
        if PortPolicy::parse(&self.webhooks.allowed_ports).is_none() {
            return Err(ConfigError::invalid(
                "webhooks.allowed_ports",
                "must be a list of ports or ranges such as \"80\", \"1024-65535\"",
            ));
        }
        let access = &self.telemetry.access_log_level;
        if access != "off" && crate::telemetry::parse_level(access).is_none() {
            return Err(ConfigError::invalid(
                "telemetry.access_log_level",
                "must be one of trace, debug, info, warning, error, critical, off",
            ));
        }
        let sv = &self.supervision;
        for (key, v) in [
            ("supervision.watchdog_interval_ms", sv.watchdog_interval_ms),
            (
                "supervision.restart_backoff_min_ms",
                sv.restart_backoff_min_ms,
            ),
            (
                "supervision.chain_restart_window_ms",
                sv.chain_restart_window_ms,
            ),
            ("supervision.chain_retry_min_ms", sv.chain_retry_min_ms),
            ("supervision.shutdown_timeout_ms", sv.shutdown_timeout_ms),
            ("supervision.rpc_timeout_ms", sv.rpc_timeout_ms),
            ("supervision.tick_retry_min_ms", sv.tick_retry_min_ms),
            (
                "supervision.idempotency_purge_interval_ms",
                sv.idempotency_purge_interval_ms,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be positive"));
            }
        }
        if sv.restart_backoff_max_ms < sv.restart_backoff_min_ms {
            return Err(ConfigError::invalid(
                "supervision.restart_backoff_max_ms",
                "must be at least restart_backoff_min_ms",
            ));
        }
        if sv.tick_retry_max_ms < sv.tick_retry_min_ms {
            return Err(ConfigError::invalid(
                "supervision.tick_retry_max_ms",
                "must be at least tick_retry_min_ms",
            ));
        }
        if sv.chain_retry_max_ms < sv.chain_retry_min_ms {
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
            for (j, u) in c.rpc_urls.iter().enumerate() {
                let ok = url::Url::parse(u.expose())
                    .map(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                    .unwrap_or(false);
                if !ok {
                    return Err(ConfigError::invalid(
                        format!("chains[{i}].rpc_urls[{j}]"),
                        "must be an http(s) URL",
                    ));
                }
            }
            if c.confirmations == 0 || c.confirmations > 10_000 {
                return Err(ConfigError::invalid(
                    key("confirmations"),
                    "must be between 1 and 10000",
                ));
            }
            if c.poll_interval_ms == Some(0) {
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
            if c.block_time_ms == 0 {
                return Err(ConfigError::invalid(
                    key("block_time_ms"),
                    "must be positive",
                ));
            }
            if let Some(t) = &c.treasury {
                if Address::from_str(t).is_err() {
                    return Err(ConfigError::invalid(
                        key("treasury"),
                        "not a 20-byte hex address",
                    ));
                }
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
                match Address::from_str(&t.address) {
                    Ok(a) if addrs.insert(a) => {}
                    _ => {
                        return Err(ConfigError::invalid(
                            tkey("address"),
                            "must be a unique 20-byte hex address",
                        ))
                    }
                }
                if t.decimals > 77 {
                    return Err(ConfigError::invalid(tkey("decimals"), "must be at most 77"));
                }
            }
        }
        Ok(())
    }

    /// The parsed listen address.
    pub fn server_bind(&self) -> Result<SocketAddr, ConfigError> {
        self.server.bind.parse().map_err(|_| {
            ConfigError::invalid("server.bind", "must be host:port, e.g. 127.0.0.1:8080")
        })
    }

    /// The operator listen address, if one is configured.
    pub fn ops_bind(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.server
            .ops_bind
            .as_deref()
            .map(|b| {
                b.parse().map_err(|_| {
                    ConfigError::invalid(
                        "server.ops_bind",
                        "must be host:port, e.g. 127.0.0.1:9090",
                    )
                })
            })
            .transpose()
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
            rpc_urls: vec![RpcUrl::new("https://rpc.example.com/v2/SECRETKEY")],
            max_head_lag_blocks: 5,
            scan_batch_blocks: 500,
            poll_interval_ms: None,
            native_symbol: "ETH".into(),
            confirmations: 12,
            block_time_ms: 12000,
            start_block: StartBlock::Latest,
            treasury: None,
            tokens: vec![],
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
        assert_eq!(s.server.bind, "0.0.0.0:8080");
    }

    #[test]
    fn chain_errors_name_the_key() {
        let mut s = base();
        s.chains.push(ChainSettings {
            name: "eth".into(),
            chain_id: 1,
            rpc_urls: vec![RpcUrl::new("ftp://x")],
            max_head_lag_blocks: 5,
            scan_batch_blocks: 500,
            poll_interval_ms: None,
            native_symbol: "ETH".into(),
            confirmations: 12,
            block_time_ms: 12000,
            start_block: StartBlock::Number(5),
            treasury: None,
            tokens: vec![],
        });
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("chains[0].rpc_urls[0]"), "{e}");
    }
}
