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
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; - Ö&#39;&amp;&quot;"));
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
