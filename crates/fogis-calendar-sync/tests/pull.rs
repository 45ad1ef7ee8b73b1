//! The pull source: FOGIS's own list, from a local server that plays the stack's
//! fogis-api-client service, heals what pub/sub lost, and a failing source changes nothing.
//! Scenarios (a)-(f) of the issue, with a real redis-server where Redis plays a part.
#![allow(clippy::unwrap_used)]

#[path = "common/api_client_fake.rs"]
mod api_client_fake;
mod common;

use std::time::Duration;

use api_client_fake::{Answer, ApiClientFake};
use common::*;
use fogis_pubsub::{Publisher, RedisUrl};
use serde_json::{json, Value};
use test_support::RedisServer;

const MATCH_CHANNEL: &str = "fogis:matches:updates";
const STATUS_CHANNEL: &str = "fogis:processor:status";

/// Raw FOGIS matches (the production fixture's), `days` ahead, as the api-client serves them.
fn fogis_list(days: &[i64]) -> Value {
    future_snapshot(days, "unused")["payload"]["matches"].clone()
}

/// `list` with match `index`'s home team renamed: a change any message would carry.
fn renamed(mut list: Value, index: usize, home: &str) -> Value {
    list[index]["lag1namn"] = json!(home);
    list
}

/// The processor's message carrying `list`.
fn processor_message(list: &Value, id: &str) -> Vec<u8> {
    let mut msg = fixture_json("processor_match_updates.json");
    msg["payload"]["matches"] = list.clone();
    msg["message_id"] = json!(id);
    serde_json::to_vec(&msg).unwrap()
}

