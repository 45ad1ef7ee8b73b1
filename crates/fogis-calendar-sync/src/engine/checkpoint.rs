//! How often the service's state checkpoints its write-ahead log.
//!
//! SQLite in WAL mode copies the log back into the database file (a *checkpoint*) from inside
//! the commit that takes the log past `wal_autocheckpoint` pages (1,000 by default): that commit
//! also pays for the copy and its `fsync`s, several milliseconds instead of a fraction of one.
//! With about ten pages a snapshot, one commit in a hundred did: the 99th percentile of the sync
//! lag. The service checkpoints every [`PAGES`] pages instead, so one commit in about four
//! hundred pays, for a larger copy (the log grows to about 16 MB before it is copied back).
//!
//! Measured alternative, not taken: checkpointing from a thread of its own every second moved
//! the copy out of the commits but made the 99th percentile worse, not better: its `fsync`s
//! stall the writer's own log writes on the same file system, and there were more of them. See
//! BENCHMARKS.md.
//!
//! Durability is unchanged: every snapshot is one committed transaction in the log, which
//! survives a crash of the process either way (`synchronous = NORMAL`); a checkpoint only moves
//! committed pages into the main file. The CLI keeps SQLite's default.

use crate::engine::Engine;

/// Log pages between two checkpoints (4 KiB each).
pub const PAGES: i64 = 4000;

/// Sets the engine's connection to checkpoint every [`PAGES`] pages.
pub fn tune(engine: &Engine) {
    let set = engine.with_store(|s| s.set_autocheckpoint(PAGES));
    if let Err(e) = set {
        tracing::warn!(error = %e, "could not set wal_autocheckpoint; keeping SQLite's default");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_checkpoints_less_often() -> anyhow::Result<()> {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            state: crate::config::StateOpts,
        }
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().display().to_string();
        let opts = <Wrapper as clap::Parser>::try_parse_from(["t", "--data-dir", &data_dir])?;
        let engine = crate::engine::open_engine(&opts.state)?;
        let pages = |e: &Engine| e.with_store(|s| s.autocheckpoint());
        assert_eq!(pages(&engine)?, 1000, "SQLite's default, for the CLI");
        tune(&engine);
        assert_eq!(pages(&engine)?, PAGES);
        Ok(())
    }
}
