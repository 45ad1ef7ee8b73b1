//! `google-auth` end to end: the installed-app flow against the fake's authorization and
//! token endpoints, with reqwest as the browser following the redirect to the loopback.

use super::*;
use fogis_calendar_sync::sinks::google::auth::{
    authorize, AuthFlow, SCOPE_CALENDAR, SCOPE_CONTACTS,
};
use sha2::{Digest, Sha256};

fn flow(fake: &GoogleFake, dir: &std::path::Path) -> AuthFlow {
    let credentials = dir.join("client_secret.json");
    std::fs::write(
        &credentials,
        json!({"installed": {
        "client_id": google_fake::CLIENT_ID, "client_secret": google_fake::CLIENT_SECRET,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "redirect_uris": ["http://localhost"]}})
        .to_string(),
    )
    .unwrap();
    AuthFlow {
        credentials_file: credentials,
        token_file: dir.join("secrets/token.json"),
        auth_url: fake.auth_url(),
        token_url: fake.token_url(),
        port: 0,
        scopes: vec![SCOPE_CALENDAR.into(), SCOPE_CONTACTS.into()],
        timeout: Duration::from_secs(20),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_runs_the_installed_app_flow_with_pkce_and_writes_the_token_file() {
    let fake = GoogleFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let flow = flow(&fake, dir.path());
    let browser = std::sync::Arc::new(std::sync::Mutex::new(None));
    let shown = browser.clone();
    let path = authorize(&flow, move |url| {
        let url = url.to_string();
        // The "browser": opens the URL, follows the redirect to 127.0.0.1.
        *shown.lock().unwrap() = Some(tokio::spawn(async move {
            let page = reqwest::get(&url).await.unwrap();
            (page.status().as_u16(), page.text().await.unwrap())
        }));
    })
    .await
    .unwrap();
    let page = browser.lock().unwrap().take().unwrap();
    let (status, text) = page.await.unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("authorized"), "{text}");

    let f = fake.lock();
    let asked = &f.auth_requests[0];
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["response_type"], "code");
    assert_eq!(asked["access_type"], "offline");
    assert!(
        asked["redirect_uri"].starts_with("http://127.0.0.1:")
            && asked["redirect_uri"].ends_with('/')
    );
    assert_eq!(asked["scope"], format!("{SCOPE_CALENDAR} {SCOPE_CONTACTS}"));
    let exchange = &f.code_exchanges[0];
    let verifier = &exchange["code_verifier"];
    assert!((43..=128).contains(&verifier.len()));
    assert!(verifier
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)));
    assert_eq!(
        google_fake::b64url(&Sha256::digest(verifier.as_bytes())),
        asked["code_challenge"]
    );
    assert_eq!(exchange["redirect_uri"], asked["redirect_uri"]);
    drop(f);

    let token: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(path, dir.path().join("secrets/token.json"));
    assert!(token["token"].as_str().unwrap().starts_with("ya29.fake-"));
    assert!(token["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("1//fake-refresh-"));
    assert_eq!(token["client_id"], google_fake::CLIENT_ID);
    assert_eq!(token["client_secret"], google_fake::CLIENT_SECRET);
    assert_eq!(token["token_uri"], fake.token_url());
    assert_eq!(token["scopes"], json!([SCOPE_CALENDAR, SCOPE_CONTACTS]));
    assert!(chrono::DateTime::parse_from_rfc3339(token["expiry"].as_str().unwrap()).is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_refuses_an_answer_with_a_foreign_state() {
    let fake = GoogleFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let flow = flow(&fake, dir.path());
    let result = authorize(&flow, |url| {
        let url = reqwest::Url::parse(url).unwrap();
        let redirect = url
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .unwrap()
            .1
            .to_string();
        tokio::spawn(async move {
            let _ = reqwest::get(format!("{redirect}?state=forged&code=4/stolen")).await;
        });
    })
    .await;
    let error = format!("{:#}", result.unwrap_err());
    assert!(error.contains("state does not match"), "{error}");
    assert!(!flow.token_file.exists());
    assert!(fake.lock().code_exchanges.is_empty());
}