/// The stored titles, sorted.
async fn titles(svc: &Service) -> Vec<String> {
    let m = svc.get_json("/matches").await;
    let mut t: Vec<String> = m["matches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["in_feed"] == true)
        .map(|m| m["title"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

/// Waits until the feed (the real ICS, parsed) has an event titled `summary`.
async fn wait_feed_has(svc: &Service, summary: &str, limit: Duration) {
    eventually(
        &format!("`{summary}` in the feed"),
        limit,
        Duration::from_millis(20),
        || async {
            let feed = svc.feed().await;
            let events = parse_feed(&feed);
            if events
                .iter()
                .any(|e| e.props.get("SUMMARY").map(String::as_str) == Some(summary))
            {
                Ok(())
            } else {
                Err(format!("{:?}", titles(svc).await))
            }
        },
    )
    .await;
}

/// Waits until `/health`'s `pull` object satisfies `pred`; returns the whole health answer.
async fn wait_pull(
    svc: &Service,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    svc.wait_json("/health", what, limit, |h| pred(&h["pull"]))
        .await
}

fn total(pull: &Value, result: &str) -> u64 {
    pull["totals"][result].as_u64().unwrap_or(0)
}

fn pulls(pull: &Value) -> u64 {
    pull["totals"]
        .as_object()
        .map(|t| t.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// Waits until a pull happened and none is due.
async fn wait_for_quiet(svc: &Service) {
    wait_pull(svc, "no pull due", Duration::from_secs(15), |p| {
        pulls(p) >= 1 && p["next_pull_at"].is_null() && p["in_progress"] == false
    })
    .await;
}

fn with_pull(opts: &mut fogis_calendar_sync::config::ServeOpts, url: &str, interval: u64) {
    opts.pull.fogis_api_client_url = Some(url.to_string());
    opts.pull.fogis_pull_interval_seconds = interval;
    opts.pull.fogis_pull_timeout_seconds = 2;
}

/// [`with_pull`] from `api`, and pub/sub from the Redis at `redis_url`.
fn with_redis_and_pull(
    opts: &mut fogis_calendar_sync::config::ServeOpts,
    redis_url: &str,
    api: &ApiClientFake,
    interval: u64,
) {
    opts.redis = redis_opts(Some(redis_url));
    with_pull(opts, &api.url, interval);
}

/// A service subscribed to the Redis at `redis_url` and pulling from `api` every `interval`
/// seconds (0: on events only); returned once it is connected to Redis.
async fn start_on_redis(redis_url: &str, api: &ApiClientFake, interval: u64) -> Service {
    let svc = Service::start_with(|o| with_redis_and_pull(o, redis_url, api, interval)).await;
    svc.wait_redis_connected(Duration::from_secs(5)).await;
    svc
}

/// (f) and "Done means": HTTP only, no processor, no Redis: the list is in the feed and on the
/// status page at once, and a change reaches it after one interval, by pulls alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_only_converges_by_pulls_alone() {
    let list = fogis_list(&[5, 6, 7]);
    let api = ApiClientFake::start(Answer::Bare(list.clone())).await;
    let svc = Service::start_with(|o| with_pull(o, &api.url, 1)).await;
    wait_feed_has(&svc, "Home 0 - Away 0", Duration::from_secs(5)).await;
    assert_eq!(titles(&svc).await.len(), 3);
    let health = wait_pull(&svc, "applied", Duration::from_secs(5), |p| {
        p["last_result"] == "applied"
    })
    .await;
    assert_eq!(health["attention"], json!([]), "{health}");
    assert_eq!(health["pull"]["last_trigger"], "start");
    let page = svc.get_text("/").await;
    assert!(page.contains("FOGIS pull"), "{page}");
    assert!(page.contains("Home 0"), "the list is on the status page");
    assert!(
        page.contains(&api.url.replace("http://", "")),
        "the source is named"
    );

    // FOGIS changes; no message anywhere: the next pull has it (the wrapped form this time).
    api.set(Answer::Wrapped(renamed(list, 1, "Renamed")));
    wait_feed_has(&svc, "Renamed - Away 1", Duration::from_secs(10)).await;
    let pull = wait_pull(&svc, "an interval pull", Duration::from_secs(5), |p| {
        p["last_trigger"] == "interval" || total(p, "applied") >= 2
    })
    .await;
    assert_eq!(pull["pull"]["consecutive_failures"], 0);
    let metrics = svc.get_text("/metrics").await;
    assert!(
        metrics.contains("fogis_pull_total{result=\"applied\"} "),
        "{metrics}"
    );
    assert!(
        metrics.contains("fogis_pull_duration_seconds_count "),
        "{metrics}"
    );
    assert!(!metrics.contains("fogis_pull_last_success_timestamp_seconds 0\n"));
}

/// (a) The service is down while a changed list is published on pub/sub only (as the real
/// processor does: no catch-up key): after the start, the feed has the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_published_while_down_is_back_after_the_start() {
    let redis = RedisServer::start();
    let url = redis.url();
    let list = fogis_list(&[5, 6]);
    let api = ApiClientFake::start(Answer::Bare(list.clone())).await;
    let svc = start_on_redis(&url, &api, 3600).await;
    wait_feed_has(&svc, "Home 0 - Away 0", Duration::from_secs(5)).await;
    let dir = svc.stop().await;

    // The processor sees the change, publishes it (nobody listens) and moves on.
    let changed = renamed(list, 0, "Moved");
    let p = Publisher::new(RedisUrl::new(url.clone()).unwrap());
    let receivers = p
        .publish(MATCH_CHANNEL, processor_message(&changed, "lost-1"))
        .await
        .unwrap();
    assert_eq!(receivers, 0, "nobody heard it");
    api.set(Answer::Bare(changed));

    let svc = Service::start_in(dir, |o| with_redis_and_pull(o, &url, &api, 3600)).await;
    wait_feed_has(&svc, "Moved - Away 0", Duration::from_secs(5)).await;
    assert_eq!(redis.cli(&["EXISTS", "fogis:matches:latest"]).trim(), "0");
    let health = svc.get_json("/health").await;
    assert_eq!(health["pull"]["last_trigger"], "start", "{health}");
}

/// (b) Redis restarts while a change is published: after the reconnect the feed has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_published_while_redis_restarts_is_back_after_the_reconnect() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let list = fogis_list(&[5, 6]);
    let api = ApiClientFake::start(Answer::Bare(list.clone())).await;
    // Event-driven pulls only: whatever comes back, the reconnect brought it.
    let svc = start_on_redis(&url, &api, 0).await;
    wait_feed_has(&svc, "Home 0 - Away 0", Duration::from_secs(5)).await;
    // A first subscription after the start pull was sent asks for another pull (what was
    // published in between is gone); wait for it, so that nothing but the reconnect is left.
    wait_for_quiet(&svc).await;

    redis.stop();
    svc.wait_json(
        "/redis-status",
        "disconnected",
        Duration::from_secs(10),
        |s| s["redis_status"]["connected"] == false,
    )
    .await;
    // The processor publishes the change into the restarting Redis: lost.
    api.set(Answer::Bare(renamed(list, 1, "During restart")));
    redis.start_again();
    svc.wait_redis_connected(Duration::from_secs(10)).await;
    wait_feed_has(&svc, "During restart - Away 1", Duration::from_secs(15)).await;
    let health = svc.get_json("/health").await;
    assert_eq!(health["pull"]["last_trigger"], "reconnect", "{health}");
}

/// (c) A referee swap that no message ever carries (the processor compares `domarid`, FOGIS
/// sends `domareid`) reaches the feed within one interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referee_swap_no_message_carries_reaches_the_feed_within_an_interval() {
    let redis = RedisServer::start();
    let url = redis.url();
    let list = fogis_list(&[5, 6]);
    let api = ApiClientFake::start(Answer::Bare(list.clone())).await;
    let svc = start_on_redis(&url, &api, 2).await;
    // The processor's own list, on pub/sub.
    let p = Publisher::new(RedisUrl::new(url.clone()).unwrap());
    p.publish(MATCH_CHANNEL, processor_message(&list, "processor-1"))
        .await
        .unwrap();
    wait_feed_has(&svc, "Home 0 - Away 0", Duration::from_secs(5)).await;
    let before = svc.feed().await;
    assert!(!before.contains("Eva Swapped"));

    let mut swapped = list;
    let referee = &mut swapped[0]["domaruppdraglista"][1];
    referee["domareid"] = json!(99_999);
    referee["personnamn"] = json!("Eva Swapped");
    referee["namn"] = json!("Eva Swapped");
    api.set(Answer::Bare(swapped));
    eventually(
        "the new referee in the feed",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let feed = svc.feed().await;
            let e = event(&parse_feed(&feed), 7_000_000).clone();
            let description = e.props.get("DESCRIPTION").cloned().unwrap_or_default();
            if description.contains("Eva Swapped") {
                Ok(())
            } else {
                Err(description)
            }
        },
    )
    .await;
}

/// (e) The source down for a while (500, no answer, garbage, an object that is no list):
/// nothing changes, the state says why, and it recovers by itself. A slow answer within the
/// timeout is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_changes_nothing_says_why_and_recovers() {
    let list = fogis_list(&[5, 6, 7]);
    let api = ApiClientFake::start(Answer::Bare(list.clone())).await;
    let svc = Service::start_with(|o| with_pull(o, &api.url, 1)).await;
    wait_feed_has(&svc, "Home 0 - Away 0", Duration::from_secs(5)).await;
    let before = titles(&svc).await;

    let bad_days = [
        (
            Answer::FogisDown("FOGIS login failed for 070-123 45 67".into()),
            "failed",
            "HTTP 500 from the fogis-api-client service",
        ),
        (Answer::Hang, "failed", "no answer within 2 s"),
        (
            Answer::Raw("<html>502 Bad Gateway</html>".into()),
            "invalid",
            "not JSON",
        ),
        (
            Answer::Raw("{\"status\": \"ok\"}".into()),
            "invalid",
            "no match list",
        ),
        (Answer::Raw("[]".into()), "held", "empty"),
    ];
    for (answer, result, words) in bad_days {
        let seen = total(&svc.get_json("/health").await["pull"], result);
        api.set(answer);
        let health = wait_pull(&svc, result, Duration::from_secs(15), |p| {
            let said = p["last_detail"]
                .as_str()
                .unwrap_or_default()
                .contains(words);
            total(p, result) > seen && (said || result == "held")
        })
        .await;
        assert_eq!(titles(&svc).await, before, "{result}: nothing changed");
        if result == "held" {
            // An empty list is FOGIS answering, not failing: the guard holds it.
            assert_eq!(health["held_snapshots"], 1, "{health}");
            continue;
        }
        let attention = health["attention"].to_string();
        assert!(attention.contains("FOGIS pull source fails"), "{attention}");
        assert!(attention.contains(words), "{attention}");
        // The source's own words are never shown: only the status code.
        assert!(!health.to_string().contains("login failed"), "{health}");
        let page = svc.get_text("/").await;
        assert!(page.contains("attempt(s)"), "the status page says it fails");
        let metrics = svc.get_text("/metrics").await;
        assert!(
            metrics.contains(&format!("fogis_pull_total{{result=\"{result}\"}} ")),
            "{metrics}"
        );
    }
    let quarantine = svc.get_json("/quarantine").await;
    assert!(
        quarantine["entries"].to_string().contains("pull"),
        "a bad answer is kept for inspection: {quarantine}"
    );

    // FOGIS is back, slowly: the change arrives, and the attention goes away.
    api.set(Answer::Slow(
        Duration::from_millis(1500),
        Box::new(Answer::Bare(renamed(list, 2, "Back"))),
    ));
    wait_feed_has(&svc, "Back - Away 2", Duration::from_secs(15)).await;
    let health = wait_pull(&svc, "recovered", Duration::from_secs(5), |p| {
        p["consecutive_failures"] == 0
    })
    .await;
    assert_eq!(
        health["attention"].as_array().map(Vec::len),
        Some(0),
        "{health}"
    );
}

