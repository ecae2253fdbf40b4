//! The `ctrip` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::app::{shutdown_signal, Application};
use crate::chain::metrics::ChainMetrics;
use crate::chain::{ChainRpc, ChainStatusRegistry};
use crate::config::{ChainSettings, RpcUrl, Secret, Settings, StartBlock, TokenSettings};
use crate::devnet::{Anvil, DevChain, TempPostgres, ANVIL_PAYER};
use crate::domain::checkout::{Accent, TokenQr};
use crate::ops;
use crate::store::Store;
use crate::telemetry::{build_logger, init_sentry, LogSink};
use crate::wallet::{HdWallet, KeyRef, Signer};

/// cTrip Gateway: a self-hosted multi-chain EVM payment gateway.
#[derive(Parser)]
#[command(name = "ctrip", version, about)]
struct Cli {
    /// An extra configuration file, layered over config/default.toml and config/{CTRIP_ENV}.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run migrations, the HTTP API and the actor tree until SIGINT/SIGTERM.
    Serve {
        /// Do not apply pending migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending migrations and exit.
    Migrate,
    /// Run the signer: the one process holding the mnemonic, serving signatures its policy
    /// allows on `signer.socket`, with an audit log, until SIGINT/SIGTERM.
    Signer {
        #[command(subcommand)]
        command: Option<SignerCommand>,
    },
    /// Throw-away PostgreSQL + anvil devnet + demo merchant, then serve.
    Dev {
        /// Port for the gateway's HTTP API (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Merchant management.
    Merchant {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// API key management.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The gas tank: the key that pays sweep gas.
    GasTank {
        #[command(subcommand)]
        command: GasTankCommand,
    },
    /// Sweeping tools.
    Sweep {
        #[command(subcommand)]
        command: SweepCommand,
    },
    /// Operator views of one payment.
    Payment {
        #[command(subcommand)]
        command: PaymentCommand,
    },
}

#[derive(Subcommand)]
enum PaymentCommand {
    /// Print the payment's transitions, transfers, events, delivery attempts and sweeps in
    /// time order, each with its trace id.
    Timeline {
        /// Payment id.
        id: Uuid,
        /// Print the JSON the admin endpoint returns instead of one line per step.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SweepCommand {
    /// List every issued address on a chain that still holds native or token funds.
    Audit {
        /// Chain name.
        #[arg(long)]
        chain: String,
        /// Also put the closed payments whose own asset is still there back in line for a
        /// sweep (the running gateway's sweeper then moves it).
        #[arg(long)]
        sweep: bool,
    },
}

#[derive(Subcommand)]
enum GasTankCommand {
    /// Print the gas tank's address and its balance on every configured chain.
    Show,
}

#[derive(Subcommand)]
enum SignerCommand {
    /// Print a merchant account's extended public key (of `m/44'/60'/{account}'/0`), to pin
    /// in the gateway's `wallet.account_xpubs`.
    AccountXpub {
        /// The merchant account number (`merchants.account_index`).
        #[arg(long)]
        account: u32,
    },
    /// Seal the configured mnemonic (`wallet.mnemonic` or its file) under
    /// `wallet.seal_passphrase` into FILE, for `wallet.mnemonic_sealed_file`.
    SealMnemonic {
        /// Where to write the sealed file (created with mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Scrypt cost as a power of two (17: about 128 MiB and a fraction of a second).
        #[arg(long, default_value_t = 17, value_parser = clap::value_parser!(u8).range(10..=22))]
        scrypt_log_n: u8,
    },
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Create a merchant and print its id and first API key (shown once).
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// Change what the merchant's payers see on its payment pages; options left out stay
    /// as they are.
    Branding {
        /// Merchant id.
        merchant: Uuid,
        /// Display name (1 to 200 characters).
        #[arg(long, value_parser = parse_name)]
        name: Option<String>,
        /// Accent colour of the page's buttons and border, `#rrggbb`, or `default`.
        #[arg(long, value_parser = parse_accent)]
        accent: Option<AccentArg>,
        /// What a token payment's QR code holds: `address` (the deposit address alone; the
        /// default, which every wallet reads right) or `eip681` (the transfer request with
        /// the amount, which some wallets misread).
        #[arg(long, value_parser = parse_token_qr)]
        token_qr: Option<TokenQr>,
    },
}

/// `--accent`: a colour, or back to the page's own.
#[derive(Debug, Clone, Copy)]
struct AccentArg(Option<Accent>);

fn parse_name(s: &str) -> Result<String, String> {
    match s.chars().count() {
        1..=200 => Ok(s.to_string()),
        _ => Err("a display name has 1 to 200 characters".into()),
    }
}

fn parse_accent(s: &str) -> Result<AccentArg, String> {
    if s == "default" {
        return Ok(AccentArg(None));
    }
    Accent::parse(s)
        .map(|a| AccentArg(Some(a)))
        .ok_or_else(|| "an accent is #rrggbb (six hexadecimal digits) or `default`".into())
}

fn parse_token_qr(s: &str) -> Result<TokenQr, String> {
    TokenQr::parse(s).ok_or_else(|| "`address` or `eip681`".into())
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create a key for a merchant (shown once).
    Create {
        /// Merchant id.
        #[arg(long)]
        merchant: Uuid,
    },
    /// Revoke a key by id.
    Revoke {
        /// Key id.
        id: Uuid,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration; print it with secrets redacted.
    Check,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve { no_migrate } => serve(Settings::load(config)?, !no_migrate).await,
        Command::Migrate => {
            let settings = Settings::load(config)?;
            let store = Store::new(&settings.database)?;
            store.migrate().await?;
            println!(
                "migrations applied; schema at version {}",
                Store::latest_migration()
            );
            Ok(())
        }
        Command::Dev { port } => dev(config, port).await,
        Command::Signer { command: None } => {
            let settings = Settings::load_for_signer(config)?;
            let (log, _flush_on_exit) = build_logger(&settings.telemetry, LogSink::Stdout);
            crate::custody::server::run(settings, log, shutdown_signal()).await
        }
        Command::Signer {
            command: Some(SignerCommand::SealMnemonic { out, scrypt_log_n }),
        } => seal_mnemonic(config, &out, scrypt_log_n),
        Command::Signer {
            command: Some(SignerCommand::AccountXpub { account }),
        } => {
            anyhow::ensure!(
                account < crate::wallet::GAS_TANK_ACCOUNT,
                "--account: not a merchant account number"
            );
            let s = signer_keys(config)?;
            let wallet =
                HdWallet::from_mnemonic(s.wallet.mnemonic.expose(), s.wallet.passphrase.expose())
                    .context("wallet.mnemonic")?;
            println!("{}", wallet.account_xpub(account)?);
            Ok(())
        }
        Command::Merchant {
            command: MerchantCommand::Create { name },
        } => {
            let store = connect(config).await?;
            let created = ops::create_merchant(&store, &name).await?;
            println!("merchant_id: {}", created.merchant.id);
            println!("api_key_id:  {}", created.key_id);
            println!(
                "api_key:     {}   (shown once; store it now)",
                created.api_key
            );
            Ok(())
        }
        Command::Merchant {
            command:
                MerchantCommand::Branding {
                    merchant,
                    name,
                    accent,
                    token_qr,
                },
        } => {
            let store = connect(config).await?;
            let found = ops::set_branding(
                &store,
                merchant,
                name.as_deref(),
                accent.map(|a| a.0),
                token_qr,
            )
            .await?;
            anyhow::ensure!(found, "no such merchant");
            println!("branding updated");
            Ok(())
        }
        Command::Apikey {
            command: ApikeyCommand::Create { merchant },
        } => {
            let store = connect(config).await?;
            let (id, raw) = ops::create_api_key(&store, merchant)
                .await?
                .context("no such merchant")?;
            println!("api_key_id: {id}");
            println!("api_key:    {raw}   (shown once; store it now)");
            Ok(())
        }
        Command::Apikey {
            command: ApikeyCommand::Revoke { id },
        } => {
            let store = connect(config).await?;
            if ops::revoke_api_key(&store, id).await? {
                println!("revoked {id}");
                Ok(())
            } else {
                anyhow::bail!("no active API key with id {id}")
            }
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let settings = Settings::load(config)?;
            print!("{}", settings.redacted_toml());
            Ok(())
        }
        Command::GasTank {
            command: GasTankCommand::Show,
        } => gas_tank_show(Settings::load(config)?).await,
        Command::Sweep {
            command: SweepCommand::Audit { chain, sweep },
        } => sweep_audit(config, &chain, sweep).await,
        Command::Payment {
            command: PaymentCommand::Timeline { id, json },
        } => payment_timeline(config, id, json).await,
    }
}

/// Prints a payment's timeline: `at  kind  trace_id  detail`, one step a line.
async fn payment_timeline(config: Option<&Path>, id: Uuid, json: bool) -> anyhow::Result<()> {
    let store = connect(config).await?;
    let client = store.client().await?;
    let steps = crate::store::timeline::timeline(&client, id)
        .await?
        .with_context(|| format!("no payment {id}"))?;
    let timeline = crate::api::admin::timeline_object(id, steps);
    if json {
        println!("{}", serde_json::to_string_pretty(&timeline)?);
        return Ok(());
    }
    for s in &timeline.steps {
        println!(
            "{}  {:<16}  {:<32}  {}",
            s.at,
            s.kind,
            s.trace_id.as_deref().unwrap_or("-"),
            s.detail
        );
    }
    Ok(())
}

/// Prints every issued address holding funds on `chain`; with `sweep`, requeues the
/// closed payments whose own asset is still there.
async fn sweep_audit(config: Option<&Path>, chain: &str, sweep: bool) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let chain = settings
        .chains
        .iter()
        .find(|c| c.name == chain)
        .with_context(|| format!("no chain {chain} in the configuration"))?;
    let store = Store::new(&settings.database)?;
    store.migrate().await?;
    let metrics = ChainMetrics::new(&prometheus::Registry::new(), &[chain.name.as_str()])?;
    let rpc = ChainRpc::new(
        chain,
        settings.supervision.rpc_timeout,
        ChainStatusRegistry::default(),
        metrics,
    )?;
    let found = crate::chain::sweeper::audit(chain, &rpc, &store).await?;
    println!(
        "{} issued address(es) on {} hold funds",
        found.len(),
        chain.name
    );
    let mut requeued = 0;
    for h in &found {
        println!(
            "{}  {}  {} {}  payment {} ({}, settlement {}){}",
            h.address.to_checksum(None),
            h.asset,
            h.amount,
            if h.asset == "native" { "wei" } else { "raw" },
            h.payment_id,
            h.status,
            h.settlement,
            if h.own_asset {
                ""
            } else {
                "  [not the payment's asset]"
            }
        );
        if sweep && h.own_asset {
            let client = store.client().await?;
            if crate::store::sweeps::requeue(&client, h.payment_id).await? {
                requeued += 1;
            }
        }
    }
    if sweep {
        println!("{requeued} payment(s) put back in line for a sweep");
    }
    Ok(())
}

/// Prints the gas tank's address and, per chain, its balance (or why it is unknown).
async fn gas_tank_show(settings: Settings) -> anyhow::Result<()> {
    // The tank's address from whoever holds the keys: the separate signer, or the
    // mnemonic here.
    let tank = match &settings.signer.socket {
        Some(path) => {
            crate::custody::remote::RemoteSigner::new(path.clone(), settings.signer.timeout)
                .address(KeyRef::GasTank)
                .await?
        }
        None => HdWallet::from_mnemonic(
            settings.wallet.mnemonic.expose(),
            settings.wallet.passphrase.expose(),
        )
        .context("wallet.mnemonic")?
        .key_address(KeyRef::GasTank)?,
    };
    println!(
        "gas tank: {}  (m/44'/60'/2147483647'/0/0)",
        tank.to_checksum(None)
    );
    let names: Vec<&str> = settings.chains.iter().map(|c| c.name.as_str()).collect();
    let metrics = ChainMetrics::new(&prometheus::Registry::new(), &names)?;
    for chain in &settings.chains {
        let rpc = ChainRpc::new(
            chain,
            settings.supervision.rpc_timeout,
            ChainStatusRegistry::default(),
            metrics.clone(),
        )?;
        let balance = match rpc.refresh_heads().await {
            Ok(_) => rpc.balance(tank).await,
            Err(e) => Err(e),
        };
        match balance {
            Ok(wei) => println!("  {}: {} wei", chain.name, wei),
            Err(e) => println!("  {}: unknown ({e})", chain.name),
        }
    }
    Ok(())
}

async fn connect(config: Option<&Path>) -> anyhow::Result<Store> {
    let settings = Settings::load(config)?;
    let store = Store::new(&settings.database)?;
    store.migrate().await?;
    Ok(store)
}

/// The settings with the mnemonic resolved (directly, by file or sealed), for the signer's
/// offline tools.
fn signer_keys(config: Option<&Path>) -> anyhow::Result<Settings> {
    let dir = std::env::var("CTRIP_CONFIG_DIR").unwrap_or_else(|_| "config".into());
    let env = std::env::var("CTRIP_ENV").ok();
    let mut s = Settings::load_layers(Path::new(&dir), env.as_deref(), config, true)?;
    s.resolve_secret_files()?;
    anyhow::ensure!(
        bip39::Mnemonic::parse_normalized(s.wallet.mnemonic.expose()).is_ok(),
        "wallet.mnemonic: missing or not a valid BIP-39 English mnemonic"
    );
    Ok(s)
}

/// Writes the configured mnemonic, sealed under the configured passphrase, to `out`.
fn seal_mnemonic(config: Option<&Path>, out: &Path, log_n: u8) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let s = signer_keys(config)?;
    anyhow::ensure!(
        s.wallet.seal_passphrase.expose().chars().count() >= 12,
        "wallet.seal_passphrase: missing or shorter than 12 characters"
    );
    let text = crate::config::sealed::seal(
        s.wallet.mnemonic.expose(),
        s.wallet.seal_passphrase.expose(),
        log_n,
    )?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist yet)", out.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    println!(
        "sealed mnemonic written to {}; set wallet.mnemonic_sealed_file to it and give the signer wallet.seal_passphrase",
        out.display()
    );
    Ok(())
}

