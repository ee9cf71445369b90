//! `ovnlb`: the command line. `ovnlb network …` (with `load-balancer` and `forward`)
//! against a running ovnlbd, and `ovnlb reconcile`, one ad-hoc pass from a desired-state
//! file or store into OVN Northbound, without a daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "ovnlb",
    version,
    about = "Network load balancers and forwards for OVN"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connect: ovnlb::cli::Connect,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Networks, their load balancers and forwards, through ovnlbd.
    #[command(subcommand)]
    Network(ovnlb::cli::NetworkCmd),
    /// One reconcile pass from a desired-state file into NB, then exit: 0 when NB
    /// matches the desired state afterwards.
    Reconcile {
        #[command(flatten)]
        nb: ovnlb::daemon::NbArgs,
        /// The desired state (YAML: networks with load_balancers and forwards).
        #[arg(
            short = 'f',
            long = "file",
            conflicts_with = "db",
            required_unless_present = "db"
        )]
        file: Option<PathBuf>,
        /// The desired state from an ovnlb SQLite store (as ovnlbd keeps it).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Print the plan, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Owner id written to, and required in, external_ids:ovnlb:owner.
        #[arg(long, default_value = "ovnlb")]
        owner: String,
        /// Also delete this owner's rows of networks absent from the file.
        #[arg(long)]
        prune: bool,
        /// Give up after this many seconds without a usable NB server.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Network(cmd) => {
            let mut out = std::io::stdout();
            ovnlb::cli::run(cmd, &cli.connect, &mut out).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile {
            nb,
            file,
            db,
            dry_run,
            format,
            owner,
            prune,
            timeout,
        } => {
            let source = match (file, db) {
                (Some(file), _) => ovnlb::daemon::Source::File(file),
                (None, Some(db)) => ovnlb::daemon::Source::Db(db),
                (None, None) => anyhow::bail!("give -f FILE or --db STORE"),
            };
            let nb = nb.settings();
            let pass = ovnlb::daemon::OneShot {
                source,
                nb,
                pass: ovnlb::daemon::pass_options(owner, dry_run, prune),
                timeout: Duration::from_secs(timeout),
            };
            let report = match ovnlb::daemon::reconcile_once(pass).await? {
                ovnlb::daemon::OneShotOutcome::Done(r) => r,
                ovnlb::daemon::OneShotOutcome::Invalid(errors) => {
                    if matches!(format, Format::Json) {
                        println!(
                            "{}",
                            serde_json::json!({"errors": errors, "applied": false})
                        );
                    }
                    eprintln!("Error: invalid desired state, nothing applied:");
                    for e in &errors {
                        eprintln!("  {e}");
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Text => {
                    let verb = if dry_run { "plan" } else { "applied" };
                    if report.plans.is_empty() {
                        println!("{verb}: nothing to do");
                    }
                    for p in &report.plans {
                        println!(
                            "{verb} for network {} ({} operation(s)):",
                            p.network,
                            p.ops.len()
                        );
                        for op in &p.ops {
                            println!("  {op}");
                        }
                    }
                    for e in &report.errors {
                        eprintln!("Error: {e}");
                    }
                }
            }
            if dry_run || report.converged {
                Ok(if report.errors.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            } else {
                eprintln!("Error: NB does not match the desired state after the pass");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