/// A pulled list is dropped when a live list was applied while the request was under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_answer_overtaken_by_a_live_list_is_dropped() {
    let old = fogis_list(&[5, 6]);
    let api = ApiClientFake::start(Answer::Slow(
        Duration::from_millis(1500),
        Box::new(Answer::Bare(old.clone())),
    ))
    .await;
    let svc = Service::start_with(|o| with_pull(o, &api.url, 0)).await;
    eventually(
        "the start pull sent",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async {
            (api.requests() >= 1)
                .then_some(())
                .ok_or_else(|| "no request".to_string())
        },
    )
    .await;
    let newer = renamed(old, 0, "Newer");
    let (status, body) = svc.post("/sync", processor_message(&newer, "live-1")).await;
    assert_eq!(status, 200, "{body}");
    let health = wait_pull(&svc, "dropped", Duration::from_secs(5), |p| {
        p["last_result"] == "dropped"
    })
    .await;
    assert_eq!(
        health["attention"],
        json!([]),
        "a dropped answer is no failure"
    );
    assert!(titles(&svc).await.contains(&"Newer - Away 0".to_string()));
}

/// A `completed` with changes but no match list since its `started` is a lost publish: the
/// list is pulled. A cycle whose list did arrive is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_publish_is_pulled() {
    let redis = RedisServer::start();
    let url = redis.url();
    let list = fogis_list(&[5, 6]);
    let api = ApiClientFake::start(Answer::Bare(list.clone())).await;
    let svc = start_on_redis(&url, &api, 0).await;
    wait_for_quiet(&svc).await;
    let p = Publisher::new(RedisUrl::new(url.clone()).unwrap());
    let started = fixture("processing_status_started.json");
    let completed = fixture("processing_status_completed.json");

    // A whole cycle: started, the list, completed. Nothing lost.
    let changed = renamed(list.clone(), 0, "Published");
    p.publish(STATUS_CHANNEL, &started).await.unwrap();
    p.publish(MATCH_CHANNEL, processor_message(&changed, "cycle-1"))
        .await
        .unwrap();
    p.publish(STATUS_CHANNEL, &completed).await.unwrap();
    wait_feed_has(&svc, "Published - Away 0", Duration::from_secs(5)).await;
    let s = svc
        .wait_json(
            "/redis-stats",
            "two status messages",
            Duration::from_secs(5),
            |s| s["status_messages"] == 2,
        )
        .await;
    assert_eq!(s["lost_publishes"], 0, "{s}");

    // started, then completed with changes, and the list in between lost.
    api.set(Answer::Bare(renamed(list, 1, "Lost")));
    p.publish(STATUS_CHANNEL, &started).await.unwrap();
    p.publish(STATUS_CHANNEL, &completed).await.unwrap();
    wait_feed_has(&svc, "Lost - Away 1", Duration::from_secs(15)).await;
    let s = svc.get_json("/redis-stats").await;
    assert_eq!(s["lost_publishes"], 1, "{s}");
    let health = svc.get_json("/health").await;
    assert_eq!(health["pull"]["last_trigger"], "lost_publish", "{health}");
}

