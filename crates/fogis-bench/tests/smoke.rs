//! The benchmark tool at tiny sizes, in process, in debug mode: it must produce numbers and
//! leave the service's state equal to the last snapshot. Nothing here asserts on time; the
//! benchmark itself is `scripts/bench`.
#![allow(clippy::unwrap_used)]

use fogis_bench::{report, Part, Sizes, Target};

#[test]
fn every_benchmark_produces_numbers_and_the_state_ends_at_the_last_snapshot() {
    let sizes = Sizes::smoke();
    let parts: Vec<Part> = Part::ALL
        .into_iter()
        .filter(|p| *p != Part::Micro)
        .collect();
    let r = fogis_bench::run(&sizes, &Target::InProcess, &parts).unwrap();

    assert_eq!(r.bursts.len(), sizes.burst_runs, "one result per burst run");
    for run in &r.bursts {
        let burst = &run.burst;
        assert_eq!(burst.messages, sizes.burst);
        assert_eq!(
            burst.raw.messages, sizes.burst,
            "the raw subscriber counts every message"
        );
        assert_eq!(burst.service_received, sizes.burst);
        assert!(burst.raw_rate().is_some() && burst.service_rate().is_some());
        assert!(burst.converged.is_some());
        assert!(burst.clean());
        assert_eq!(burst.applied + burst.coalesced, sizes.burst);
        let (state, last) = &run.final_state;
        assert_eq!(
            state.as_deref(),
            Some(last.as_str()),
            "the state ends at the last snapshot"
        );
        assert!(run.peak > 0);
    }

    assert_eq!(
        r.steady.len(),
        sizes.steady_runs,
        "one result per steady run"
    );
    for s in &r.steady {
        assert_eq!(s.sent, sizes.steady_rate * sizes.steady_seconds);
        assert_eq!(s.feed.count as u64, s.sent);
        assert!(
            s.commit.count as u64 >= s.sent,
            "every applied message left a lag sample"
        );
        assert!(s.commit.p50 > 0.0 && s.commit.max >= s.commit.p99);
        assert!(s.commit_p99_bucket.is_some());
    }

    let c = r.caldav.as_ref().unwrap();
    assert!(c.sent > 0);
    assert_eq!(c.lag.count as u64, c.sent, "every change reached Radicale");
    assert!(c.lag.p50 > 0.0 && c.poll.count as u64 >= c.sent);

    let l = r.large.as_ref().unwrap();
    assert_eq!(l.matches, sizes.large_matches);
    assert!(l.pages > 0 && l.health.count > 0);
    assert_eq!(l.errors, 0);

    assert_eq!(r.starts.len(), sizes.starts);
    assert!(r.memory.idle > 0 && r.memory.burst_peak >= r.memory.idle);
    assert_eq!(r.growth.len(), sizes.growth.len());
    assert!(r
        .growth
        .iter()
        .all(|p| p.total() > std::time::Duration::ZERO));

    let md = report::markdown(&r, "");
    assert!(md.contains("| CPUs (`nproc`) |"));
    assert!(md.contains(report::FINDINGS_MARKER));
    assert!(md.contains("### Burst runs"));
    assert_eq!(
        report::burst_table(&r).lines().count(),
        2 + sizes.burst_runs,
        "a row per burst run"
    );
    assert_eq!(
        report::steady_table(&r).lines().count(),
        2 + sizes.steady_runs
    );
    let again = report::markdown(&r, &md.replace("(none recorded yet)", "kept text"));
    assert!(
        again.contains("kept text"),
        "the findings survive a rewrite"
    );
    let verdicts = report::verdicts(&r);
    assert!(verdicts.iter().any(|v| v.target.contains("CalDAV")));
    assert!(verdicts
        .iter()
        .any(|v| v.target.contains("/health < 50 ms")));
    // The micro-benchmarks were not run: no verdict on them.
    assert!(!verdicts.iter().any(|v| v.target.contains("decode")));
    assert!(md.contains("Not measured in this invocation: micro."));
}

#[test]
fn a_part_runs_alone() {
    let sizes = Sizes::smoke();
    let r = fogis_bench::run(&sizes, &Target::InProcess, &[Part::Burst]).unwrap();
    assert_eq!(r.bursts.len(), sizes.burst_runs);
    assert!(r.steady.is_empty() && r.starts.is_empty() && r.growth.is_empty());
    assert!(r.caldav.is_none() && r.large.is_none());
    let targets = report::targets(&r);
    assert!(targets.contains("burst"));
    assert!(!targets.contains("steady") && !targets.contains("ready"));
}
