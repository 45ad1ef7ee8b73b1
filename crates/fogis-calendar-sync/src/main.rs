//! The `fogis-calendar-sync` binary: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fogis_calendar_sync::config::{LogFormat, ServeOpts, StateOpts};
use fogis_calendar_sync::{apply_bytes, http::api as server, mask::MaskingWriter, open_engine};

mod remote;
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
    Serve(Box<ServeOpts>),
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
    /// Publish a message file (any form) on a Redis channel, with a fresh message_id and
    /// timestamp unless --raw.
    Publish {
        /// The message file (JSON).
        file: PathBuf,
        /// The channel to publish on.
        #[arg(long, default_value = "fogis:matches:updates")]
        channel: String,
        /// Publish the bytes as they are.
        #[arg(long)]
        raw: bool,
        #[arg(
            long,
            env = "REDIS_URL",
            default_value = "redis://127.0.0.1:6379",
            hide_env_values = true
        )]
        redis_url: String,
        #[command(flatten)]
        durable: fogis_calendar_sync::config::DurableOpts,
    },
    /// List, apply or discard the lists held by the guard against emptying the calendar.
    Held {
        #[command(subcommand)]
        action: HeldAction,
        #[command(flatten)]
        state: StateOpts,
    },
    /// Remove personal data from the state (see SECURITY.md). Sinks (CalDAV, CardDAV,
    /// Google) keep their own copies: remove those there.
    Purge {
        /// Remove matches that kicked off more than this many days ago.
        #[arg(long)]
        older_than_days: Option<u32>,
        /// Remove the quarantined inputs and held lists.
        #[arg(long)]
        inputs: bool,
        /// Remove everything the state holds.
        #[arg(long)]
        everything: bool,
        #[command(flatten)]
        state: StateOpts,
    },
    /// Print a running service's health and Redis status.
    Status(RemoteOpts),
    /// Exit 0 when a running service answers /health with 200, 1 otherwise (for container
    /// health checks: needs no curl).
    Healthcheck(RemoteOpts),
    /// Authorize Google Calendar and Contacts: prints a URL to open in a browser, then writes
    /// GOOGLE_TOKEN_FILE (installed-app flow, loopback redirect on 127.0.0.1, PKCE).
    GoogleAuth(fogis_calendar_sync::config::google::GoogleAuthOpts),
}

#[derive(Debug, Subcommand)]
enum HeldAction {
    /// Show the held lists, pending first.
    List,
    /// Apply a held list now (an operator's confirmation).
    Apply { id: i64 },
    /// Drop a held list.
    Discard { id: i64 },
}

/// Where the running service is.
#[derive(Debug, clap::Args)]
struct RemoteOpts {
    /// The service's base URL; default: derived from BIND.
    #[arg(long, env = "SERVICE_URL")]
    url: Option<String>,
    #[arg(long, env = "BIND", default_value = "127.0.0.1:9083", hide = true)]
    bind: std::net::SocketAddr,
}

impl RemoteOpts {
    fn base(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| remote::base_url(&self.bind))
            .trim_end_matches('/')
            .to_string()
    }
}