/// (d) A held mass withdrawal from the processor stays held while FOGIS's own list disagrees,
/// and is applied when the pull agrees; the hold says a pull confirmed it. The other way round
/// too: a withdrawal first seen by a pull is applied when the processor's list agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_withdrawal_is_applied_when_the_pull_agrees_and_stays_held_when_not() {
    let redis = RedisServer::start();
    let url = redis.url();
    let full = fogis_list(&[5, 6, 7, 8]);
    let api = ApiClientFake::start(Answer::Bare(full.clone())).await;
    let svc = start_on_redis(&url, &api, 1).await;
    wait_feed_has(&svc, "Home 3 - Away 3", Duration::from_secs(5)).await;
    let p = Publisher::new(RedisUrl::new(url.clone()).unwrap());

    // The processor says three of the four matches are gone; FOGIS still lists them.
    let one = json!([full[0].clone()]);
    p.publish(MATCH_CHANNEL, processor_message(&one, "withdraw-1"))
        .await
        .unwrap();
    svc.wait_json(
        "/held",
        "the withdrawal held",
        Duration::from_secs(5),
        |h| h["pending"] == 1,
    )
    .await;
    let seen = pulls(&svc.get_json("/health").await["pull"]);
    wait_pull(&svc, "two more pulls", Duration::from_secs(10), |p| {
        pulls(p) >= seen + 2
    })
    .await;
    let held = svc.get_json("/held").await;
    assert_eq!(held["pending"], 1, "FOGIS disagrees: it stays held: {held}");
    assert_eq!(titles(&svc).await.len(), 4, "nothing withdrawn");

    // FOGIS agrees now: the next pull confirms and applies it.
    api.set(Answer::Bare(one.clone()));
    let held = svc
        .wait_json(
            "/held",
            "the hold confirmed",
            Duration::from_secs(10),
            |h| h["pending"] == 0,
        )
        .await;
    let record = &held["held"][0];
    assert_eq!(record["state"], "confirmed", "{held}");
    assert_eq!(record["resolved_by"], "pull", "{held}");
    assert_eq!(titles(&svc).await, vec!["Home 0 - Away 0".to_string()]);

    // The other way round: FOGIS lists the four again (a pull applies it: it withdraws
    // nothing), then drops three; the pull holds that, and the processor's list confirms it.
    api.set(Answer::Bare(full.clone()));
    wait_feed_has(&svc, "Home 3 - Away 3", Duration::from_secs(10)).await;
    api.set(Answer::Bare(json!([full[1].clone()])));
    let held = svc
        .wait_json(
            "/held",
            "the pulled withdrawal held",
            Duration::from_secs(10),
            |h| h["pending"] == 1,
        )
        .await;
    assert_eq!(held["held"][0]["origin"], "pull", "{held}");
    p.publish(
        MATCH_CHANNEL,
        processor_message(&json!([full[1].clone()]), "withdraw-2"),
    )
    .await
    .unwrap();
    svc.wait_json(
        "/held",
        "confirmed by the processor",
        Duration::from_secs(5),
        |h| h["pending"] == 0 && h["held"][0]["state"] == "confirmed",
    )
    .await;
    assert_eq!(titles(&svc).await, vec!["Home 1 - Away 1".to_string()]);
}

