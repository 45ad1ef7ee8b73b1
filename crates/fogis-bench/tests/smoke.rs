//! The benchmark tool at tiny sizes, in process, in debug mode: it must produce numbers and
//! leave the service's state equal to the last snapshot. Nothing here asserts on time; the
//! benchmark itself is `scripts/bench`.
#![allow(clippy::unwrap_used)]

use fogis_bench::{report, Sizes, Target};

#[test]
fn every_benchmark_produces_numbers_and_the_state_ends_at_the_last_snapshot() {
    let sizes = Sizes::smoke();
    let r = fogis_bench::run(&sizes, &Target::InProcess).unwrap();

    let burst = r.burst.as_ref().unwrap();
    assert_eq!(burst.messages, sizes.burst);
    assert_eq!(
        burst.raw.messages, sizes.burst,
        "the raw subscriber counts every message"
    );
    assert_eq!(burst.service_received, sizes.burst);
    assert!(burst.raw_rate().is_some() && burst.service_rate().is_some());
    assert!(burst.converged.is_some());
    assert_eq!(burst.applied + burst.coalesced, sizes.burst);
    let (state, last) = &r.final_state;
    assert_eq!(
        state.as_deref(),
        Some(last.as_str()),
        "the state ends at the last snapshot"
    );

    let s = &r.steady;
    assert_eq!(s.sent, sizes.steady_rate * sizes.steady_seconds);
    assert_eq!(s.feed.count as u64, s.sent);
    assert!(
        s.commit.count as u64 >= s.sent,
        "every applied message left a lag sample"
    );
    assert!(s.commit.p50 > 0.0 && s.commit.max >= s.commit.p99);
    assert!(s.commit_p99_bucket.is_some());

    assert_eq!(r.starts.len(), 1);
    assert!(r.memory.idle > 0 && r.memory.burst_peak >= r.memory.idle);
    assert_eq!(r.growth.len(), sizes.growth.len());
    assert!(r
        .growth
        .iter()
        .all(|p| p.total() > std::time::Duration::ZERO));

    let md = report::markdown(&r, "");
    assert!(md.contains("| CPUs (`nproc`) |"));
    assert!(md.contains(report::FINDINGS_MARKER));
    let again = report::markdown(&r, &md.replace("(none recorded yet)", "kept text"));
    assert!(
        again.contains("kept text"),
        "the findings survive a rewrite"
    );
    assert_eq!(report::verdicts(&r).len(), 7);
}
