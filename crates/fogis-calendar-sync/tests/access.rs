//! The one access layer over the merged app (ours and the library's routes): every route, sent
//! with no token, a wrong one, an empty one and the right ones; the answer, the cache header,
//! and that no personal data comes back to a request without a token.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::Mutex;

use common::{future_snapshot, secret, Service};
use fogis_calendar_sync::mask::{MaskingWriter, PHONE_FORMS};
use reqwest::Method;
use serde_json::Value;

const API: &str = "api-token-for-the-access-test";
const FEED: &str = "feed-token-for-the-access-test";

/// What the state holds that nobody without a token may see.
const PRIVATE: [&str; 5] = ["0700000000", "example.com", "Doe", "0701234567", "Home 0"];

/// Routes anyone may read: counters and summaries only.
const PUBLIC: [&str; 4] = ["/health", "/metrics", "/redis-status", "/redis-config"];

/// Routes that show personal data (or may), and one that does not exist.
const PERSONAL: [&str; 9] = [
    "/",
    "/calendar.ics",
    "/contacts.vcf",
    "/matches",
    "/sinks",
    "/quarantine",
    "/held",
    "/redis-stats",
    "/no-such-route",
];

/// Every POST route, with a body that means work (the trigger's no-data form is tested apart).
fn writes() -> Vec<(&'static str, Vec<u8>)> {
    let list = serde_json::to_vec(&future_snapshot(&[3, 4], "access-2")).unwrap();
    vec![
        ("/sync", list.clone()),
        ("/manual-sync", list),
        ("/held/1/apply", Vec::new()),
        ("/held/1/discard", Vec::new()),
        ("/redis-restart", Vec::new()),
        ("/redis-test", Vec::new()),
        ("/health", Vec::new()),
    ]
}