/// The old processors' body-less `POST /sync` ("sync now") starts a pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_less_sync_trigger_starts_a_pull() {
    let list = fogis_list(&[5, 6]);
    let api = ApiClientFake::start(Answer::Bare(list.clone())).await;
    let svc = Service::start_with(|o| with_pull(o, &api.url, 0)).await;
    wait_feed_has(&svc, "Home 0 - Away 0", Duration::from_secs(5)).await;
    wait_for_quiet(&svc).await;
    api.set(Answer::Bare(renamed(list, 0, "Triggered")));
    for body in ["", "{}"] {
        let (status, answer) = svc.post("/sync", body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "success");
        assert_eq!(answer["pull_started"], true, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("pull"),
            "{answer}"
        );
    }
    // At most one pull per 10 s after the start pull: within 15 s it is there.
    wait_feed_has(&svc, "Triggered - Away 0", Duration::from_secs(15)).await;
    let health = wait_pull(&svc, "the pull recorded", Duration::from_secs(5), |p| {
        p["in_progress"] == false && p["last_result"] == "applied"
    })
    .await;
    assert_eq!(health["pull"]["last_trigger"], "sync_request", "{health}");
    assert_eq!(
        pulls(&health["pull"]),
        2,
        "the two triggers were merged into one pull"
    );
}

