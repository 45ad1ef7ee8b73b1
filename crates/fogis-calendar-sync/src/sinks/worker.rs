//! The worker of one sink: prepare once, then a pass per new view of the state, per item
//! backoff and per refresh, each pass planned (pure, [`super::plan`]) then executed, every
//! result recorded in the sink's ledger; a remote that is away pauses only this sink.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::lease::Gate;
use super::plan::{Plan, Step};
use super::{backoff, SinkContext, SinkError, SinkKind, StatusCell};
use crate::engine::view::StateView;
use crate::store::ledger::SinkFailure;

/// One pass: plan against the ledger, then execute, each step only while `may_write` (the
/// sink lease is still valid: a process paused past its lease writes nothing more when it
/// wakes, even before the lease task has noticed).
async fn pass(
    kind: &SinkKind,
    ctx: &SinkContext,
    view: &Arc<StateView>,
    status: &StatusCell,
    may_write: impl Fn() -> bool,
) -> Result<PassReport, SinkError> {
    let name = kind.name();
    let failures: BTreeMap<String, SinkFailure> = ctx
        .ledger(move |s| s.sink_failures(name))
        .await?
        .into_iter()
        .map(|f| (f.key.clone(), f))
        .collect();
    let now = Utc::now();
    let waiting: BTreeSet<String> = failures
        .values()
        .filter(|f| f.due > now)
        .map(|f| f.key.clone())
        .collect();
    let mut pass = Pass {
        ctx,
        name,
        status,
        failures,
        report: PassReport::default(),
    };
    match kind {
        SinkKind::CalDav(s) => {
            s.refresh(ctx).await?;
            let p = s.plan(ctx, view, &waiting).await?;
            pass.start(&p.plan);
            for step in &p.plan.steps {
                if !may_write() {
                    pass.report.interrupted = true;
                    break;
                }
                let r = s.execute(ctx, view, &p.work, step).await;
                pass.done(step, r).await?;
            }
            s.settle(ctx, pass.report.done > 0).await?;
        }
        SinkKind::CardDav(s) => {
            s.refresh(ctx).await?;
            let p = s.plan(ctx, view, &waiting).await?;
            pass.start(&p.plan);
            for step in &p.plan.steps {
                if !may_write() {
                    pass.report.interrupted = true;
                    break;
                }
                let r = s.execute(ctx, &p.work, step).await;
                pass.done(step, r).await?;
            }
            s.settle(ctx, pass.report.done > 0).await?;
        }
        SinkKind::Forward(s) => {
            let p = s.plan(ctx, view, &waiting).await?;
            pass.start(&p.plan);
            for step in &p.plan.steps {
                if !may_write() {
                    pass.report.interrupted = true;
                    break;
                }
                let r = s.execute(ctx, &p.work, step).await;
                pass.done(step, r).await?;
            }
        }
        SinkKind::GoogleCalendar(s) => {
            let p = s.plan(ctx, view, &waiting).await?;
            pass.start(&p.plan);
            for step in &p.plan.steps {
                if !may_write() {
                    pass.report.interrupted = true;
                    break;
                }
                let r = s.execute(ctx, view, &p.work, step).await;
                pass.done(step, r).await?;
            }
        }
        SinkKind::GoogleContacts(s) => {
            let p = s.plan(ctx, view, &waiting).await?;
            pass.start(&p.plan);
            for step in &p.plan.steps {
                if !may_write() {
                    pass.report.interrupted = true;
                    break;
                }
                let r = s.execute(ctx, &p.work, step).await;
                pass.done(step, r).await?;
            }
        }
    }
    Ok(pass.finish())
}

/// What one pass did.
#[derive(Debug, Default)]
struct PassReport {
    /// Steps executed.
    done: u64,
    /// Steps left for later (their items wait for their backoff).
    pending: u64,
    /// When the first waiting item is due.
    next_due: Option<DateTime<Utc>>,
    /// Stopped before its end: the lease ran out.
    interrupted: bool,
}

/// The bookkeeping of one pass: status, per-item failures.
struct Pass<'a> {
    ctx: &'a SinkContext,
    name: &'static str,
    status: &'a StatusCell,
    failures: BTreeMap<String, SinkFailure>,
    report: PassReport,
}