async fn serve(settings: Settings, migrate: bool) -> anyhow::Result<()> {
    let _sentry = init_sentry(&settings.telemetry);
    let (log, _flush_on_exit) = build_logger(&settings.telemetry, LogSink::Stdout);
    let app = Application::build(settings, log, migrate).await?;
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

async fn dev(config: Option<&Path>, port: u16) -> anyhow::Result<()> {
    eprintln!("starting a throw-away PostgreSQL cluster and an anvil devnet...");
    let pg = tokio::task::spawn_blocking(TempPostgres::start).await??;
    let anvil = Anvil::start(Some(1)).await?;
    let devnet = DevChain::new(anvil.url());
    let token = devnet.deploy_demo_token().await?;
    // The payer gets a million DEMO to pay with.
    let million = alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(24u64));
    devnet.mint(token, ANVIL_PAYER.parse()?, million).await?;

    let dir = std::env::var("CTRIP_CONFIG_DIR").unwrap_or_else(|_| "config".into());
    let env = std::env::var("CTRIP_ENV").unwrap_or_else(|_| "dev".into());
    let mut s = Settings::load_layers(Path::new(&dir), Some(&env), config, true)?;
    s.database.url = Secret::new(pg.url("postgres"));
    // A fresh wallet per run: dev deposit addresses never collide with anvil's funded
    // default accounts, and nothing here is worth keeping.
    s.wallet.mnemonic = Secret::new(HdWallet::generate_mnemonic().as_str());
    s.admin.token = Secret::new(uuid::Uuid::new_v4().simple().to_string());
    s.server.bind = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if s.chains.is_empty() {
        s.chains.push(ChainSettings {
            name: "anvil".into(),
            chain_id: 31337,
            rpc_urls: vec![
                RpcUrl::parse(&anvil.url()).map_err(|e| anyhow::anyhow!("anvil url: {e}"))?
            ],
            poll_interval: None,
            max_head_lag_blocks: 5,
            scan_batch_blocks: 500,
            native_symbol: "ETH".into(),
            confirmations: 2,
            block_time: std::time::Duration::from_secs(1),
            start_block: StartBlock::Number(0),
            treasury: Some(alloy::primitives::address!(
                "a0Ee7A142d267C1f36714E4a8F75612F20a79720"
            )),
            tokens: vec![TokenSettings {
                symbol: "DEMO".into(),
                address: token,
                decimals: 18,
                min_sweep_raw: None,
            }],
            sweep: Default::default(),
        });
    }
    s.validate()?;
    let (log, _flush_on_exit) = build_logger(&s.telemetry, LogSink::Stdout);
    let app = Application::build(s, log, true).await?;
    // The gas tank pays token sweeps; on the devnet it starts with 100 ETH.
    let tank = app.signer().address(KeyRef::GasTank).await?;
    let hundred = alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(20u64));
    devnet.set_balance(&tank.to_checksum(None), hundred).await?;
    let created = ops::create_merchant(&app.state().store, "Demo merchant").await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    println!();
    println!("cTrip Gateway dev is running");
    println!("  API:      {base}");
    println!("  devnet:   {} (chain \"anvil\", id 31337)", anvil.url());
    println!("  API key:  {}", created.api_key);
    println!();
    println!("Create a payment:");
    println!(
        "curl -s -X POST {base}/v1/payments -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d '{{\"chain\":\"anvil\",\"asset\":\"native\",\"amount\":\"0.5\"}}'",
        created.api_key
    );
    println!();
    println!("Pay it in ETH (put the payment's address in place of ADDRESS):");
    println!(
        "curl -s -X POST {} -H 'Content-Type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_sendTransaction\",\"params\":[{{\"from\":\"{ANVIL_PAYER}\",\"to\":\"ADDRESS\",\"value\":\"0x6f05b59d3b20000\"}}]}}'",
        anvil.url()
    );
    println!();
    println!("Or create a DEMO token payment (asset \"DEMO\", token {}) and pay it (put the address without 0x in place of ADDRESS):", token.to_checksum(None));
    let data = format!(
        "0xa9059cbb000000000000000000000000ADDRESS{:064x}",
        alloy::primitives::U256::from(5u64)
            * alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(17u64))
    );
    println!(
        "curl -s -X POST {} -H 'Content-Type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_sendTransaction\",\"params\":[{{\"from\":\"{ANVIL_PAYER}\",\"to\":\"{}\",\"data\":\"{data}\"}}]}}'",
        anvil.url(),
        token.to_checksum(None)
    );
    println!();
    println!(
        "Watch it move: curl -s {base}/v1/payments/ID -H 'Authorization: Bearer {}'",
        created.api_key
    );
    println!();
    println!("Press Ctrl-C to stop; the cluster and the devnet are removed on exit.");
    app.run_until_stopped(shutdown_signal()).await?;
    drop(anvil);
    tokio::task::spawn_blocking(move || drop(pg)).await?;
    Ok(())
}