/// A failing source is logged once per outage (and its recovery once), by the binary, on
/// the stderr `docker logs` shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_is_logged_once_per_outage() {
    let list = fogis_list(&[5]);
    let api = ApiClientFake::start(Answer::FogisDown("FOGIS login failed".into())).await;
    let dir = tempfile::tempdir().unwrap();
    // Not waited for: the first probe of `failures` waits for it to serve.
    let mut svc = ServiceProcess::builder()
        .env("DATA_DIR", dir.path().join("data"))
        .env("REDIS_ENABLED", "false")
        .env("FOGIS_API_CLIENT_URL", &api.url)
        .env("FOGIS_PULL_INTERVAL_SECONDS", "1")
        .env("FOGIS_PULL_TIMEOUT_SECONDS", "1")
        .env_remove("RUST_LOG")
        .start_now();
    let failures = |min: u64| {
        let svc = &svc;
        async move {
            eventually(
                &format!("{min} failed pulls"),
                Duration::from_secs(20),
                Duration::from_millis(50),
                || async {
                    let h = svc.get_json("/health").await.ok_or("no answer")?;
                    let n = h["pull"]["consecutive_failures"].as_u64().unwrap_or(0);
                    (n >= min).then_some(()).ok_or_else(|| h.to_string())
                },
            )
            .await
        }
    };
    let text = || svc.log();
    let warning = "the FOGIS pull source fails";
    let recovered = "the FOGIS pull source works again";

    failures(3).await;
    let first = text();
    assert_eq!(first.matches(warning).count(), 1, "{first}");
    assert!(
        first.contains("HTTP 500 from the fogis-api-client"),
        "{first}"
    );
    assert!(
        !first.contains("login failed"),
        "the source's text above debug: {first}"
    );

    api.set(Answer::Bare(list));
    eventually(
        "the recovery logged",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { text().contains(recovered).then_some(()).ok_or_else(text) },
    )
    .await;
    api.set(Answer::Hang);
    failures(2).await;
    let second = text();
    svc.kill();
    assert_eq!(
        second.matches(warning).count(),
        2,
        "one per outage: {second}"
    );
    assert_eq!(second.matches(recovered).count(), 1, "{second}");
}
