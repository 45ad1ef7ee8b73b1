//! The micro-benchmarks (criterion): decoding every fixture form, planning 3, 300 and 3,000
//! matches (unchanged and all changed), rendering the feed of 300 matches, and `POST /sync` on
//! an in-process service through reqwest. `fogis-bench` runs them and reads their results.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fogis_bench::growth::{decode, engine};
use fogis_bench::service::Service;
use fogis_bench::workload::{fixture, fixtures_dir, list, Template};
use fogis_calendar_sync::{reconcile, render::ics};

fn decode_fixtures(c: &mut Criterion) {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut group = c.benchmark_group("decode");
    for name in names {
        let bytes = fixture(&name).unwrap();
        // `match_full.json` is one match, not a message: not a form on the wire.
        if fogis_pubsub::decode(&bytes).is_err() {
            continue;
        }
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name.trim_end_matches(".json"), |b| {
            b.iter(|| fogis_pubsub::decode(black_box(&bytes)).unwrap())
        });
    }
    group.finish();
}

fn reconcile_plans(c: &mut Criterion) {
    let mut group = c.benchmark_group("reconcile");
    let tz = chrono_tz::Europe::Stockholm;
    for n in [3usize, 300, 3000] {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).unwrap();
        engine
            .apply(&decode(&list(n, 0).unwrap()).unwrap(), "bench", false)
            .unwrap();
        let state: HashMap<i64, reconcile::StoredMatch> = engine
            .matches()
            .into_iter()
            .map(|m| (m.record.match_id, m))
            .collect();
        let now = Utc::now();
        group.throughput(Throughput::Elements(n as u64));
        for (kind, shift) in [("unchanged", 0), ("all_changed", 1)] {
            let snapshot = decode(&list(n, shift).unwrap()).unwrap();
            group.bench_with_input(BenchmarkId::new(kind, n), &snapshot, |b, s| {
                b.iter(|| reconcile::plan(black_box(&state), s, tz, now))
            });
        }
    }
    group.finish();
}

fn feed_render(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).unwrap();
    engine
        .apply(&decode(&list(300, 0).unwrap()).unwrap(), "bench", false)
        .unwrap();
    let events = engine.feed_events();
    let options = engine.feed_options();
    assert_eq!(events.len(), 300);
    let mut group = c.benchmark_group("feed");
    group.throughput(Throughput::Elements(300));
    group.bench_function("render_300", |b| {
        b.iter(|| ics::render_calendar(black_box(&events), &options))
    });
    group.finish();
}

fn http_sync(c: &mut Criterion) {
    let service = Service::in_process(None, Default::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{}/sync", service.addr);
    let template = Template::production().unwrap();
    let post = |body: Vec<u8>| {
        let response = runtime
            .block_on(client.post(&url).body(body).send())
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        runtime.block_on(response.bytes()).unwrap()
    };
    let mut group = c.benchmark_group("http");
    let mut i = 0;
    group.bench_function("sync_changed", |b| {
        b.iter(|| {
            i += 1;
            post(template.message(i, Utc::now()))
        })
    });
    let same = template.message(0, Utc::now());
    post(same.clone());
    group.bench_function("sync_duplicate", |b| b.iter(|| post(same.clone())));
    group.finish();
    service.stop().unwrap();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = micro;
    config = config();
    targets = decode_fixtures, reconcile_plans, feed_render, http_sync
}
criterion_main!(micro);
