//! The running service's retention of archived matches (`ARCHIVE_RETENTION_DAYS`,
//! `MAX_ARCHIVED_MATCHES`), on the store's [`crate::store::purge`].

use chrono::Utc;

use crate::store::{Store, StoreError};

/// How often the running service prunes archived matches past their retention.
pub const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// The running service's retention: every [`RETENTION_EVERY`] (and at start), archived matches
/// (played, no longer listed) that kicked off more than `days` days ago are removed from the
/// state in `dir`, through a connection of its own (the engine reloads, as after `purge`).
/// A failure is logged and tried again next time: the state stays as it was.
/// Beyond `days`, at most `cap` archived matches are kept (the newest by kick-off; 0: no cap).
pub async fn retention_loop(
    dir: std::path::PathBuf,
    days: u32,
    cap: usize,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let dir = dir.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            let mut store = Store::open_dir(&dir)?;
            let old = match days {
                0 => 0,
                d => store.prune_archived(Utc::now() - chrono::Duration::days(i64::from(d)))?,
            };
            let over = match cap {
                0 => 0,
                c => store.cap_archived(c)?,
            };
            Ok::<_, StoreError>(old + over)
        })
        .await;
        match pruned {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                matches = n,
                days,
                "archived matches past their retention removed"
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "pruning archived matches failed: trying again later")
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning archived matches failed: trying again later")
            }
        }
        // Cancel safety: both branches only wait.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
        }
    }
}
