//! PostgreSQL store: the connection pool, migrations and the SQL of each aggregate.
//!
//! Functions take a [`deadpool_postgres::GenericClient`] so that callers choose the unit of
//! work: a pooled connection for a single statement, a transaction when a state change and
//! its history and event rows must land together.

pub mod account_keys;
pub mod api_keys;
pub mod chain;
pub mod idempotency;
pub mod leases;
pub mod listen;
pub mod merchants;
pub mod metrics;
pub mod payments;
pub mod sweeps;
pub mod timeline;
pub mod treasuries;
pub mod webhooks;

use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use slog::Logger;
use tokio_postgres::NoTls;

use crate::config::DatabaseSettings;
use crate::telemetry::trace;
use metrics::DbMetrics;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Store failures. Messages never contain SQL text or connection strings.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had (server down, pool exhausted past its timeout).
    #[error("database unavailable")]
    Unavailable(#[source] PoolError),
    /// A statement failed.
    #[error("database statement failed")]
    Db(#[from] tokio_postgres::Error),
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// A row held a value the code cannot represent.
    #[error("unexpected stored value in {0}")]
    Corrupt(&'static str),
    /// A session of its own (a `LISTEN`) ended or stopped answering.
    #[error("database session lost: {0}")]
    SessionLost(&'static str),
    /// The configured URL is unusable.
    #[error("database.url is not a valid PostgreSQL URL")]
    BadUrl,
}

/// SQLSTATE the fence trigger raises when a chain worker's term is over.
const FENCED: &str = "CT001";

impl crate::worker::Retryable for StoreError {
    fn is_retryable(&self) -> bool {
        StoreError::is_retryable(self)
    }

    fn is_fenced(&self) -> bool {
        StoreError::is_fenced(self)
    }
}

impl StoreError {
    /// The database refused a value of the request itself (a NUL or untranslatable
    /// character in text): the client's fault, never worth a retry.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::Db(e) if matches!(e.code().map(|c| c.code()), Some("22021" | "22P05")))
    }

    /// Worth retrying later: connectivity, serialization failures, deadlocks, timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::SessionLost(_) => true,
            Self::Db(e) => {
                e.is_closed()
                    || matches!(
                        e.code().map(|c| c.code()),
                        Some("40001" | "40P01" | "57014" | "57P01" | "08006" | "08003" | FENCED)
                    )
                    || e.as_db_error().is_none()
            }
            _ => false,
        }
    }

    /// A chain worker wrote under a lease term that is over (another replica took the
    /// chain over, or the lease lapsed): nothing was written, and retrying cannot help
    /// until this replica leads again.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Db(e) if e.code().map(|c| c.code()) == Some(FENCED))
    }

    /// The violated constraint's name, for unique-violation handling.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Self::Db(e) => e.as_db_error().and_then(|d| d.constraint()),
            _ => None,
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(db) => Self::Db(db),
            other => Self::Unavailable(other),
        }
    }
}

/// Pool state, for gauges and health.
#[derive(Debug, Clone, Copy)]
pub struct PoolStatus {
    /// Configured maximum.
    pub max_size: usize,
    /// Open connections.
    pub size: usize,
    /// Idle open connections.
    pub available: usize,
    /// Tasks waiting for a connection.
    pub waiting: usize,
}

/// The database handle shared by the API and the actors.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    fence: Option<(Fence, Duration)>,
    /// How to open a connection of its own (a `LISTEN` session lives outside the pool).
    config: Arc<tokio_postgres::Config>,
}

/// The lease term a chain worker's writes must hold (`<lease>@<token>`), shared between the
/// lease keeper that changes it and the workers whose connections carry it.
#[derive(Clone, Debug)]
pub struct Fence(Arc<RwLock<String>>);

impl Fence {
    /// A fence at `value`.
    pub fn new(value: String) -> Self {
        Self(Arc::new(RwLock::new(value)))
    }

    /// Moves the fence to another term.
    pub fn set(&self, value: String) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }

    /// The current value.
    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Where statement and pool timings go once the process has its metrics.
struct Timing {
    metrics: DbMetrics,
    slow: Duration,
    log: Logger,
}

/// Set by [`Store::instrument`]; the store's free functions take any client, so the timer
/// cannot travel with the pool.
static TIMING: RwLock<Option<Arc<Timing>>> = RwLock::new(None);

fn timing() -> Option<Arc<Timing>> {
    TIMING.read().ok().and_then(|t| t.clone())
}

