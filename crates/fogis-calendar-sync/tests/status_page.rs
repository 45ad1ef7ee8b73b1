//! The status page (`GET /`): its content for a known state, who sees personal data, escaping,
//! and a real headless Chromium rendering it (screenshot and DOM).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, fixture, future_snapshot, redis_opts, secret, Service};
use serde_json::{json, Value};
use test_support::RedisServer;

const FEED: &str = "feed-secret-0123456789";
const API: &str = "api-secret-0123456789";

async fn post(svc: &Service, body: Vec<u8>, bearer: Option<&str>) -> (u16, Value) {
    let mut req = svc.http.post(svc.url("/sync")).body(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The changed list: 7000000 moved 90 minutes later, 7000001 cancelled, 7000002 new.
fn changed_list(message_id: &str) -> Value {
    let mut next = future_snapshot(&[2, 5, 9], message_id);
    let list = next["payload"]["matches"].as_array_mut().unwrap();
    let tid = list[0]["tid"].as_str().unwrap().to_string();
    let ms: i64 = tid[6..tid.len() - 2].parse().unwrap();
    list[0]["tid"] = json!(format!("/Date({})/", ms + 90 * 60 * 1000));
    list[1]["installd"] = json!(true);
    next
}

/// A known state: the production fixture (now past) twice, a future list, a changed future
/// list and one bad input.
async fn populate(svc: &Service, bearer: Option<&str>) {
    let (s, b) = post(svc, fixture("processor_match_updates.json"), bearer).await;
    assert_eq!((s, &b["created"]), (200, &json!(3)), "{b}");
    let (s, b) = post(svc, fixture("processor_match_updates.json"), bearer).await;
    assert_eq!((s, &b["duplicate"]), (200, &json!(true)), "{b}");
    let first = future_snapshot(&[2, 5], "future-1");
    let (s, b) = post(svc, serde_json::to_vec(&first).unwrap(), bearer).await;
    assert_eq!((s, &b["created"]), (200, &json!(2)), "{b}");
    let (s, b) = post(
        svc,
        serde_json::to_vec(&changed_list("future-2")).unwrap(),
        bearer,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        [&b["created"], &b["updated"], &b["cancelled"]],
        [1, 1, 1],
        "{b}"
    );
    let (s, _) = post(svc, br#"{"matches": 42}"#.to_vec(), bearer).await;
    assert_eq!(s, 400);
}

/// `GET /` with an optional query and bearer token: (headers, body).
async fn page(
    svc: &Service,
    query: &str,
    bearer: Option<&str>,
) -> (reqwest::header::HeaderMap, String) {
    let mut req = svc.http.get(svc.url(&format!("/{query}")));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let headers = resp.headers().clone();
    (headers, resp.text().await.unwrap())
}

fn assert_agenda(html: &str) {
    for (class, id, title) in [
        ("updated", 7_000_000, "Home 0 - Away 0"),
        ("cancelled", 7_000_001, "Home 1 - Away 1"),
        ("new", 7_000_002, "Home 2 - Away 2"),
    ] {
        let li = format!("<li class=\"match {class}\" data-match-id=\"{id}\">");
        assert!(html.contains(&li), "{li} missing:\n{html}");
        assert!(html.contains(title), "{title} missing");
    }
    // The fixture's matches are over: in the feed, not in the agenda.
    assert!(!html.contains("data-match-id=\"6186203\""));
    assert!(
        !html.contains("IFK Göteborg - Falkenbergs FF"),
        "a past match is listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_agenda_messages_and_links_and_personal_data_only_with_a_token() {
    let svc = Service::start_with(|o| {
        o.feed_token = secret(FEED);
        o.api_token = secret(API);
    })
    .await;
    populate(&svc, Some(API)).await;
    let host = svc.base.trim_start_matches("http://").to_string();

    // Without a token, with a wrong one, or with the API token in the URL: refused, and
    // nothing of the state comes back.
    for (query, bearer) in [
        ("", None),
        ("?token=nope", Some("nope")),
        ("?token=", None),
        (&format!("?token={API}")[..], None),
    ] {
        let mut req = svc.http.get(svc.url(&format!("/{query}")));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{query} {bearer:?}");
        let body = resp.text().await.unwrap();
        for private in ["0700000000", "example.com", "Home 0", "future-2"] {
            assert!(!body.contains(private), "{private} shown without a token");
        }
    }

    let (headers, html) = page(&svc, "", Some(API)).await;
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "private, no-store");
    assert!(headers.contains_key("content-security-policy"));
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<meta name=\"viewport\""));
    assert_agenda(&html);
    assert!(
        html.contains("badge cancelled\">cancelled"),
        "cancelled highlight"
    );
    // The last messages, newest first, with what each did.
    let log = &html[html.find("id=\"messages\"").unwrap()..html.find("id=\"sinks\"").unwrap()];
    let order: Vec<usize> = [
        ">rejected<",
        "1 created, 1 updated, 1 cancelled",
        "2 created, 3 archived",
        ">duplicate<",
        "3 created",
    ]
    .iter()
    .map(|s| {
        log.find(s)
            .unwrap_or_else(|| panic!("{s} missing from {log}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?} {log}");
    assert!(log.contains("<code>future-2</code>"));
    assert!(html.contains("HTTP only: Redis is switched off"));
    // The API token: personal data, but the feed token is not handed out: subscribe links
    // from the Host header, without the token the request did not carry.
    assert!(html.contains("0700000000") && html.contains("example.com"));
    assert!(html.contains(&format!("href=\"webcal://{host}/calendar.ics\"")));
    assert!(html.contains(&format!("href=\"http://{host}/calendar.ics\"")));
    assert!(html.contains("href=\"/contacts.vcf\""));
    assert!(html.contains("The feed needs its token"));
    assert!(!html.contains(FEED));

    // The feed token: personal data, and links that carry it (and work).
    let (_, html) = page(&svc, &format!("?token={FEED}"), None).await;
    assert_agenda(&html);
    assert!(html.contains("0700000000") && html.contains("example.com"));
    assert!(html.contains(&format!(
        "href=\"webcal://{host}/calendar.ics?token={FEED}\""
    )));
    assert!(html.contains(&format!("href=\"/contacts.vcf?token={FEED}\"")));
    assert!(!html.contains("The feed needs its token"));
    for path in [
        format!("/calendar.ics?token={FEED}"),
        format!("/contacts.vcf?token={FEED}"),
    ] {
        let status = svc.http.get(svc.url(&path)).send().await.unwrap().status();
        assert_eq!(status.as_u16(), 200, "{path}");
    }

    // Behind a TLS proxy, under its name.
    let resp = svc
        .http
        .get(svc.url("/"))
        .bearer_auth(API)
        .header("host", "cal.example.org")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let html = resp.text().await.unwrap();
    assert!(html.contains("href=\"webcal://cal.example.org/calendar.ics\""));
    assert!(html.contains("href=\"https://cal.example.org/calendar.ics\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_hosts_are_escaped() {
    let svc = Service::start().await;
    let mut msg = future_snapshot(&[3], "<i>id</i>");
    let m = &mut msg["payload"]["matches"][0];
    m["lag1namn"] = json!("<script>alert(\"x\")</script>");
    m["lag2namn"] = json!("Ö'&\"");
    m["anlaggningnamn"] = json!("<img src=x onerror=alert(1)>");
    m["domaruppdraglista"][0]["personnamn"] = json!("</li><b>bold</b>");
    let (s, b) = post(&svc, serde_json::to_vec(&msg).unwrap(), None).await;
    assert_eq!(s, 200, "{b}");
    let resp = svc
        .http
        .get(svc.url("/"))
        .header("host", "evil\"><b>pwned</b>")
        .send()
        .await
        .unwrap();
    let html = resp.text().await.unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>"));
    assert!(!html.contains("<i>id"));
    // The template escapes `&`, `<`, `>` and `"`; a `'` is text like any other (every
    // attribute is double-quoted).
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; - Ö'&amp;&quot;"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("&lt;/li&gt;&lt;b&gt;bold&lt;/b&gt;"));
    assert!(html.contains("&lt;i&gt;id&lt;/i&gt;"));
    assert!(html.contains("named no usable host"));
}

fn workspace_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// Runs Debian's Chromium headless on `url` with `extra` arguments; returns its stdout.
async fn chromium(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("/usr/bin/chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1100,1400",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium did not finish within 90 s")
        .unwrap();
    assert!(out.status.success(), "chromium failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_browser_renders_the_page() {
    if !Path::new("/usr/bin/chromium").exists() {
        eprintln!(
            "SKIPPED a_headless_browser_renders_the_page: /usr/bin/chromium is missing \
             (scripts/test installs it: apt-get install chromium)"
        );
        return;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    let svc = Service::start_with(|o| o.redis = redis_opts(Some(&url))).await;
    populate(&svc, None).await;
    // One list over Redis too, so that the page shows a live subscription at work.
    let publisher = fogis_pubsub::Publisher::new(fogis_pubsub::RedisUrl::new(url).unwrap());
    let list = serde_json::to_vec(&changed_list("future-2-over-redis")).unwrap();
    // Publishing until someone receives it also waits for the subscription.
    eventually(
        "subscribed",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            match publisher.publish("fogis:matches:updates", &list).await {
                Ok(n) if n > 0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    svc.wait_json(
        "/redis-status",
        "applied",
        Duration::from_secs(15),
        |stats| stats["stats"]["messages_applied"] == 1,
    )
    .await;
    let page_url = svc.url("/");

    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("status-page.png");
    chromium(&page_url, &[format!("--screenshot={}", shot.display())]).await;
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1100, 1400));
    // A blank page of that size compresses to a few KiB; a rendered one does not.
    assert!(
        png.len() > 30_000,
        "suspiciously small screenshot: {} bytes",
        png.len()
    );
    let target = workspace_target();
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("status-page.png"), &png).unwrap();

    let dom = chromium(&page_url, &["--dump-dom".to_string()]).await;
    assert_agenda(&dom);
    assert!(dom.contains("Real time: Redis connected"), "{dom}");
    assert!(dom.contains("redis:fogis:matches:updates"), "{dom}");
    assert!(dom.contains("</html>"));
}

/// Hostile text number `n`: a script, an element with a handler, quotes that would end an
/// attribute, and an entity that must stay text.
fn hostile(n: usize) -> String {
    format!("\"'><script>mark({n})</script><img src=x onerror=mark({n})>&amp;")
}

/// How `hostile(n)` must look in the HTML source: every markup character escaped.
fn hostile_escaped(n: usize) -> String {
    format!("&lt;script&gt;mark({n})&lt;/script&gt;&lt;img src=x onerror=mark({n})&gt;&amp;amp;")
}

/// A page whose every text from outside is hostile: team names, venue, competition, match
/// number, referees and team contacts (with personal data shown), the Redis error, channel
/// and outcome, a held list's origin and the log's ids and details, a sink's target and error,
/// the pull source and its detail, the calendar name, the host and the token of the links.
/// Returns the page and the number of hostile texts in it (`hostile(0..n)`); the last one is
/// the token, which the page shows percent-encoded only.
fn hostile_page() -> (String, usize) {
    use chrono::{Duration as Span, Utc};
    use fogis_calendar_sync::http::status_page::{render, AgendaContext, Links, View};
    use fogis_calendar_sync::ingest::pull::{PullResult, PullStatus, Trigger};
    use fogis_calendar_sync::model::MatchRecord;
    use fogis_calendar_sync::reconcile::{Action, Counts, Presence, StoredMatch};
    use fogis_calendar_sync::sinks::SinkStatus;
    use fogis_calendar_sync::store::LogEntry;
    use fogis_pubsub::{MessageRecord, RecordKind, Referee, SubscriberStatus, TeamContact};

    let mut n = 0;
    let mut next = || {
        n += 1;
        hostile(n - 1)
    };
    let now = Utc::now();
    let record = MatchRecord {
        match_id: 7_100_000,
        match_nr: Some(next()),
        home_team: Some(next()),
        away_team: Some(next()),
        start: now + Span::days(2),
        venue: Some(next()),
        venue_address: None,
        coordinates: None,
        competition: Some(next()),
        cancelled: false,
        postponed: true,
        interrupted: false,
        referees: vec![Referee {
            name: next(),
            role_short: Some(next()),
            mobile: Some(next()),
            email: Some(next()),
            ..Default::default()
        }]
        .into_iter()
        .map(std::sync::Arc::new)
        .collect(),
        team_contacts: vec![TeamContact {
            team: Some(next()),
            name: next(),
            mobile: Some(next()),
            email: Some(next()),
            ..Default::default()
        }]
        .into_iter()
        .map(std::sync::Arc::new)
        .collect(),
    };
    let stored = StoredMatch {
        hash: record.content_hash(),
        record,
        presence: Presence::Listed,
        sequence: 0,
        created_at: now - Span::days(1),
        changed_at: now - Span::days(1),
        last_action: Action::Create,
    };
    let redis = SubscriberStatus {
        enabled: true,
        connected: false,
        disconnected_since: Some(now - Span::minutes(3)),
        last_error: Some(next()),
        last_error_at: Some(now - Span::minutes(3)),
        recent: [
            (RecordKind::Alert, next(), next()),
            (RecordKind::Status, next(), next()),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (kind, channel, outcome))| MessageRecord {
            seq: i as u64 + 1,
            at: now - Span::minutes(5),
            channel,
            kind,
            outcome,
        })
        .collect(),
        ..Default::default()
    };
    let log = vec![
        LogEntry {
            at: now - Span::minutes(2),
            origin: next(),
            message_id: Some(next()),
            outcome: "held".into(),
            counts: None,
            detail: Some(next()),
        },
        LogEntry {
            at: now - Span::minutes(4),
            origin: next(),
            message_id: Some(next()),
            outcome: next(),
            counts: Some(Counts {
                created: 1,
                ..Default::default()
            }),
            detail: Some(next()),
        },
    ];
    let sinks = vec![SinkStatus {
        name: "caldav",
        target: next(),
        pending: 2,
        last_error: Some(next()),
        last_error_at: Some(now - Span::minutes(1)),
        paused_until: Some(now + Span::minutes(1)),
        ..Default::default()
    }];
    let pull = PullStatus {
        enabled: true,
        source: Some(next()),
        interval_seconds: 1800,
        last_pull_at: Some(now - Span::minutes(6)),
        last_trigger: Some(Trigger::Start),
        last_result: Some(PullResult::Failed),
        last_detail: Some(next()),
        consecutive_failures: 1,
        failing_since: Some(now - Span::minutes(6)),
        ..Default::default()
    };
    let view = View {
        calendar_name: next(),
        agenda: AgendaContext {
            now,
            tz: chrono_tz::Europe::Stockholm,
            match_duration: Span::minutes(120),
            personal: true,
        },
        links: Links {
            host: Some(next()),
            scheme: "http",
            token: Some(next()),
            token_required: true,
        },
        redis,
        matches: vec![stored.into()],
        log: Ok(log),
        sinks,
        pull,
    };
    (render(&view), n)
}

/// The token as its links carry it: percent-encoded (RFC 3986 unreserved kept).
fn percent_encoded(s: &str) -> String {
    const KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, KEPT).to_string()
}

#[test]
fn hostile_text_in_every_field_is_escaped_in_the_source() {
    let (html, n) = hostile_page();
    assert!(n >= 25, "only {n} hostile fields");
    assert_eq!(html.matches("<script").count(), 0, "{html}");
    assert_eq!(html.matches("<img").count(), 0, "{html}");
    for i in 0..n - 1 {
        let shown = hostile_escaped(i);
        assert!(html.contains(&shown), "hostile text {i} missing:\n{html}");
    }
    assert!(html.contains(&format!("?token={}", percent_encoded(&hostile(n - 1)))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_in_every_field_is_only_text_in_a_browsers_dom() {
    if !Path::new("/usr/bin/chromium").exists() {
        eprintln!(
            "SKIPPED hostile_text_in_every_field_is_only_text_in_a_browsers_dom: \
             /usr/bin/chromium is missing (scripts/test installs it: apt-get install chromium)"
        );
        return;
    }
    let (html, n) = hostile_page();
    // The test's own probe, appended after the page: it runs once the page is parsed and
    // writes what the DOM holds into an element that --dump-dom prints.
    let probe = format!(
        r#"<script>
const n = {n};
const hostile = i => `"'><script>mark(${{i}})</scr` + `ipt><img src=x onerror=mark(${{i}})>&amp;`;
const text = document.documentElement.textContent;
const missing = [];
for (let i = 0; i < n - 1; i++) if (!text.includes(hostile(i))) missing.push(i);
const handlers = [...document.querySelectorAll('*')]
  .filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length;
const hrefs = [...document.querySelectorAll('a')].map(a => a.getAttribute('href'));
const out = document.createElement('pre');
out.id = 'probe';
out.textContent = `scripts=${{document.querySelectorAll('script').length}}`
  + ` elements=${{document.querySelectorAll('img, iframe, object, embed').length}}`
  + ` handlers=${{handlers}} missing=[${{missing}}]`
  + ` hrefs=${{encodeURIComponent(JSON.stringify(hrefs))}} end`;
document.body.appendChild(out);
</script>"#
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hostile.html");
    std::fs::write(&file, format!("{html}{probe}")).unwrap();
    let dom = chromium(
        &format!("file://{}", file.display()),
        &["--dump-dom".into()],
    )
    .await;
    let probe = dom
        .split("<pre id=\"probe\">")
        .nth(1)
        .and_then(|s| s.split(" end</pre>").next())
        .unwrap_or_else(|| panic!("the probe did not run:\n{dom}"));
    // The only script is the probe; no element or handler came from the data.
    assert!(
        probe.starts_with("scripts=1 elements=0 handlers=0 missing=[] hrefs="),
        "{probe}"
    );
    let hrefs = probe.split("hrefs=").nth(1).unwrap();
    let hrefs: Vec<Option<String>> =
        serde_json::from_str(&percent_encoding::percent_decode_str(hrefs).decode_utf8_lossy())
            .unwrap();
    let hrefs: Vec<String> = hrefs.into_iter().flatten().collect();
    // The attributes hold the hostile text whole (a quote did not end them); the token is
    // percent-encoded in the links.
    let token = percent_encoded(&hostile(n - 1));
    for want in [
        format!("tel:{}", hostile(7).replace([' ', '-'], "")),
        format!("mailto:{}", hostile(8)),
        format!("webcal://{}/calendar.ics?token={token}", hostile(n - 2)),
        format!("/contacts.vcf?token={token}"),
    ] {
        assert!(hrefs.contains(&want), "{want} not in {hrefs:?}");
    }
}