/// Logs to standard error, masked, through a thread of its own (the guard flushes it at exit):
/// writing a line is then no system call on the way from a Redis message to its commit.
/// Colour only on a terminal, and never with `NO_COLOR` set (docker logs, journald and files get
/// plain text).
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        // Block rather than drop lines when the writer falls behind.
        .lossy(false)
        .finish(MaskingWriter(std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
    guard
}

/// Colour on a terminal only, and not when `NO_COLOR` is set to anything non-empty
/// (no-color.org).
fn use_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(opts) => {
            let _log = init_logging(opts.log_format);
            serve(*opts)
        }
        Command::Sync {
            file,
            dry_run,
            state,
        } => {
            let _log = init_logging(LogFormat::Pretty);
            sync_file(&file, dry_run, &state)
        }
        Command::Publish {
            file,
            channel,
            raw,
            redis_url,
            durable,
        } => publish(&file, &channel, raw, &redis_url, &durable),
        Command::Held { action, state } => {
            let _log = init_logging(LogFormat::Pretty);
            held(action, &state)
        }
        Command::Purge {
            older_than_days,
            inputs,
            everything,
            state,
        } => purge(older_than_days, inputs, everything, &state),
        Command::Status(remote) => status(&remote),
        Command::Healthcheck(remote) => healthcheck(&remote),
        Command::GoogleAuth(opts) => google_auth(&opts),
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn publish(
    file: &PathBuf,
    channel: &str,
    raw: bool,
    redis_url: &str,
    durable: &fogis_calendar_sync::config::DurableOpts,
) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (payload, message_id) = if raw {
        (bytes, None)
    } else {
        let mut value: serde_json::Value = serde_json::from_slice(&bytes)
            .context("the file is not JSON (use --raw to send it anyway)")?;
        if value.is_array() {
            // A bare list has nowhere to carry an id: send it in the flat form.
            value = serde_json::json!({"matches": value, "metadata": {}});
        }
        let id = fogis_pubsub::publisher::stamp_fresh(&mut value)?;
        (serde_json::to_vec(&value)?, Some(id))
    };
    let url = fogis_pubsub::RedisUrl::new(redis_url.to_string())?;
    let publisher = fogis_pubsub::Publisher::new(url);
    let targets = fogis_pubsub::PublishTargets {
        channel: channel.to_string(),
        latest_key: durable.latest_key(),
        stream: durable.stream().map(|key| fogis_pubsub::StreamTarget {
            key,
            max_len: durable.redis_stream_maxlen,
        }),
    };
    let report = runtime()?.block_on(publisher.publish_snapshot(&payload, &targets))?;
    println!(
        "published {} bytes on {channel} to {} subscriber(s){}{}{}",
        payload.len(),
        report.receivers,
        message_id
            .map(|id| format!(", message_id {id}"))
            .unwrap_or_default(),
        targets
            .latest_key
            .map(|k| format!(", latest key {k}"))
            .unwrap_or_default(),
        report
            .stream_id
            .map(|id| format!(", stream entry {id}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn held(action: HeldAction, state: &StateOpts) -> anyhow::Result<ExitCode> {
    let engine = open_engine(state)?;
    match action {
        HeldAction::List => {
            let holds = engine.holds()?;
            if holds.is_empty() {
                println!("no held lists");
            }
            for h in holds {
                println!(
                    "#{:<4} {:<10} {} {} ({} matches, from {}): {}",
                    h.id,
                    h.state,
                    h.at.format("%Y-%m-%d %H:%M:%S UTC"),
                    h.message_id.as_deref().unwrap_or("-"),
                    h.matches,
                    h.origin,
                    h.reason
                );
            }
        }
        HeldAction::Apply { id } => {
            let applied = engine.apply_held(id, "cli-operator")?;
            print_plan(&applied, false);
        }
        HeldAction::Discard { id } => {
            if !engine.discard_held(id)? {
                anyhow::bail!("no pending held list #{id}");
            }
            println!("discarded held list #{id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn purge(
    older_than_days: Option<u32>,
    inputs: bool,
    everything: bool,
    state: &StateOpts,
) -> anyhow::Result<ExitCode> {
    if older_than_days.is_none() && !inputs && !everything {
        anyhow::bail!("say what to purge: --older-than-days N, --inputs or --everything");
    }
    let opts = fogis_calendar_sync::store::purge::PurgeOptions {
        matches_before: older_than_days
            .map(|d| chrono::Utc::now() - chrono::Duration::days(i64::from(d))),
        inputs,
        everything,
    };
    let engine = open_engine(state)?;
    let report = engine.with_store(|s| s.purge(opts))?;
    println!(
        "purged {} matches, {} quarantined inputs, {} held lists, {} log lines",
        report.matches, report.quarantined, report.held, report.log_lines
    );
    Ok(ExitCode::SUCCESS)
}

fn status(opts: &RemoteOpts) -> anyhow::Result<ExitCode> {
    let base = opts.base();
    let (health, redis) = runtime()?.block_on(remote::fetch_status(&base))?;
    print!("{}", remote::render_status(&base, &health, &redis));
    Ok(ExitCode::SUCCESS)
}

fn google_auth(
    opts: &fogis_calendar_sync::config::google::GoogleAuthOpts,
) -> anyhow::Result<ExitCode> {
    use fogis_calendar_sync::sinks::google::auth;
    let flow = auth::AuthFlow::from_opts(opts);
    let path = runtime()?.block_on(auth::authorize(&flow, |url| {
        println!("Open this URL in a browser and allow access:\n\n  {url}\n");
        println!("Waiting for the browser to come back to 127.0.0.1 ...");
    }))?;
    println!(
        "Authorized. Wrote {}: point GOOGLE_TOKEN_FILE at it.",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn healthcheck(opts: &RemoteOpts) -> anyhow::Result<ExitCode> {
    let base = opts.base();
    let ok = runtime()?.block_on(remote::healthy(&base, std::time::Duration::from_secs(3)));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
    use fogis_calendar_sync::engine::Outcome;
    match &applied.outcome {
        Outcome::Duplicate => {
            println!(
                "duplicate: message {:?} was already applied; nothing to do",
                applied.message_id
            );
            return;
        }
        Outcome::Stale => {
            println!("stale: older than the list applied last; nothing to do");
            return;
        }
        Outcome::Held(h) => {
            println!("held, not applied (#{}): {}", h.id, h.reason);
            println!("apply it with: fogis-calendar-sync held apply {}", h.id);
            return;
        }
        Outcome::Applied => {}
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

#[cfg(test)]
mod tests {
    use super::use_colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