impl Pass<'_> {
    fn start(&mut self, plan: &Plan) {
        self.report.pending = (plan.steps.len() + plan.deferred) as u64;
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending = self.report.pending;
    }

    /// One step's result: recorded; an outage (or refused credentials) ends the pass.
    async fn done(&mut self, step: &Step, result: Result<(), SinkError>) -> Result<(), SinkError> {
        let key = step.key().to_string();
        match result {
            Ok(()) => {
                if self.failures.remove(&key).is_some() {
                    let name = self.name;
                    self.ctx
                        .ledger(move |s| s.clear_sink_failure(name, &key))
                        .await?;
                }
                self.report.done += 1;
                self.report.pending = self.report.pending.saturating_sub(1);
                let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
                st.pending = self.report.pending;
                st.last_success = Some(Utc::now());
                st.operations_done += 1;
                Ok(())
            }
            Err(e) if e.is_outage() || e.is_auth() => Err(e),
            Err(e) => {
                // This item alone is refused (a 4xx for its content): back it off and go on.
                let attempts = self.failures.get(&key).map_or(0, |f| f.attempts) + 1;
                let wait = backoff(attempts);
                let now = Utc::now();
                let failure = SinkFailure {
                    key: key.clone(),
                    attempts,
                    due: now + chrono::Duration::from_std(wait).unwrap_or_default(),
                    last_error: e.to_string(),
                };
                tracing::warn!(sink = self.name, key = %key, error = %failure.last_error, "sink refused an item, retrying in {wait:?}");
                let (name, record) = (self.name, failure.clone());
                self.ctx
                    .ledger(move |s| s.put_sink_failure(name, &record))
                    .await?;
                self.failures.insert(key, failure);
                let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
                st.last_error = Some(e.to_string());
                st.last_error_at = Some(now);
                Ok(())
            }
        }
    }

    fn finish(mut self) -> PassReport {
        self.report.next_due = self.failures.values().map(|f| f.due).min();
        self.report
    }
}

/// The worker of one sink: runs until `shutdown`. It writes only while `gate` is granted (the
/// sink lease, [`super::lease`]); a revoked grant ends the pass under way at once, and every
/// new grant (a takeover) prepares again, adopting what the other instance wrote.
pub async fn run(
    kind: SinkKind,
    ctx: SinkContext,
    status: StatusCell,
    mut gate: Gate,
    shutdown: CancellationToken,
) {
    let name = kind.name();
    let mut views = ctx.view.clone();
    // The grant the sink last prepared under.
    let mut prepared: Option<u64> = None;
    let mut failures = 0u32;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let epoch = tokio::select! {
            _ = shutdown.cancelled() => break,
            epoch = gate.granted() => epoch,
        };
        let check = gate.clone();
        let work = async {
            if prepared == Some(epoch) {
                // Marks this view seen: a newer one, even during the pass, wakes the next turn.
                let view = views.borrow_and_update().clone();
                let report = pass(&kind, &ctx, &view, &status, || check.valid(epoch)).await;
                report.map(|r| Some((view.version, r)))
            } else {
                // Under a lease (epoch > 0) the other instance may have written since this
                // ledger was: look at the remote afresh.
                kind.prepare(&ctx, epoch > 0).await.map(|()| None)
            }
        };
        // Cancel safety: a pass dropped mid-step is a crash of this sink; the ledger and the
        // writes' preconditions make the next pass (here or on the other instance) right.
        let outcome = tokio::select! {
            outcome = work => outcome,
            _ = gate.revoked(epoch) => {
                tracing::debug!(sink = name, "sink stopped: the lease is gone");
                continue;
            }
        };
        let pause = match outcome {
            Ok(report) => {
                failures = 0;
                let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                st.consecutive_failures = 0;
                st.paused_until = None;
                st.auth_failed = false;
                st.reauthorize = None;
                st.notice = kind.notice();
                // Prepared: the collection discovery found, if it did.
                st.target = kind.target();
                drop(st);
                let Some((version, report)) = report else {
                    prepared = Some(epoch);
                    continue; // prepared: pass right away
                };
                if report.interrupted {
                    // Not synced: the next grant prepares and passes again.
                    Wait::Revoked
                } else {
                    let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                    st.pending = report.pending;
                    st.synced_version = version;
                    st.last_success = Some(Utc::now());
                    drop(st);
                    let until_due = report
                        .next_due
                        .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO));
                    let wait = [until_due, kind.refresh_every()]
                        .into_iter()
                        .flatten()
                        .min()
                        .unwrap_or(Duration::from_secs(3600));
                    Wait::ForChange(wait)
                }
            }
            Err(e) => {
                failures += 1;
                let wait = match &e {
                    SinkError::Paused { wait, .. } => *wait,
                    // Only a local file is looked at until it changes: cheap to check often.
                    SinkError::Reauthorize(_) => Duration::from_secs(10),
                    _ if e.is_auth() => Duration::from_secs(600),
                    _ => backoff(failures),
                };
                let now = Utc::now();
                let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                st.consecutive_failures = failures;
                st.auth_failed = e.is_auth();
                st.reauthorize = match &e {
                    SinkError::Reauthorize(what) => Some(what.clone()),
                    _ => None,
                };
                st.notice = kind.notice();
                st.last_error = Some(e.to_string());
                st.last_error_at = Some(now);
                st.paused_until = chrono::Duration::from_std(wait).ok().map(|w| now + w);
                drop(st);
                if matches!(e, SinkError::Reauthorize(_)) {
                    // The token source said so once, for both Google sinks.
                    tracing::debug!(sink = name, error = %e, "sink waits for re-authorization");
                } else if failures == 1 || e.is_auth() || matches!(e, SinkError::Paused { .. }) {
                    tracing::warn!(sink = name, error = %e, "sink unavailable, retrying in {wait:?}");
                } else {
                    tracing::debug!(sink = name, error = %e, "sink still unavailable, retrying in {wait:?}");
                }
                Wait::Pause(wait)
            }
        };
        // Cancel safety: every branch only waits; dropping the losers loses nothing (the state
        // is in the view, the ledger in the file; the next pass plans again).
        match pause {
            Wait::Revoked => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = gate.revoked(epoch) => {}
                }
            }
            Wait::Pause(wait) => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = gate.revoked(epoch) => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Wait::ForChange(wait) => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    changed = views.changed() => {
                        if changed.is_err() {
                            // The engine is gone: the service is stopping.
                            shutdown.cancelled().await;
                            break;
                        }
                    }
                    _ = gate.revoked(epoch) => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