/// Runs one store operation under its static name (`payments.insert`): its duration goes
/// to `ctrip_db_query_duration_seconds{stmt}`, a client span when tracing, and a
/// `slow_query` warning above `database.slow_query_ms`. Only the name is ever reported,
/// never SQL text or parameters.
pub(crate) async fn timed<T>(
    stmt: &'static str,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let clock = Instant::now();
    let started = SystemTime::now();
    let result = op.await;
    let elapsed = clock.elapsed();
    if let Some(t) = timing() {
        t.metrics
            .query_duration
            .with_label_values(&[stmt])
            .observe(elapsed.as_secs_f64());
        if elapsed >= t.slow {
            slog::warn!(t.log, "slow_query"; "stmt" => stmt,
                "ms" => u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        }
    }
    if trace::enabled() {
        trace::record(
            "db.query",
            opentelemetry::trace::SpanKind::Client,
            started,
            vec![
                opentelemetry::KeyValue::new("db.system.name", "postgresql"),
                opentelemetry::KeyValue::new("db.operation.name", stmt),
                opentelemetry::KeyValue::new(
                    "ctrip.outcome",
                    if result.is_ok() { "ok" } else { "error" },
                ),
            ],
        );
    }
    result
}

impl Store {
    /// Builds the pool; opens no connection yet (that happens on first use).
    pub fn new(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let mut pg = tokio_postgres::Config::from_str(settings.url.expose())
            .map_err(|_| StoreError::BadUrl)?;
        pg.connect_timeout(settings.connect_timeout);
        pg.options(format!(
            "-c statement_timeout={}",
            settings.statement_timeout.as_millis()
        ));
        pg.application_name("ctrip");
        let config = Arc::new(pg.clone());
        let mgr = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeout = settings.connect_timeout;
        let pool = Pool::builder(mgr)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.pool_wait_timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|_| StoreError::BadUrl)?;
        Ok(Self {
            pool,
            fence: None,
            config,
        })
    }

    /// The same database with a pool of its own of `size` connections (the chain
    /// workers', so fenced sessions never serve the API).
    pub fn separate_pool(settings: &DatabaseSettings, size: usize) -> Result<Self, StoreError> {
        let mut s = settings.clone();
        s.pool_size = size.max(1);
        Self::new(&s)
    }

    /// This store with every connection it hands out carrying `fence`: the database then
    /// refuses any write to the chain tables once that term is over. Use it only on a
    /// pool of its own ([`Store::separate_pool`]): the setting stays on the connection.
    ///
    /// The fence check holds the lease row `FOR SHARE` until the transaction ends, so a
    /// takeover waits for the transactions in flight. A leader frozen in the middle of one
    /// would make it wait for ever; the server ends such a session once it has sat idle in
    /// a transaction for `idle_in_transaction` (the lease's time to live).
    pub fn fenced(&self, fence: Fence, idle_in_transaction: Duration) -> Self {
        Self {
            pool: self.pool.clone(),
            fence: Some((fence, idle_in_transaction)),
            config: self.config.clone(),
        }
    }

    /// Reports pool and statement timings into `metrics` from now on, with a
    /// `slow_query` warning on `log` for statements slower than `slow`.
    pub fn instrument(&self, metrics: DbMetrics, slow: Duration, log: Logger) {
        if let Ok(mut t) = TIMING.write() {
            *t = Some(Arc::new(Timing { metrics, slow, log }));
        }
    }

    /// A pooled connection. The wait is timed, and a timeout counted by its kind.
    pub async fn client(&self) -> Result<Object, StoreError> {
        let clock = Instant::now();
        let got = self.pool.get().await;
        if let Some(t) = timing() {
            t.metrics.acquire.observe(clock.elapsed().as_secs_f64());
            if let Err(PoolError::Timeout(kind)) = &got {
                let kind = match kind {
                    TimeoutType::Wait => "wait",
                    TimeoutType::Create => "create",
                    TimeoutType::Recycle => "recycle",
                };
                t.metrics.timeouts.with_label_values(&[kind]).inc();
            }
        }
        let client = got?;
        if let Some((f, idle)) = &self.fence {
            // Lease names and tokens are `[a-z0-9:_-]` and digits, so the literal is safe.
            client
                .batch_execute(&format!(
                    "SET ctrip.fence = '{}'; SET idle_in_transaction_session_timeout = {}",
                    f.get(),
                    idle.as_millis().max(1)
                ))
                .await?;
        }
        Ok(client)
    }

    /// Applies pending migrations. An advisory lock keeps concurrent starts of several
    /// gateway processes from racing each other.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut obj = self.client().await?;
        obj.batch_execute("SELECT pg_advisory_lock(7243001)")
            .await?;
        let client: &mut tokio_postgres::Client = &mut obj;
        let result = embedded::migrations::runner()
            .run_async(client)
            .await
            .map_err(|e| StoreError::Migration(e.kind().to_string()));
        let unlock = obj
            .batch_execute("SELECT pg_advisory_unlock(7243001)")
            .await;
        result?;
        unlock?;
        Ok(())
    }

    /// The newest migration version compiled into this binary.
    pub fn latest_migration() -> i32 {
        embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| m.version())
            .max()
            .unwrap_or(0)
    }

    /// The newest applied migration, `None` before the first `migrate`.
    pub async fn applied_migration(&self) -> Result<Option<i32>, StoreError> {
        let c = self.client().await?;
        let exists: bool = c
            .query_one(
                "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = c
            .query_one("SELECT MAX(version) FROM refinery_schema_history", &[])
            .await?;
        Ok(row.get(0))
    }

    /// One round trip; returns how long it took.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let start = Instant::now();
        let c = self.client().await?;
        c.simple_query("SELECT 1").await?;
        Ok(start.elapsed())
    }

    /// Current pool state.
    pub fn pool_status(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus {
            max_size: s.max_size,
            size: s.size,
            available: s.available,
            waiting: s.waiting,
        }
    }
}
