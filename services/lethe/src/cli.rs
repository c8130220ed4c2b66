//! The command line: `lethe serve | log verify | keys rotate | replay | erase`. Every subcommand
//! takes `--data-dir` (default `./lethe-data`); the master secret comes from the environment (see
//! README.md) or, on a new data directory with none configured, from a development key file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lethe_audit::{AuditKind, AuditVerifier};
use lethe_auth::{AuthConfig, Issuer, Role, SigningKeys};
use lethe_collect::auth::Auth;
use lethe_collect::ratelimit::{Limits, Rate, RateLimiter};
use lethe_collect::CollectState;
use lethe_crypto::{Keyring, MasterSource};
use lethe_domain::{SubjectId, UtcMicros};
use lethe_dsr::{Channel, Law, ListFilter};
use lethe_eventlog::{EventStore, LogConfig, SledEventLog};
use lethe_personalize::{Personalizer, TrainConfig};
use lethe_policy::Policies;
use lethe_privacy::audit_api::Format;
use lethe_privacy::controller::ControllerFile;
use lethe_privacy::erasure::Asker;
use lethe_privacy::{schedule, Privacy, PrivacyOptions};

use crate::app::{Application, Part, Settings};

/// Lethe: privacy-first, event-sourced personalization.
#[derive(Debug, Parser)]
#[command(name = "lethe", version, about)]
pub struct Cli {
    /// Data directory (created when missing).
    #[arg(long, global = true, env = "LETHE_DATA_DIR", default_value = "./lethe-data")]
    pub data_dir: PathBuf,
    /// File holding the master key (64 hex characters). Overrides LETHE_MASTER_KEY and LETHE_PASSPHRASE.
    #[arg(long, global = true, env = "LETHE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Policy folder. Default: `./policies` when it exists, else the policies built into the binary.
    #[arg(long, global = true, env = "LETHE_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Runs of decision and outcome receipts the log may keep out of its stream index at once (about
    /// 200 bytes of memory each). Indexing them later, several of a subject's in one entry, spares the
    /// log a random index write per receipt; at start the waiting ones are read back from the log.
    #[arg(long, global = true, env = "LETHE_MAX_UNINDEXED_RUNS",
          default_value_t = lethe_eventlog::DEFAULT_MAX_UNINDEXED_RUNS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=100_000_000))]
    pub max_unindexed_runs: usize,
    #[command(flatten)]
    pub receipts: ReceiptTiming,
    #[command(subcommand)]
    pub command: Command,
}

/// How long the log lets decision and outcome receipts wait, so that more of them share one group
/// commit (ARCHITECTURE.md, the log's contract 8). Nothing waits on a receipt; waiting longer costs
/// the log's writer less CPU per receipt, and widens what a crash can lose.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ReceiptTiming {
    /// Milliseconds the log's writer waits for more receipts before it commits a small group of them
    /// (0: no wait). An ordinary append ends the wait at once.
    #[arg(long = "receipt-linger-ms", value_name = "MS", global = true, env = "LETHE_RECEIPT_LINGER_MS",
          default_value_t = millis(lethe_eventlog::DEFAULT_DEFER_LINGER),
          value_parser = clap::value_parser!(u64).range(0..=MAX_RECEIPT_WAIT_MS))]
    pub linger_ms: u64,
    /// Milliseconds a committed group of receipts may wait for its fsync, to share it with later
    /// appends (0: receipts are synced like any other append, with no linger either). A crash loses at
    /// most the receipts of the last linger and window: personalized decisions whose lawful basis then
    /// has no receipt.
    #[arg(long = "receipt-sync-window-ms", value_name = "MS", global = true, env = "LETHE_RECEIPT_SYNC_WINDOW_MS",
          default_value_t = millis(lethe_eventlog::DEFAULT_DEFER_WINDOW),
          value_parser = clap::value_parser!(u64).range(0..=MAX_RECEIPT_WAIT_MS))]
    pub sync_window_ms: u64,
}