/// How a request presents itself.
#[derive(Debug, Clone, Copy)]
enum Cred {
    None,
    Header(&'static str),
    RawHeader(&'static str),
    Query(&'static str),
}

const WITHOUT: [Cred; 8] = [
    Cred::None,
    Cred::Header("wrong-token-wrong-token"),
    Cred::RawHeader(""),
    Cred::RawHeader("Bearer "),
    Cred::RawHeader("Bearer"),
    Cred::Query(""),
    Cred::Query("wrong-token-wrong-token"),
    // The API token is never accepted in a URL.
    Cred::Query(API),
];

async fn send(
    svc: &Service,
    method: Method,
    path: &str,
    cred: Cred,
    body: Vec<u8>,
) -> reqwest::Response {
    let url = match cred {
        Cred::Query(t) => svc.url(&format!("{path}?token={t}")),
        _ => svc.url(path),
    };
    let mut req = svc.http.request(method, url).body(body);
    match cred {
        Cred::Header(t) => req = req.bearer_auth(t),
        Cred::RawHeader(v) => req = req.header("authorization", v),
        Cred::None | Cred::Query(_) => {}
    }
    req.send().await.unwrap()
}

fn assert_no_private(what: &str, body: &str) {
    for p in PRIVATE {
        assert!(!body.contains(p), "{what}: {p} in {body}");
    }
}

async fn tokened() -> Service {
    let svc = Service::start_with(|o| {
        o.api_token = secret(API);
        o.feed_token = secret(FEED);
    })
    .await;
    let list = serde_json::to_vec(&future_snapshot(&[3, 4], "access-1")).unwrap();
    let resp = send(&svc, Method::POST, "/sync", Cred::Header(API), list).await;
    assert_eq!(resp.status(), 200);
    let bad = br#"{"matches": [{"matchid": 1, "note": "call 0701234567 or eve@example.com"}]}"#;
    let resp = send(&svc, Method::POST, "/sync", Cred::Header(API), bad.to_vec()).await;
    assert_eq!(resp.status(), 400);
    svc
}

async fn matches(svc: &Service) -> Value {
    send(svc, Method::GET, "/matches", Cred::Header(API), Vec::new())
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_without_the_right_token_is_refused_and_shows_no_personal_data() {
    let svc = tokened().await;
    let before = matches(&svc).await;
    assert!(before.to_string().contains("0700000000"), "{before}");

    for path in PUBLIC {
        for cred in WITHOUT {
            let resp = send(&svc, Method::GET, path, cred, Vec::new()).await;
            assert_eq!(resp.status(), 200, "{path} {cred:?}");
            assert_no_private(path, &resp.text().await.unwrap());
        }
    }
    for path in PERSONAL {
        for cred in WITHOUT {
            let resp = send(&svc, Method::GET, path, cred, Vec::new()).await;
            assert_eq!(resp.status(), 401, "{path} {cred:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
            assert_eq!(resp.headers()["cache-control"], "private, no-store");
            assert_no_private(path, &resp.text().await.unwrap());
        }
    }
    for (path, body) in writes() {
        // The feed token opens no write.
        for cred in WITHOUT
            .into_iter()
            .chain([Cred::Query(FEED), Cred::Header(FEED)])
        {
            let resp = send(&svc, Method::POST, path, cred, body.clone()).await;
            assert_eq!(resp.status(), 401, "POST {path} {cred:?}");
            assert_no_private(path, &resp.text().await.unwrap());
        }
    }
    // Nothing of that changed the state.
    assert_eq!(matches(&svc).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_tokens_open_every_route_and_personal_answers_are_not_cached() {
    let svc = tokened().await;
    for path in PERSONAL.into_iter().filter(|p| *p != "/no-such-route") {
        for cred in [
            Cred::Query(FEED),
            Cred::Header(FEED),
            Cred::Header(API),
            Cred::RawHeader("bEaReR api-token-for-the-access-test"),
        ] {
            let resp = send(&svc, Method::GET, path, cred, Vec::new()).await;
            assert_eq!(resp.status(), 200, "{path} {cred:?}");
            assert_eq!(
                resp.headers()["cache-control"],
                "private, no-store",
                "{path}"
            );
        }
    }
    let feed = send(
        &svc,
        Method::GET,
        "/calendar.ics",
        Cred::Query(FEED),
        Vec::new(),
    )
    .await;
    assert!(feed.text().await.unwrap().contains("BEGIN:VEVENT"));
    let unknown = send(
        &svc,
        Method::GET,
        "/no-such-route",
        Cred::Header(API),
        Vec::new(),
    )
    .await;
    assert_eq!(unknown.status(), 404);

    let expected = [
        ("/sync", 200),
        ("/manual-sync", 200),
        ("/held/1/apply", 404),
        ("/held/1/discard", 404),
        // Redis is off in these tests.
        ("/redis-restart", 409),
        ("/redis-test", 503),
        ("/health", 405),
    ];
    for ((path, body), (p, code)) in writes().into_iter().zip(expected) {
        assert_eq!(path, p);
        let resp = send(&svc, Method::POST, path, Cred::Header(API), body).await;
        assert_eq!(resp.status().as_u16(), code, "POST {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_trigger_passes_without_a_token_only_when_it_carries_nothing() {
    let svc = tokened().await;
    let before = matches(&svc).await;
    for path in ["/sync", "/manual-sync"] {
        for body in [&b""[..], b"{}", b" {\n}\n", b"   "] {
            let resp = send(&svc, Method::POST, path, Cred::None, body.to_vec()).await;
            assert_ne!(resp.status(), 401, "POST {path} {body:?}");
            assert_no_private(path, &resp.text().await.unwrap());
        }
        for body in [
            &b"{\"matches\": []}"[..],
            b"[]",
            b"null",
            b"{}{}",
            br#"{"delete": true, "matches": []}"#,
        ] {
            let resp = send(&svc, Method::POST, path, Cred::None, body.to_vec()).await;
            assert_eq!(resp.status(), 401, "POST {path} {body:?}");
        }
        // Larger than a trigger can be: read as a list, so it needs the token.
        let mut big = b"{\"username\": \"".to_vec();
        big.extend(std::iter::repeat_n(
            b'x',
            fogis_pubsub::http::auth::TRIGGER_MAX_BYTES,
        ));
        big.extend(b"\"}");
        let resp = send(&svc, Method::POST, path, Cred::None, big).await;
        assert_eq!(
            resp.status(),
            401,
            "POST {path}: a body over TRIGGER_MAX_BYTES"
        );
    }
    assert_eq!(matches(&svc).await, before, "a trigger changed the state");
}

/// What the service logged in this test binary, through the same masking writer `main` uses.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Names, e-mail addresses and street addresses the lists below carry (with the phone numbers
/// of [`PHONE_FORMS`]).
const NAMES: [&str; 3] = ["Anna Svensson", "Per-Olof Lindqvist", "Åsa Öberg"];
const EMAILS: [&str; 3] = [
    "anna.svensson@example.com",
    "p-o.lindqvist@forening.se",
    "asa+domare@example.org",
];
const ADDRESSES: [&str; 3] = ["Storgatan 12", "Vallgatan 3B", "Kyrkvägen 7 lgh 1102"];

/// What only the status and alert messages carry: never stored, so shown nowhere, not even with
/// a token, and logged only at debug level (masked).
const ALERT_ONLY: [&str; 4] = [
    "Karin Larmsson",
    "Larmvägen 99",
    "larm.karin@example.net",
    "0733-99 98 88",
];

/// Every personal datum of this test, the phone numbers first.
fn personal() -> Vec<&'static str> {
    let mut all = PHONE_FORMS.to_vec();
    all.extend(
        NAMES
            .iter()
            .chain(&EMAILS)
            .chain(&ADDRESSES)
            .chain(&ALERT_ONLY),
    );
    all
}

/// The free text a processor's status or alert might carry: all of the above.
fn foreign_text() -> String {
    personal().join(", ")
}

/// Lists full of personal data in every form (phone numbers in every Swedish and international
/// form, names, e-mail and street addresses) in every text field, posted over HTTP and published
/// on Redis; processing statuses and system alerts whose every field is such text; unknown
/// `type` values and bad inputs that carry it where an error might quote it. None of it reaches
/// an answer without a token (nor the log, above debug level; phones and e-mails at no level).
/// What only statuses and alerts carried is not stored: no answer shows it, not even with the
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_in_lists_statuses_and_alerts_reaches_no_output_without_a_token() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(|| MaskingWriter(LogSink))
        .try_init();
    let redis = test_support::RedisServer::start();
    let svc = Service::start_with(|o| {
        o.api_token = secret(API);
        o.feed_token = secret(FEED);
        o.redis = common::redis_opts(Some(&redis.url()));
    })
    .await;
    svc.wait_redis_connected(std::time::Duration::from_secs(10))
        .await;
    let svc_ref = &svc;
    let with_token = |path: &'static str| async move {
        send(svc_ref, Method::GET, path, Cred::Header(API), Vec::new())
            .await
            .text()
            .await
            .unwrap()
    };

    // The list, over HTTP.
    let mut list = future_snapshot(&[3, 4, 5, 6, 7], "personal-1");
    let items = list["payload"]["matches"].as_array_mut().unwrap();
    for (i, m) in items.iter_mut().enumerate() {
        let phone = |k: usize| Value::from(PHONE_FORMS[(i * 4 + k) % PHONE_FORMS.len()]);
        m["lag1namn"] = phone(0);
        m["lag2namn"] = phone(1);
        m["anlaggningnamn"] = phone(2);
        let referee = &mut m["domaruppdraglista"][0];
        referee["personnamn"] = phone(3);
        referee["mobiltelefon"] = phone(0);
        referee["epostadress"] = Value::from(EMAILS[i % 3]);
        referee["adress"] = Value::from(ADDRESSES[i % 3]);
        let contact = &mut m["kontaktpersoner"][0];
        contact["personnamn"] = Value::from(NAMES[i % 3]);
        contact["mobiltelefon"] = phone(1);
        contact["epostadress"] = Value::from(EMAILS[(i + 1) % 3]);
        contact["adress"] = Value::from(ADDRESSES[(i + 1) % 3]);
    }
    let resp = send(
        &svc,
        Method::POST,
        "/sync",
        Cred::Header(API),
        serde_json::to_vec(&list).unwrap(),
    )
    .await;
    assert_eq!(resp.status(), 200);

    // The same list and more, on Redis; then statuses, alerts and bad messages made of the
    // foreign text.
    let publisher = fogis_pubsub::Publisher::new(fogis_pubsub::RedisUrl::new(redis.url()).unwrap());
    let mut more = list.clone();
    more["message_id"] = Value::from("personal-2");
    let extra = future_snapshot(&[8, 9], "x")["payload"]["matches"].clone();
    for (i, mut m) in extra.as_array().unwrap().iter().cloned().enumerate() {
        m["matchid"] = Value::from(7_100_000 + i as i64);
        m["domaruppdraglista"][0]["personnamn"] = Value::from(NAMES[i]);
        m["domaruppdraglista"][0]["mobiltelefon"] = Value::from(PHONE_FORMS[19 - i]);
        more["payload"]["matches"].as_array_mut().unwrap().push(m);
    }
    let mut messages = vec![("fogis:matches:updates", more)];
    let text = foreign_text();
    for foreign in personal() {
        messages.extend([
            (
                "fogis:processor:status",
                serde_json::json!({"type": "processing_status", "message_id": foreign,
                    "source": foreign, "payload": {"status": foreign,
                    "details": {"error_message": text, "changes_detected": foreign}}}),
            ),
            (
                "fogis:system:alerts",
                serde_json::json!({"type": "system_alert", "source": foreign, "payload": {
                    "alert_type": foreign, "severity": foreign, "message": text,
                    "details": {"error_message": text, "who": foreign}}}),
            ),
            (
                "fogis_status",
                serde_json::json!({"type": foreign, "payload": {"status": foreign}}),
            ),
            (
                "fogis:matches:updates",
                serde_json::json!({"type": foreign, "payload": {"message": text}}),
            ),
        ]);
    }
    messages.push((
        "fogis:matches:updates",
        serde_json::json!({"matches": [{"matchid": text, "lag1namn": {"x": text}}]}),
    ));
    for (channel, message) in &messages {
        let body = serde_json::to_vec(message).unwrap();
        assert_eq!(publisher.publish(channel, body).await.unwrap(), 1);
    }
    let sent = messages.len() as u64;
    let stats = common::eventually(
        "every published message received",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(50),
        || async {
            let v: Value = serde_json::from_str(&with_token("/redis-stats").await).unwrap();
            let done = v["messages_received"].as_u64() == Some(sent)
                && v["messages_applied"] == 1
                && v["messages_rejected"].as_u64().unwrap_or(0) > 0;
            done.then_some(v.clone()).ok_or_else(|| v.to_string())
        },
    )
    .await;
    // They were read and summed up, in known values only.
    assert_eq!(stats["alert_messages"], personal().len(), "{stats}");
    assert_eq!(stats["last_alert"]["alert_type"], "other", "{stats}");
    assert_eq!(stats["last_alert"]["severity"], "other", "{stats}");
    assert_eq!(stats["last_status"]["status"], "other", "{stats}");

    // Bad inputs over HTTP that carry the text where an error might quote it.
    for phone in PHONE_FORMS.iter().chain(&ALERT_ONLY) {
        for bad in [
            serde_json::json!({"type": phone, "payload": {}}),
            serde_json::json!({"matches": [{"matchid": phone}]}),
            serde_json::json!({"matches": [{"matchid": 1, "lag1namn": {"x": phone}}]}),
            serde_json::json!({"type": "system_alert", "payload": {"alert_type": phone,
                "severity": phone, "message": text}}),
        ] {
            let body = serde_json::to_vec(&bad).unwrap();
            let resp = send(&svc, Method::POST, "/sync", Cred::Header(API), body).await;
            assert_eq!(resp.status(), 400, "{bad}");
            assert_no_foreign("the answer to a bad POST", &resp.text().await.unwrap());
        }
    }

    // Without a token: nothing, anywhere.
    for path in PUBLIC.into_iter().chain(PERSONAL) {
        for cred in WITHOUT {
            let resp = send(&svc, Method::GET, path, cred, Vec::new()).await;
            assert_no_personal(path, &resp.text().await.unwrap());
        }
    }
    // With the token: what only statuses and alerts carried is nowhere (it was never stored),
    // and the Redis status, the quarantine and the sinks hold no personal datum at all.
    for path in [
        "/",
        "/health",
        "/matches",
        "/calendar.ics",
        "/contacts.vcf",
        "/held",
    ] {
        assert_no_foreign(path, &with_token(path).await);
    }
    for path in ["/redis-stats", "/redis-status", "/quarantine", "/sinks"] {
        assert_no_personal(path, &with_token(path).await);
    }
    // The state has the lists' data: a token shows it.
    let shown = matches(&svc).await.to_string();
    for datum in [
        PHONE_FORMS[0],
        NAMES[0],
        EMAILS[0],
        ADDRESSES[0],
        PHONE_FORMS[19],
    ] {
        assert!(shown.contains(datum), "{datum} not in /matches");
    }

    let log = String::from_utf8(LOG.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("rejected input"),
        "the log was captured: {log}"
    );
    assert!(
        log.contains("system alert text (masked excerpt)"),
        "debug lines were captured: {log}"
    );
    // No code path above logs a value; should one ever, the writer masks every phone form.
    tracing::warn!(note = %PHONE_FORMS.join(" | "), "a line that forgot the rules");
    let log = String::from_utf8(LOG.lock().unwrap().clone()).unwrap();
    assert!(log.contains("a line that forgot the rules"), "{log}");
    for line in log.lines() {
        assert_no_phone("the log", line);
        for email in EMAILS.iter().chain([&ALERT_ONLY[2]]) {
            assert!(!line.contains(email), "the log: {email} in {line}");
        }
        // Names and addresses cannot be masked: they are in no line above debug level, and
        // in debug lines only with their digits hidden.
        assert!(!line.contains("Larmvägen 99"), "the log: {line}");
        if !line.contains(" DEBUG ") {
            for datum in NAMES.iter().chain(&ADDRESSES).chain(&ALERT_ONLY) {
                assert!(!line.contains(datum), "the log: {datum} in {line}");
            }
        }
    }
}

fn assert_no_personal(what: &str, text: &str) {
    assert_no_phone(what, text);
    for datum in personal() {
        assert!(!text.contains(datum), "{what}: {datum} in {text}");
    }
}

/// None of what only statuses and alerts carried (nor the phone number among them).
fn assert_no_foreign(what: &str, text: &str) {
    for datum in ALERT_ONLY {
        assert!(!text.contains(datum), "{what}: {datum} in {text}");
    }
    assert!(!text.contains("0733999888"), "{what}: {text}");
}

fn assert_no_phone(what: &str, text: &str) {
    for phone in PHONE_FORMS {
        assert!(!text.contains(phone), "{what}: {phone} in {text}");
    }
    assert!(!text.contains("701234567"), "{what}: {text}");
}
