//! Throw-away local infrastructure for `ctrip dev` and the test suite: a PostgreSQL cluster
//! started from the installed server binaries, and an `anvil` devnet. Both listen on free
//! loopback ports and are stopped and removed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Asks the OS for a free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Finds the PostgreSQL server binaries (`initdb`, `pg_ctl`).
fn pg_bindir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("CTRIP_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    if let Some(dir) = candidates
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
    {
        return Ok(dir);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        if Path::new(dir).join("initdb").exists() {
            return Ok(PathBuf::from(dir));
        }
    }
    bail!("PostgreSQL server binaries (initdb, pg_ctl) not found: install the postgresql package or set CTRIP_PG_BINDIR")
}

/// A PostgreSQL cluster in a temporary directory. As root, the server runs as the
/// `postgres` user, since PostgreSQL refuses to run as root.
pub struct TempPostgres {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    run_as_postgres: bool,
}

impl TempPostgres {
    /// Creates and starts a cluster with trust authentication for user `postgres`.
    pub fn start() -> anyhow::Result<Self> {
        let bindir = pg_bindir()?;
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("ctrip-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).context("cannot create the cluster directory")?;
        let run_as_postgres = is_root();
        let pg = Self {
            dir,
            bindir,
            port,
            run_as_postgres,
        };
        if run_as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&pg.dir)
                .status()
                .context("chown failed")?;
            if !status.success() {
                bail!("cannot hand the cluster directory to the postgres user");
            }
        }
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        pg.start_server()?;
        Ok(pg)
    }

    fn command(&self, tool: &str) -> Command {
        let bin = self.bindir.join(tool);
        if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        Ok(())
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    pub fn start_server(&self) -> anyhow::Result<()> {
        let data = self.dir.join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &self.dir.join("server.log").to_string_lossy(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
    }

    /// Stops the server (fast shutdown), keeping the data.
    pub fn stop_server(&self) -> anyhow::Result<()> {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "fast", "-w", "stop"],
        )
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Finds the `anvil` binary: `CTRIP_ANVIL_BIN`, then `node_modules/.bin/anvil` in the
/// current directory or the source tree, then `PATH`.
pub fn anvil_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("CTRIP_ANVIL_BIN") {
        return Ok(PathBuf::from(p));
    }
    // The npm package's `.bin/anvil` is a Node wrapper that spawns the platform binary;
    // run that binary directly so that stopping it stops anvil (a killed wrapper would
    // orphan it).
    for root in [
        PathBuf::from("."),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    ] {
        let scoped = root.join("node_modules/@foundry-rs");
        if let Ok(entries) = std::fs::read_dir(&scoped) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let bin = e.path().join("bin/anvil");
                if name.starts_with("anvil-") && bin.exists() {
                    return Ok(bin);
                }
            }
        }
        let wrapper = root.join("node_modules/.bin/anvil");
        if wrapper.exists() {
            return Ok(wrapper);
        }
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("anvil");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("anvil not found: run `npm install` (package @foundry-rs/anvil) or set CTRIP_ANVIL_BIN")
}

/// A running anvil devnet.
pub struct Anvil {
    child: Child,
    port: u16,
}

impl Anvil {
    /// Starts anvil on a free port; `block_time` makes it mine on an interval as well as
    /// on every transaction. Waits until its RPC answers.
    pub async fn start(block_time: Option<u64>) -> anyhow::Result<Self> {
        Self::start_with(block_time, &[]).await
    }

