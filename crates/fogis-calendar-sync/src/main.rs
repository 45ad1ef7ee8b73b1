//! The `fogis-calendar-sync` binary: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fogis_calendar_sync::config::{LogFormat, ServeOpts, StateOpts};
use fogis_calendar_sync::{apply_bytes, mask::MaskingWriter, open_engine, server};
use tokio_util::sync::CancellationToken;

/// A football referee's calendar that follows FOGIS in real time.
#[derive(Debug, Parser)]
#[command(name = "fogis-calendar-sync", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: HTTP API and iCalendar feed.
    Serve(ServeOpts),
    /// Apply one snapshot file (any message form) to the state and print the plan.
    Sync {
        /// The message file (JSON).
        file: PathBuf,
        /// Plan only: change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        state: StateOpts,
    },
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = || MaskingWriter(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(opts) => {
            init_logging(opts.log_format);
            serve(opts)
        }
        Command::Sync {
            file,
            dry_run,
            state,
        } => {
            init_logging(LogFormat::Pretty);
            sync_file(&file, dry_run, &state)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(opts: ServeOpts) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.bind)
            .await
            .with_context(|| format!("binding {}", opts.bind))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        fogis_calendar_sync::run(opts, listener, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    shutdown.cancel();
}

fn sync_file(file: &PathBuf, dry_run: bool, state: &StateOpts) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let engine = open_engine(state)?;
    if dry_run {
        let message = fogis_pubsub::decode(&bytes).context("decoding the message")?;
        let fogis_pubsub::Message::Matches(snapshot) = message else {
            anyhow::bail!("this is a status or alert message: it carries no matches");
        };
        let applied = engine.apply(&snapshot, "cli", true)?;
        print_plan(&applied, true);
        return Ok(ExitCode::SUCCESS);
    }
    match apply_bytes(&engine, &bytes, "cli") {
        Ok(applied) => {
            print_plan(&applied, false);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("rejected: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn print_plan(applied: &fogis_calendar_sync::engine::Applied, dry_run: bool) {
    if applied.duplicate {
        println!(
            "duplicate: message {:?} was already applied; nothing to do",
            applied.message_id
        );
        return;
    }
    println!(
        "{}",
        if dry_run {
            "plan (dry run, nothing written):"
        } else {
            "applied:"
        }
    );
    for change in &applied.plan.changes {
        let id = change
            .match_id
            .map_or_else(|| "?".to_string(), |id| id.to_string());
        let title = change
            .next
            .as_ref()
            .map(|n| {
                format!(
                    " {} ({})",
                    n.record.title(),
                    n.record.start.format("%Y-%m-%d %H:%M UTC")
                )
            })
            .unwrap_or_default();
        let reason = change
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        println!("  {:<10} {id}{title}{reason}", change.action.as_str());
    }
    let body = server::sync_response(applied);
    println!("{body}");
}