/// The longest receipt linger or sync window accepted: a second.
pub const MAX_RECEIPT_WAIT_MS: u64 = 1_000;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ReceiptTiming {
    /// Sets the log's linger and window for deferred appends ([`LogConfig::defer_linger`],
    /// [`LogConfig::defer_window`]).
    pub fn apply(&self, config: &mut LogConfig) {
        config.defer_linger = Duration::from_millis(self.linger_ms);
        config.defer_window = Duration::from_millis(self.sync_window_ms);
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the HTTP service.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "LETHE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// HTTP worker threads.
        #[arg(long, env = "LETHE_WORKERS", default_value_t = 2)]
        workers: usize,
        /// Seconds a request body may go without sending bytes before the request fails with 408.
        #[arg(long, env = "LETHE_BODY_TIMEOUT", default_value_t = crate::guard::BODY_IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
        body_timeout: u64,
        /// The parts to serve (repeatable or comma-separated); all by default.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = Part::ALL)]
        parts: Vec<Part>,
        /// Requests per second allowed from one client address (burst: twice as many).
        #[arg(long, env = "LETHE_RATE_PER_ADDRESS", default_value_t = 1_000.0)]
        rate_per_address: f64,
        /// Requests per second allowed with one key (burst: twice as many).
        #[arg(long, env = "LETHE_RATE_PER_KEY", default_value_t = 20_000.0)]
        rate_per_key: f64,
        /// Retrain the recommenders this often (`0` never), like `24h`.
        #[arg(long, env = "LETHE_TRAIN_EVERY", default_value = "24h")]
        train_every: String,
        /// Also serve the demo shop (/demo, /demo/privacy). Off by default, and for trying Lethe out
        /// only: the demo mints write keys for any origin it is served on and subject tokens for any
        /// anonymous id.
        #[arg(long)]
        demo: bool,
        /// A request header in which the CDN or load balancer in front sets the visitor's country
        /// (ISO 3166-1 alpha-2), such as `CF-IPCountry`; used for events that name no location. Only
        /// set it when the proxy overwrites that header on every request.
        #[arg(long, env = "LETHE_COUNTRY_HEADER")]
        country_header: Option<String>,
        /// Likewise for the region (ISO 3166-2 subdivision), such as `CloudFront-Viewer-Country-Region`.
        #[arg(long, env = "LETHE_REGION_HEADER")]
        region_header: Option<String>,
        /// Decisions held in memory for their outcomes (about 0.5 KB each, 0.75 KB when personalized
        /// over 3 candidates, 1.8 KB over 16). Past it the oldest give way: an outcome for one is
        /// refused as unknown, and `lethe_decisions_evicted_total` counts them. Size it to the
        /// decision rate times the time outcomes take to arrive. Enforced per 64th (rounded up to a
        /// multiple of 64); `lethe_decisions_pending_limit` shows the bound in effect.
        #[arg(long, env = "LETHE_PENDING_DECISIONS", default_value_t = lethe_decide::MAX_PENDING_DECISIONS,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000_000))]
        pending_decisions: usize,
        /// Decision receipts that may be on their way to the log at once (about 1 KB each). Past it,
        /// decisions fall back to the slot's default (reason `receipt_backlog`) until the log catches
        /// up: no personalized answer goes out without its receipt.
        #[arg(long, env = "LETHE_RECEIPT_BACKLOG", default_value_t = lethe_decide::DEFAULT_RECEIPT_BACKLOG,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
        receipt_backlog: usize,
    },
    /// Inspects the event log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Manages the key hierarchy.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Rebuilds the projections from the whole log and prints a summary and digest.
    Replay {
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validates the policy files.
    Policies {
        #[command(subcommand)]
        command: PoliciesCommand,
    },
    /// Issues and rotates API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Crypto-shreds a subject by its external identifier and prints the erasure certificate.
    Erase {
        /// The subject's external identifier (user id or anonymous id).
        id: String,
        /// Rotate the key epoch right away, which makes the erasure final for the data directory.
        #[arg(long)]
        now: bool,
    },
    /// Writes a consistent backup of the event log to a file (what it holds: ARCHITECTURE.md).
    Backup {
        /// The backup file to write.
        file: PathBuf,
    },
    /// Restores a backup into the data directory; erasures the live log knows are re-applied.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// Retention (R-RETAIN-1).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// The DPO's audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Data-subject requests and their deadlines.
    Requests {
        #[command(subcommand)]
        command: RequestsCommand,
    },
    /// Trains the recommenders on the subjects whose consent holds now (R-TRAIN-1) and makes the
    /// result live.
    Train,
    /// The model registry.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// The decision service's policies.
    Decide {
        #[command(subcommand)]
        command: DecideCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DecideCommand {
    /// Estimates the click-through rate a candidate policy would have had on a slot's logged
    /// personalized decisions (IPS, self-normalized IPS, doubly robust, with 95 % intervals), beside
    /// the logged policy's own.
    Evaluate {
        /// The slot.
        #[arg(long)]
        slot: String,
        /// Exploration bonus of the candidate's linear model.
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        /// Ridge regularization of the candidate's linear model.
        #[arg(long, default_value_t = 10.0)]
        lambda: f64,
        /// Exploration share of the candidate (default: the slot's).
        #[arg(long)]
        epsilon: Option<f64>,
        /// Clip importance weights at this value.
        #[arg(long)]
        max_weight: Option<f64>,
    },
    /// Trains the slot's engagement (click) model from its logged decisions and outcomes, on the
    /// subjects whose consent holds now, choosing hyperparameters by grouped k-fold grid search;
    /// registers it as a candidate.
    Train {
        /// The slot.
        #[arg(long)]
        slot: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every model version with its status, metrics and manifest summary.
    List,
    /// Whether a subject was in the training data of each non-retired model.
    TrainedOn {
        /// The subject's external identifier.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Destroys the keys of every retention period that has ended, then rotates the key epoch.
    Sweep {
        /// Sweep as of this RFC 3339 instant instead of now (for a dry run on a copy, or tests).
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verifies the audit chain (or an exported chain file): hashes, sequence and signatures.
    Verify {
        /// A chain exported with `lethe audit chain` or `GET /v1/audit/chain`.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Hex Ed25519 public key to trust (repeatable). Default: this data directory's audit key.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
    },
    /// Writes the DPO's export: consent records, requests, certificates, recipients, records of
    /// processing and audit entries.
    Export {
        /// RFC 3339 start of the window.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 end of the window.
        #[arg(long)]
        to: Option<String>,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Writes the audit chain as signed JSONL, for `lethe audit verify --file`.
    Chain {
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// Lists requests with their due dates and days left.
    List {
        /// Include completed and denied requests.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Decrypts and checks every event; reports per-subject erasure state.
    Verify {
        /// List every subject with its state.
        #[arg(long)]
        subjects: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoliciesCommand {
    /// Loads and validates a policy folder; prints every problem with its file and line.
    Check {
        /// The folder (default: the `--policies` folder).
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Prints a signed token on stdout.
    Issue {
        /// site, cms, subject, dpo or admin.
        #[arg(long)]
        role: String,
        /// The subject a `subject` token is bound to.
        #[arg(long)]
        subject: Option<String>,
        /// The site a `site` token (write key) belongs to.
        #[arg(long)]
        site: Option<String>,
        /// An origin a `site` token may be used from (repeatable).
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// Lifetime, like `90s`, `30m`, `12h`, `365d`.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Starts signing with a new key; tokens of the old key stay valid until it is retired.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Starts a new key-encryption-key epoch, re-wraps live keys and destroys the old epoch.
    Rotate,
}

/// How the log of `cli`'s data directory is opened.
fn log_config(cli: &Cli) -> LogConfig {
    let mut config = LogConfig::new(&cli.data_dir, master_source(cli));
    config.max_unindexed_runs = cli.max_unindexed_runs;
    cli.receipts.apply(&mut config);
    config
}

fn open_store(cli: &Cli) -> anyhow::Result<SledEventLog> {
    let log = SledEventLog::open(log_config(cli))
        .with_context(|| format!("cannot open the data directory {}", cli.data_dir.display()))?;
    if log.dev_key_created() {
        tracing::warn!(
            path = %cli.data_dir.join(lethe_crypto::DEV_KEY_FILE).display(),
            "created a development master key next to the data; production needs a real secret \
             (LETHE_MASTER_KEY, LETHE_MASTER_KEY_FILE or LETHE_PASSPHRASE) kept elsewhere"
        );
    } else if log.uses_dev_key() {
        tracing::warn!("using the development master key stored next to the data");
    }
    Ok(log)
}

/// Runs a parsed command line.
///
/// # Errors
/// Any failure, with context; `main` prints it.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let policies = || load_policies(cli.policies.as_deref());
    let store = || open_store(&cli);
    match &cli.command {
        Command::Serve {
            listen,
            workers,
            body_timeout,
            parts,
            rate_per_address,
            rate_per_key,
            train_every,
            demo,
            country_header,
            region_header,
            pending_decisions,
            receipt_backlog,
        } => {
            let sdk = lethe_web::SdkPolicy::find(cli.policies.as_deref())?;
            let web = lethe_web::WebOptions { sdk, demo: *demo };
            let settings = Settings {
                listen: listen.clone(),
                workers: *workers,
                parts: parts.clone(),
                web,
                body_idle_timeout: std::time::Duration::from_secs(*body_timeout),
            };
            let rate = |r: f64| Rate { per_second: r.max(0.001), burst: (2.0 * r).max(1.0) };
            let limits = Limits { per_address: rate(*rate_per_address), per_key: rate(*rate_per_key) };
            let store = store()?;
            let keyring = open_keyring(&cli)?;
            let keys = api_keys(&keyring)?;
            let controller = load_controller(cli.policies.as_deref())?;
            serve(Serve {
                store,
                keys,
                policies: policies()?,
                limits,
                settings,
                keyring,
                controller,
                data_dir: cli.data_dir.clone(),
                master: master_source(&cli),
                train_every: parse_ttl(train_every)?,
                policies_dir: cli.policies.clone(),
                edge: lethe_collect::minimize::EdgeLocation {
                    country_header: country_header.clone(),
                    region_header: region_header.clone(),
                },
                pending_decisions: *pending_decisions,
                receipt_backlog: *receipt_backlog,
            })
        }
        Command::Policies { command: PoliciesCommand::Check { dir } } => {
            let dir = dir.clone().or_else(|| cli.policies.clone()).unwrap_or_else(|| PathBuf::from("policies"));
            let p = Policies::load(&dir)?;
            // The folder's other files, checked as `lethe serve` reads them.
            let mut also = Vec::new();
            if dir.join(lethe_web::config::FILE).exists() {
                lethe_web::SdkPolicy::load(&dir)?;
                also.push(lethe_web::config::FILE);
            }
            if dir.join("slots.toml").exists() {
                lethe_decide::Slots::load(&dir, &p)?;
                also.push("slots.toml");
            }
            println!(
                "{}: {} purposes, {} data categories, {} event types, {} notices{}: valid",
                dir.display(),
                p.purposes().count(),
                p.categories().count(),
                p.events().count(),
                p.notices().count(),
                also.iter().map(|f| format!(", {f}")).collect::<String>()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Log { command: LogCommand::Verify { subjects, json } } => verify(&store()?, *subjects, *json),
        Command::Keys { command: KeysCommand::Rotate } => {
            let privacy = open_privacy(&cli, store()?)?;
            let report = privacy.collect.store.rotate_keys().context("key rotation failed")?;
            privacy.audit(AuditKind::KeyRotation, "cli", None, serde_json::to_value(&report)?).map_err(api_err)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { json } => replay(&store()?, *json),
        Command::Token { command } => token(&open_keyring(&cli)?, command),
        Command::Erase { id, now } => {
            let id = SubjectId::parse(id)?;
            let privacy = open_privacy(&cli, store()?)?;
            let personalizer = open_personalizer(&cli, Arc::clone(&privacy))?;
            let subject = privacy.collect.store.pseudonymize(&id);
            let asker = Asker { role: "cli", law: Law::Gdpr, channel: Channel::Api };
            let certificate = lethe_privacy::erasure::erase(&privacy, &subject, asker).map_err(api_err)?;
            // The feature views are not running: the keys of their checkpoint (which held the subject) go.
            lethe_personalize::views::discard_checkpoint(&cli.data_dir, &master_source(&cli))
                .context("cannot discard the views checkpoint")?;
            println!("{}", serde_json::to_string_pretty(&certificate)?);
            if *now {
                let report = schedule::finalize_if_due(&privacy, UtcMicros::now(), true).map_err(api_err)?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                // R-ERASE-7: models trained on the subject are retrained without it and retired.
                match personalizer.unlearn_pending() {
                    Ok(Some(r)) => eprintln!("models retrained without the subject: {}", serde_json::to_string(&r)?),
                    Ok(None) | Err(lethe_personalize::TrainError::NothingToTrain) => {}
                    Err(e) => anyhow::bail!("unlearning failed ({}): {e}", e.code()),
                }
            } else {
                eprintln!("erased; final for this data directory after the next `lethe keys rotate` (lethe serve does it within its window)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { file } => {
            let privacy = open_privacy(&cli, store()?)?;
            let report = privacy.collect.store.backup(file).context("backup failed")?;
            privacy
                .audit(AuditKind::Backup, "cli", None, serde_json::json!({"records": report.records, "bytes": report.bytes, "digest": report.digest, "head": report.header.head, "epoch": report.header.epoch}))
                .map_err(api_err)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { file } => {
            // The feature-view checkpoint describes the log being replaced.
            lethe_personalize::views::discard_checkpoint(&cli.data_dir, &master_source(&cli))
                .context("cannot discard the views checkpoint")?;
            let (log, report) = lethe_eventlog::restore(log_config(&cli), file)
                .with_context(|| format!("cannot restore {}", file.display()))?;
            let privacy = open_privacy(&cli, log)?;
            privacy.audit(AuditKind::Restore, "cli", None, serde_json::to_value(&report)?).map_err(api_err)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Retention { command: RetentionCommand::Sweep { at } } => {
            let at = match at {
                Some(t) => lethe_privacy::time::parse_rfc3339(t).map_err(anyhow::Error::msg)?,
                None => UtcMicros::now(),
            };
            let privacy = open_privacy(&cli, store()?)?;
            let report = schedule::sweep(&privacy, at).map_err(api_err)?;
            if report.keys_destroyed > 0 {
                // The views are not running here: their checkpoint may hold what expired.
                lethe_personalize::views::discard_checkpoint(&cli.data_dir, &master_source(&cli))
                    .context("cannot discard the views checkpoint")?;
            }
            println!("{}", serde_json::to_string_pretty(&report)?);
            let rotation = schedule::finalize_if_due(&privacy, UtcMicros::now(), true).map_err(api_err)?;
            println!("{}", serde_json::to_string_pretty(&rotation)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => audit(&cli, command),
        Command::Train => {
            let personalizer = open_personalizer(&cli, open_privacy(&cli, store()?)?)?;
            match personalizer.train("cli") {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => anyhow::bail!("training failed ({}): {e}", e.code()),
            }
        }
        Command::Models { command } => {
            let privacy = open_privacy(&cli, store()?)?;
            let personalizer = open_personalizer(&cli, Arc::clone(&privacy))?;
            match command {
                ModelsCommand::List => {
                    for v in personalizer.registry().all()? {
                        println!(
                            "{}",
                            serde_json::json!({
                                "id": v.id.to_string(), "name": v.name.as_str(), "version": v.version,
                                "algorithm": v.algorithm, "status": format!("{:?}", v.status),
                                "subjects": v.manifest.subjects, "log_position": v.manifest.log_position,
                                "metrics": v.metrics,
                            })
                        );
                    }
                }
                ModelsCommand::TrainedOn { id } => {
                    let subject = privacy.collect.store.pseudonymize(&SubjectId::parse(id)?);
                    let ids = personalizer.registry().containing(&subject)?;
                    println!(
                        "{}",
                        serde_json::json!({"models": ids.iter().map(ToString::to_string).collect::<Vec<_>>()})
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Decide { command: DecideCommand::Evaluate { slot, alpha, lambda, epsilon, max_weight } } => {
            let engine = open_engine(&cli, store()?)?;
            let index = engine.slots.index_of(slot).with_context(|| format!("no slot `{slot}` is declared"))?;
            let params = lethe_decide::engine::PolicyParams {
                alpha: *alpha,
                lambda: *lambda,
                epsilon: *epsilon,
                ..lethe_decide::engine::PolicyParams::default()
            };
            let report = lethe_decide::ope::evaluate_slot(&engine, index, &params, *max_weight)
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Decide { command: DecideCommand::Train { slot } } => {
            let engine = open_engine(&cli, store()?)?;
            let report = lethe_decide::train::train_engagement(&engine, slot, "cli")
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Requests { command: RequestsCommand::List { all } } => {
            let privacy = open_privacy(&cli, store()?)?;
            let filter = if *all { ListFilter::all() } else { ListFilter::all().open() };
            let now = UtcMicros::now();
            for r in privacy.requests.list(&filter)? {
                println!("{}", serde_json::to_string(&lethe_privacy::requests_api::describe(&privacy, &r, now))?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn api_err(e: lethe_collect::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", e.code, e.message)
}

/// Opens the privacy service over an open log (the consent book is replayed from it).
fn open_privacy(cli: &Cli, store: SledEventLog) -> anyhow::Result<Arc<Privacy>> {
    let keyring = open_keyring(cli)?;
    let keys = api_keys(&keyring)?;
    let auth = Arc::new(Auth::new(keys, AuthConfig::default()));
    let policies = load_policies(cli.policies.as_deref())?;
    let controller = load_controller(cli.policies.as_deref())?;
    let store: Arc<dyn EventStore> = Arc::new(store);
    let collect = CollectState::build(store, Arc::new(policies), auth).context("cannot replay the log")?;
    let options = PrivacyOptions::from_controller(&controller);
    Privacy::open(&cli.data_dir, &keyring, collect, controller, options).context("cannot open the privacy database")
}

/// The trainer and model registry over an open privacy service; it forgets with every erasure.
fn open_personalizer(cli: &Cli, privacy: Arc<Privacy>) -> anyhow::Result<Arc<Personalizer>> {
    let personalizer =
        Personalizer::open(&cli.data_dir, &master_source(cli), Arc::clone(&privacy), TrainConfig::default())
            .context("cannot open the model registry")?;
    privacy.register(personalizer.clone());
    Ok(personalizer)
}

/// The decision engine over the log, offline: privacy, registry, feature views replayed from the
/// log, and the decisions still in their window replayed from their receipts.
fn open_engine(cli: &Cli, store: SledEventLog) -> anyhow::Result<Arc<lethe_decide::Engine>> {
    let privacy = open_privacy(cli, store)?;
    let personalizer = open_personalizer(cli, Arc::clone(&privacy))?;
    let views = Arc::new(
        lethe_personalize::Views::replay(Arc::clone(&privacy.collect.store), &privacy.collect.policies)
            .context("cannot build the feature views")?,
    );
    let slots = load_slots(cli.policies.as_deref(), &privacy.collect.policies)?;
    lethe_decide::Engine::open(slots, privacy.collect.clone(), views, personalizer, Arc::clone(&privacy))
        .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))
}

/// The controller file: in the policy folder when it has one, else the built-in copy.
fn load_controller(dir: Option<&Path>) -> anyhow::Result<ControllerFile> {
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("policies"));
    Ok(ControllerFile::load(&dir)?)
}

fn write_to(out: Option<&Path>) -> anyhow::Result<Box<dyn std::io::Write>> {
    Ok(match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

fn audit(cli: &Cli, command: &AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { file, public_keys } => {
            let mut verifier = AuditVerifier::new();
            for k in public_keys {
                let bytes: [u8; 32] = hex::decode(k)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| anyhow::anyhow!("a public key is 64 hex characters"))?;
                let key = lethe_audit::VerifyingKey::from_bytes(&bytes).context("not an Ed25519 public key")?;
                verifier.trust(lethe_audit::key_id_for(&key), key)?;
            }
            let result = match file {
                Some(path) => {
                    if verifier.is_empty() {
                        verifier = local_verifier(cli)?;
                    }
                    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                    lethe_audit::verify_jsonl(std::io::BufReader::new(f), &verifier)
                }
                None => {
                    let store = open_store(cli)?;
                    let privacy = open_privacy(cli, store)?;
                    if !verifier.is_empty() {
                        privacy.audit.verify_with(&verifier)
                    } else {
                        privacy.audit.verify()
                    }
                }
            };
            match result {
                // An exported chain must end on a signature: without one, its tail could be cut or
                // rewritten by anyone, since entry hashes need no key.
                Ok(report) if file.is_some() && !report.fully_signed() => {
                    println!(
                        "FAILED: {} entries after the last signed checkpoint are not signed",
                        report.unsigned_tail
                    );
                    Ok(ExitCode::FAILURE)
                }
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("FAILED: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::Export { from, to, format, out } => {
            let format = match format.as_str() {
                "jsonl" => Format::Jsonl,
                "csv" => Format::Csv,
                other => anyhow::bail!("unknown format `{other}`: jsonl or csv"),
            };
            let parse = |t: &Option<String>, d| t.as_deref().map_or(Ok(d), lethe_privacy::time::parse_rfc3339);
            let from = parse(from, UtcMicros(0)).map_err(anyhow::Error::msg)?;
            let to = parse(to, UtcMicros(i64::MAX)).map_err(anyhow::Error::msg)?;
            let privacy = open_privacy(cli, open_store(cli)?)?;
            let bar = progress_bar(privacy.collect.store.head().0);
            let counts =
                lethe_privacy::audit_api::write_export(&privacy, from, to, format, write_to(out.as_deref())?, |p| {
                    bar.set_position(p)
                })
                .map_err(api_err)?;
            bar.finish_and_clear();
            privacy
                .audit(AuditKind::Export, "cli", None, serde_json::json!({"what": "audit export", "counts": counts}))
                .map_err(api_err)?;
            eprintln!("{}", serde_json::to_string(&counts)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Chain { out } => {
            let privacy = open_privacy(cli, open_store(cli)?)?;
            let w = write_to(out.as_deref())?;
            let summary = if privacy.audit.head().0 > 0 {
                privacy.audit.export_jsonl_signed(w, 1, UtcMicros::now().0)?
            } else {
                privacy.audit.export_jsonl(w, 1)?
            };
            eprintln!("{summary:?}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The verifier of this data directory's audit key, read from the key store only.
fn local_verifier(cli: &Cli) -> anyhow::Result<AuditVerifier> {
    let keyring = open_keyring(cli)?;
    let secret = keyring
        .blob("audit-signing-key")?
        .ok_or_else(|| anyhow::anyhow!("this data directory has no audit key; pass --public-key"))?;
    let secret: [u8; 32] = secret[..].try_into().map_err(|_| anyhow::anyhow!("the audit key is damaged"))?;
    let public = lethe_audit::VerifyingKey::from(&ed25519_signing_key(&secret));
    let mut v = AuditVerifier::new();
    v.trust(lethe_audit::key_id_for(&public), public)?;
    Ok(v)
}

fn ed25519_signing_key(secret: &[u8; 32]) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(secret)
}

/// Loads the policies: an explicit folder, else `./policies` when present, else the built-in copy.
///
/// # Errors
/// Any invalid policy file, with file and line.
pub fn load_policies(dir: Option<&Path>) -> anyhow::Result<Policies> {
    let local = Path::new("policies");
    let policies = match dir {
        Some(dir) => Policies::load(dir)?,
        None if local.join(lethe_policy::files::PURPOSES).exists() => Policies::load(local)?,
        None => Policies::builtin()?,
    };
    Ok(policies)
}

/// Loads the decision slots: `slots.toml` in the policy folder (explicit, else `./policies`), else
/// the built-in copy.
///
/// # Errors
/// An invalid slot file.
pub fn load_slots(dir: Option<&Path>, policies: &Policies) -> anyhow::Result<lethe_decide::Slots> {
    let local = Path::new("policies");
    let slots = match dir {
        Some(dir) => lethe_decide::Slots::load(dir, policies)?,
        None if local.join("slots.toml").exists() => lethe_decide::Slots::load(local, policies)?,
        None => lethe_decide::Slots::builtin(policies)?,
    };
    Ok(slots)
}

/// Name of the sealed file holding the API signing keys.
const API_KEYS: &str = "api-signing-keys";

/// The API signing keys, created (and sealed in the key store) on first use. Only the key store is
/// opened, not the log, so tokens can be issued while `lethe serve` holds the log.
///
/// # Errors
/// Key store errors.
pub fn api_keys(keyring: &Keyring) -> anyhow::Result<SigningKeys> {
    if let Some(json) = keyring.blob(API_KEYS)? {
        let text = std::str::from_utf8(&json).context("signing keys are not UTF-8")?;
        return Ok(SigningKeys::from_json(text)?);
    }
    let keys = SigningKeys::generate()?;
    keyring.put_blob(API_KEYS, keys.to_json()?.as_bytes())?;
    Ok(keys)
}

fn master_source(cli: &Cli) -> MasterSource {
    match &cli.master_key_file {
        Some(path) => MasterSource::KeyFile(path.clone()),
        None => MasterSource::from_env(),
    }
}

fn open_keyring(cli: &Cli) -> anyhow::Result<Keyring> {
    Keyring::open(&cli.data_dir, &master_source(cli))
        .with_context(|| format!("cannot open the key store in {}", cli.data_dir.display()))
}

fn parse_ttl(s: &str) -> anyhow::Result<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().with_context(|| format!("bad ttl `{s}`"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => anyhow::bail!("bad ttl unit in `{s}`: use s, m, h or d"),
    };
    Ok(Duration::from_secs(secs))
}

fn token(keyring: &Keyring, command: &TokenCommand) -> anyhow::Result<ExitCode> {
    let mut keys = api_keys(keyring)?;
    match command {
        TokenCommand::Issue { role, subject, site, origins, ttl } => {
            let role: Role = serde_json::from_value(serde_json::Value::String(role.clone()))
                .map_err(|_| anyhow::anyhow!("unknown role `{role}`: site, cms, subject, dpo or admin"))?;
            let subject = subject.as_deref().map(SubjectId::parse).transpose()?;
            let token = Issuer::issue(
                &keys,
                &AuthConfig::default(),
                role,
                parse_ttl(ttl)?,
                subject.as_ref(),
                site.as_deref(),
                origins,
            )?;
            println!("{token}");
        }
        TokenCommand::Rotate => {
            let kid = keys.rotate()?;
            keyring.put_blob(API_KEYS, keys.to_json()?.as_bytes())?;
            println!("signing with key {kid} (restart `lethe serve` to pick it up)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `lethe serve` runs with.
struct Serve {
    store: SledEventLog,
    keys: SigningKeys,
    policies: Policies,
    limits: Limits,
    settings: Settings,
    keyring: Keyring,
    controller: ControllerFile,
    data_dir: PathBuf,
    master: MasterSource,
    train_every: Duration,
    policies_dir: Option<PathBuf>,
    edge: lethe_collect::minimize::EdgeLocation,
    pending_decisions: usize,
    receipt_backlog: usize,
}

fn serve(args: Serve) -> anyhow::Result<ExitCode> {
    let Serve {
        store,
        keys,
        policies,
        limits,
        settings,
        keyring,
        controller,
        data_dir,
        master,
        train_every,
        policies_dir,
        edge,
        pending_decisions,
        receipt_backlog,
    } = args;
    let slots = load_slots(policies_dir.as_deref(), &policies)?;
    tracing::info!(
        purposes = policies.purposes().count(),
        event_types = policies.events().count(),
        notices = policies.notices().count(),
        "policies loaded"
    );
    let auth = Arc::new(Auth::new(keys, AuthConfig::default()));
    let store: Arc<dyn EventStore> = Arc::new(store);
    let mut collect = CollectState::build(store, Arc::new(policies), auth).context("cannot replay the log")?;
    collect.limits = Arc::new(RateLimiter::new(limits));
    collect.edge = Arc::new(edge);
    let options = PrivacyOptions::from_controller(&controller);
    let privacy = Privacy::open(&data_dir, &keyring, collect.clone(), controller, options)
        .context("cannot open the privacy database")?;
    drop(keyring);
    let personalizer = Personalizer::open(&data_dir, &master, Arc::clone(&privacy), TrainConfig::default())
        .context("cannot open the model registry")?;
    privacy.register(personalizer.clone());
    // Feature views live in memory; at start they are restored from their sealed checkpoint and caught up (or
    // replayed from the log), and they are checkpointed under a new key at start and at every erasure.
    let views = Arc::new(
        lethe_personalize::Views::open(
            Arc::clone(&privacy.collect.store),
            &privacy.collect.policies,
            &data_dir,
            &master,
        )
        .context("cannot build the feature views")?,
    );
    privacy.register(views.clone());
    // Training records the serving features' distribution from these views (drift monitoring).
    personalizer.attach_views(Arc::clone(&views));
    tracing::info!(subjects = views.subjects(), origin = %views.origin(), "feature views built");
    let engine = lethe_decide::Engine::open_with(
        slots,
        privacy.collect.clone(),
        Arc::clone(&views),
        Arc::clone(&personalizer),
        Arc::clone(&privacy),
        lethe_decide::Limits { pending_decisions, receipt_backlog },
    )
    .context("cannot open the decision engine")?;
    privacy.register(engine.clone());
    let decide = Arc::new(lethe_decide::DecideState { engine: Arc::clone(&engine), recommenders: Default::default() });
    let views_at_exit = Arc::clone(&views);
    crate::background::follow_views(&views).context("cannot start the feature views' thread")?;
    actix_web::rt::System::new().block_on(async move {
        let _background = settings
            .parts
            .contains(&Part::Privacy)
            .then(|| schedule::start(Arc::clone(&privacy), Duration::from_secs(5)))
            .transpose()?;
        if settings.parts.contains(&Part::Privacy) {
            actix_web::rt::spawn(models_loop(personalizer, privacy.options.finality, train_every));
        }
        actix_web::rt::spawn(async move {
            loop {
                actix_web::rt::time::sleep(Duration::from_secs(60)).await;
                engine.expire(UtcMicros::now());
            }
        });
        let app = Application::build_with_decisions(&settings, collect, Some(privacy), Some(decide))?;
        tracing::info!(port = app.port(), listen = %settings.listen, "lethe is serving");
        app.run_until_stopped().await?;
        anyhow::Ok(())
    })?;
    // Orderly shutdown: the next start catches up from here.
    if let Err(e) = views_at_exit.checkpoint() {
        tracing::warn!(code = e.code(), error = %e, "cannot checkpoint the feature views at shutdown");
    }
    Ok(ExitCode::SUCCESS)
}

/// Unlearning within the finality window (R-ERASE-7) and regular retraining on fresh data.
async fn models_loop(personalizer: Arc<Personalizer>, window: Duration, train_every: Duration) {
    let mut last_train = std::time::Instant::now();
    loop {
        actix_web::rt::time::sleep(Duration::from_secs(5).min(window.max(Duration::from_millis(200)))).await;
        let due = personalizer.pending().ok().and_then(|p| p.iter().map(|(_, at)| *at).min()).is_some_and(|oldest| {
            let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
            oldest.0.saturating_add(window / 2) <= UtcMicros::now().0
        });
        let retrain = !train_every.is_zero() && last_train.elapsed() >= train_every;
        if !due && !retrain {
            continue;
        }
        let p = Arc::clone(&personalizer);
        let result =
            tokio::task::spawn_blocking(move || if due { p.unlearn_pending() } else { p.train("system").map(Some) })
                .await;
        match result {
            Ok(Ok(_) | Err(lethe_personalize::TrainError::NothingToTrain)) => last_train = std::time::Instant::now(),
            Ok(Err(e)) => tracing::error!(code = e.code(), error = %e, "model work failed; retrying"),
            Err(e) => tracing::error!(error = %e, "model task panicked"),
        }
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} events ({per_sec}, eta {eta})")
            .expect("valid template"),
    );
    bar
}

fn replay(store: &SledEventLog, json: bool) -> anyhow::Result<ExitCode> {
    let bar = progress_bar(store.head().0);
    let summary = crate::replay::replay(store, |p| bar.set_position(p.0)).context("replay failed")?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "replayed {} events: {} readable, {} tombstones, {} erasure fences, {} subjects",
            summary.events, summary.readable, summary.tombstones, summary.fences, summary.subjects
        );
        for (t, n) in &summary.by_type {
            println!("  {t:<32} {n}");
        }
        println!("digest {}", summary.digest);
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(store: &SledEventLog, subjects: bool, json: bool) -> anyhow::Result<ExitCode> {
    let report = store.verify().context("verification failed")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} events: {} decrypted, {} tombstones, {} erasure fences; {} subjects, {} erased; key epoch {}{}",
            report.events,
            report.decrypted,
            report.tombstones,
            report.fences,
            report.subjects,
            report.erased_subjects,
            report.current_epoch,
            if report.rotation_pending {
                " (rotation pending: run `lethe keys rotate` to make erasures final)"
            } else {
                ""
            }
        );
        if subjects {
            for s in &report.per_subject {
                println!("  {} {:>8} events  {}", s.pseudonym, s.events, s.state);
            }
        }
        for p in &report.failures {
            println!("FAILED to decrypt at position {}", p.0);
        }
        for p in &report.problems {
            println!("PROBLEM {p}");
        }
    }
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("lethe").chain(args.iter().copied()))
    }

    #[test]
    fn the_receipt_timing_reaches_the_log_config_before_or_after_the_subcommand() {
        let before = parse(&["--receipt-linger-ms", "20", "--receipt-sync-window-ms", "40", "log", "verify"]).unwrap();
        let after = parse(&["serve", "--receipt-linger-ms", "0", "--receipt-sync-window-ms", "1000"]).unwrap();
        let (b, a) = (log_config(&before), log_config(&after));
        assert_eq!((b.defer_linger, b.defer_window), (Duration::from_millis(20), Duration::from_millis(40)));
        assert_eq!((a.defer_linger, a.defer_window), (Duration::ZERO, Duration::from_secs(1)));
    }

    #[test]
    fn without_flags_the_receipt_timing_is_the_logs_default() {
        let c = log_config(&parse(&["log", "verify"]).unwrap());
        assert_eq!(c.defer_linger, lethe_eventlog::DEFAULT_DEFER_LINGER);
        assert_eq!(c.defer_window, lethe_eventlog::DEFAULT_DEFER_WINDOW);
    }

    #[test]
    fn a_receipt_wait_past_a_second_or_not_a_number_is_refused() {
        for (flag, value) in
            [("--receipt-linger-ms", "1001"), ("--receipt-sync-window-ms", "-1"), ("--receipt-linger-ms", "5ms")]
        {
            let e = parse(&[flag, value, "log", "verify"]).unwrap_err();
            assert!(
                matches!(e.kind(), clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::UnknownArgument),
                "{flag} {value}: {:?}",
                e.kind()
            );
            assert!(e.to_string().contains(value), "{e}");
        }
    }
}