enum Wait {
    /// The lease ran out during the pass: wait until the lease task says so.
    Revoked,
    /// The remote is away: wait this long, whatever happens to the state.
    Pause(Duration),
    /// Up to date: wait for a new view, or this long (an item's backoff, the refresh).
    ForChange(Duration),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn context(dir: &std::path::Path) -> SinkContext {
        let settings = crate::engine::EngineSettings {
            timezone: chrono_tz::Europe::Stockholm,
            match_duration: chrono::Duration::minutes(90),
            reminder_minutes: None,
            calendar_name: "test".into(),
            hold: crate::reconcile::guard::HoldPolicy {
                withdraw_share: 0.5,
                min_withdrawals: 3,
            },
            max_matches: 100,
            title: crate::render::title::TitleTemplate::default(),
        };
        let view = StateView::new(0, 1, vec![], 0, Arc::new(settings));
        let (_, watch) = tokio::sync::watch::channel(Arc::new(view));
        SinkContext::new(watch, Store::open_dir(dir).unwrap())
    }

    #[tokio::test]
    async fn a_refused_item_waits_for_its_own_backoff_and_success_forgets_it() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let status = StatusCell::default();
        let mut pass = Pass {
            ctx: &ctx,
            name: "caldav",
            status: &status,
            failures: BTreeMap::new(),
            report: PassReport::default(),
        };
        let step = Step::Put("7".into());
        let refused = Err(SinkError::Refused("400 bad event".into()));
        let before = Utc::now();
        pass.done(&step, refused).await.unwrap();
        let other = Step::Put("8".into());
        pass.done(&other, Ok(())).await.unwrap();
        let failures = ctx.ledger(|s| s.sink_failures("caldav")).await.unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!((failures[0].key.as_str(), failures[0].attempts), ("7", 1));
        assert!(failures[0].due > before, "tried again only after a backoff");
        assert_eq!(failures[0].last_error, "400 bad event");
        let report = pass.finish();
        let due = report.next_due.map(|t| t.timestamp_millis());
        assert_eq!(
            (report.done, due),
            (1, Some(failures[0].due.timestamp_millis()))
        );

        // The next pass: it fails again (its backoff doubles), then succeeds and is forgotten.
        let mut pass = Pass {
            ctx: &ctx,
            name: "caldav",
            status: &status,
            failures: failures.into_iter().map(|f| (f.key.clone(), f)).collect(),
            report: PassReport::default(),
        };
        let refused = Err(SinkError::Refused("400 bad event".into()));
        pass.done(&step, refused).await.unwrap();
        let again = ctx.ledger(|s| s.sink_failures("caldav")).await.unwrap();
        assert_eq!(again[0].attempts, 2);
        pass.done(&step, Ok(())).await.unwrap();
        assert!(ctx
            .ledger(|s| s.sink_failures("caldav"))
            .await
            .unwrap()
            .is_empty());
        // An outage is not per item: it ends the pass and records nothing.
        let away = Err(SinkError::Remote("503".into()));
        assert!(pass.done(&step, away).await.is_err());
        assert!(ctx
            .ledger(|s| s.sink_failures("caldav"))
            .await
            .unwrap()
            .is_empty());
    }
}