    /// Like [`Anvil::start`], with extra command-line arguments (for example
    /// `--timestamp` to run the chain's clock in the past, or `--hardfork`).
    pub async fn start_with(block_time: Option<u64>, extra: &[String]) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut cmd = Command::new(anvil_bin()?);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--silent",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(t) = block_time {
            cmd.args(["--block-time", &t.to_string()]);
        }
        cmd.args(extra);
        // Its own process group, so that dropping it stops anvil and anything it spawned.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().context("cannot start anvil")?;
        let anvil = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            let r = client
                .post(anvil.url())
                .json(
                    &serde_json::json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}),
                )
                .send()
                .await;
            if matches!(r, Ok(ref resp) if resp.status().is_success()) {
                return Ok(anvil);
            }
            if Instant::now() > deadline {
                bail!("anvil did not answer within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signals the process group this struct created (see `start`).
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Compiled bytecode of `contracts/DemoToken.sol`, a minimal mintable ERC-20.
pub const DEMO_TOKEN_BIN: &str = include_str!("../contracts/DemoToken.bin");

/// anvil's first default account; unlocked on the devnet.
pub const ANVIL_PAYER: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

/// A JSON-RPC client for driving a devnet (anvil) in `ctrip dev`, tests and benchmarks.
#[derive(Clone)]
pub struct DevChain {
    url: String,
    http: reqwest::Client,
}

fn pad32(hex_no_prefix: &str) -> String {
    format!("{hex_no_prefix:0>64}")
}

/// ABI call data `selector(address,uint256)`.
pub fn address_amount_call(
    selector: &str,
    to: alloy::primitives::Address,
    amount: alloy::primitives::U256,
) -> String {
    format!(
        "0x{selector}{}{}",
        pad32(&hex::encode(to.as_slice())),
        pad32(&format!("{amount:x}"))
    )
}

impl DevChain {
    /// A client for the devnet at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            http: reqwest::Client::new(),
        }
    }

    /// One JSON-RPC call; an RPC error becomes an `Err`.
    pub async fn rpc(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let v: serde_json::Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        if let Some(e) = v.get("error") {
            bail!("{method}: {e}");
        }
        Ok(v.get("result").cloned().unwrap_or(serde_json::Value::Null))
    }

    /// The head block number.
    pub async fn head(&self) -> anyhow::Result<u64> {
        let v = self.rpc("eth_blockNumber", serde_json::json!([])).await?;
        let s = v.as_str().unwrap_or("0x0");
        Ok(u64::from_str_radix(s.trim_start_matches("0x"), 16)?)
    }

    /// Mines `n` empty blocks.
    pub async fn mine(&self, n: u64) -> anyhow::Result<()> {
        self.rpc("anvil_mine", serde_json::json!([format!("0x{n:x}")]))
            .await?;
        Ok(())
    }

    /// Sets an account's native balance.
    pub async fn set_balance(&self, who: &str, wei: alloy::primitives::U256) -> anyhow::Result<()> {
        self.rpc(
            "anvil_setBalance",
            serde_json::json!([who, format!("{wei:#x}")]),
        )
        .await?;
        Ok(())
    }

    /// Sends a transaction from an unlocked account and waits for its receipt; returns the
    /// receipt.
    pub async fn send(&self, tx: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let hash = self
            .rpc("eth_sendTransaction", serde_json::json!([tx]))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self
                .rpc("eth_getTransactionReceipt", serde_json::json!([hash]))
                .await?;
            if !r.is_null() {
                if r["status"] != "0x1" {
                    bail!("transaction reverted");
                }
                return Ok(r);
            }
            if Instant::now() > deadline {
                bail!("no receipt within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deploys `DemoToken` from anvil's first account; returns its address.
    pub async fn deploy_demo_token(&self) -> anyhow::Result<alloy::primitives::Address> {
        let r = self
            .send(serde_json::json!({
                "from": ANVIL_PAYER,
                "data": format!("0x{}", DEMO_TOKEN_BIN.trim()),
                "gas": "0x200000",
            }))
            .await?;
        let a = r["contractAddress"].as_str().unwrap_or_default();
        Ok(a.parse()?)
    }

    /// Sends native value; returns the receipt.
    pub async fn pay_native(
        &self,
        from: &str,
        to: alloy::primitives::Address,
        wei: alloy::primitives::U256,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(serde_json::json!({"from": from, "to": to, "value": format!("{wei:#x}")}))
            .await
    }

    /// Mints demo tokens to `to`.
    pub async fn mint(
        &self,
        token: alloy::primitives::Address,
        to: alloy::primitives::Address,
        amount: alloy::primitives::U256,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(serde_json::json!({
            "from": ANVIL_PAYER, "to": token, "gas": "0x100000",
            "data": address_amount_call("40c10f19", to, amount),
        }))
        .await
    }

    /// Transfers tokens from an unlocked account.
    pub async fn pay_token(
        &self,
        token: alloy::primitives::Address,
        from: &str,
        to: alloy::primitives::Address,
        amount: alloy::primitives::U256,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(serde_json::json!({
            "from": from, "to": token, "gas": "0x100000",
            "data": address_amount_call("a9059cbb", to, amount),
        }))
        .await
    }
}

/// Creates an empty, uniquely named database on the server behind `maintenance_url`
/// (a test or benchmark database, zero2prod style) and returns its URL.
pub async fn create_database(maintenance_url: &str, prefix: &str) -> anyhow::Result<String> {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) = tokio_postgres::connect(maintenance_url, tokio_postgres::NoTls)
        .await
        .context("the PostgreSQL server does not answer")?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!(r#"CREATE DATABASE "{name}""#))
        .await?;
    let mut url = url::Url::parse(maintenance_url)?;
    url.set_path(&name);
    Ok(url.to_string())
}
