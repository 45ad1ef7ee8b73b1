//! `google-auth`: Google's installed-app OAuth flow, which writes the token file.
//!
//! The flow (RFC 8252 with PKCE, as Google documents it for Desktop clients): a listener on
//! `127.0.0.1` and a free port is the redirect target; the printed URL asks for the scopes with
//! an S256 code challenge and a random `state`; the browser comes back to the loopback with a
//! `code`, which is exchanged together with the code verifier for a refresh token. The token
//! file is written in google-auth's format, so the Python service could read it too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::extract::{Query, State};
use axum::response::Html;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;

pub const SCOPE_CALENDAR: &str = "https://www.googleapis.com/auth/calendar.events";
pub const SCOPE_CONTACTS: &str = "https://www.googleapis.com/auth/contacts";

/// The OAuth client from Google Cloud Console's JSON (`installed` or `web`).
#[derive(Debug, Clone)]
pub struct ClientSecret {
    pub client_id: String,
    pub client_secret: Secret,
}

impl ClientSecret {
    pub fn read(path: &Path) -> anyhow::Result<ClientSecret> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let inner = value
            .get("installed")
            .or_else(|| value.get("web"))
            .unwrap_or(&value);
        let field = |k: &str| inner.get(k).and_then(Value::as_str).map(String::from);
        match (field("client_id"), field("client_secret")) {
            (Some(client_id), Some(secret)) => Ok(ClientSecret {
                client_id,
                client_secret: Secret::new(secret),
            }),
            _ => bail!(
                "{} has no client_id and client_secret (download the \"Desktop app\" client's JSON)",
                path.display()
            ),
        }
    }
}

/// Everything the flow needs.
#[derive(Debug, Clone)]
pub struct AuthFlow {
    pub credentials_file: PathBuf,
    pub token_file: PathBuf,
    pub auth_url: String,
    pub token_url: String,
    /// 0: any free port.
    pub port: u16,
    pub scopes: Vec<String>,
    pub timeout: Duration,
}

impl AuthFlow {
    pub fn from_opts(o: &crate::config::google::GoogleAuthOpts) -> AuthFlow {
        let mut scopes = vec![SCOPE_CALENDAR.to_string()];
        if !o.no_contacts {
            scopes.push(SCOPE_CONTACTS.to_string());
        }
        AuthFlow {
            credentials_file: o.google_credentials_file.clone(),
            token_file: o.google_token_file.clone(),
            auth_url: o.google_auth_url.clone(),
            token_url: o.google_token_url.clone(),
            port: o.port,
            scopes,
            timeout: Duration::from_secs(o.timeout_seconds),
        }
    }
}

/// Base64url without padding (RFC 4648 section 5), for the PKCE challenge.
pub fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 code challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    base64url(&Sha256::digest(verifier.as_bytes()))
}

/// A fresh code verifier: 64 characters from the unreserved set, 244 random bits.
pub fn pkce_verifier() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

type Reply = Result<String, String>;

async fn callback(
    State((tx, state)): State<(mpsc::Sender<Reply>, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Html<&'static str> {
    let reply = if q.get("state") != Some(&state) {
        Err("the answer's state does not match this request (an old or foreign page?)".into())
    } else if let Some(e) = q.get("error") {
        Err(format!("Google answered {e}"))
    } else if let Some(code) = q.get("code") {
        Ok(code.clone())
    } else {
        Err("the answer carries no code".into())
    };
    let ok = reply.is_ok();
    let _ = tx.send(reply).await;
    Html(if ok {
        "<h1>fogis-calendar-sync is authorized</h1><p>You can close this tab.</p>"
    } else {
        "<h1>Authorization failed</h1><p>See the terminal.</p>"
    })
}

/// Runs the flow: calls `open` with the URL the user must open, waits for the browser to come
/// back to the loopback, exchanges the code and writes the token file. Returns its path.
pub async fn authorize(flow: &AuthFlow, open: impl FnOnce(&str)) -> anyhow::Result<PathBuf> {
    let client = ClientSecret::read(&flow.credentials_file)?;
    let verifier = pkce_verifier();
    let state = uuid::Uuid::new_v4().simple().to_string();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", flow.port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{}", flow.port))?;
    let redirect_uri = format!("http://127.0.0.1:{}/", listener.local_addr()?.port());
    let url = reqwest::Url::parse_with_params(
        &flow.auth_url,
        &[
            ("client_id", client.client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("response_type", "code"),
            ("scope", flow.scopes.join(" ").as_str()),
            ("code_challenge", pkce_challenge(&verifier).as_str()),
            ("code_challenge_method", "S256"),
            ("state", state.as_str()),
            ("access_type", "offline"),
            ("prompt", "consent"),
        ],
    )
    .with_context(|| format!("GOOGLE_AUTH_URL {}", flow.auth_url))?;
    let (tx, mut rx) = mpsc::channel::<Reply>(4);
    let app = axum::Router::new()
        .route("/", axum::routing::get(callback))
        .with_state((tx, state));
    let stop = CancellationToken::new();
    let stopped = stop.clone().cancelled_owned();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
    });
    open(url.as_str());
    let reply = tokio::time::timeout(flow.timeout, rx.recv()).await;
    stop.cancel();
    let _ = server.await;
    let code = match reply {
        Err(_) => bail!("no answer from the browser within {:?}", flow.timeout),
        Ok(None) => bail!("the loopback listener stopped"),
        Ok(Some(Err(e))) => bail!("authorization failed: {e}"),
        Ok(Some(Ok(code))) => code,
    };
    let token = exchange(flow, &client, &code, &verifier, &redirect_uri).await?;
    let bytes = serde_json::to_vec_pretty(&token)?;
    if let Some(dir) = flow
        .token_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::store::files::write_atomic(&flow.token_file, &bytes)
        .with_context(|| format!("writing {}", flow.token_file.display()))?;
    Ok(flow.token_file.clone())
}

/// Exchanges the code for tokens: google-auth's JSON (`token`, `refresh_token`, `token_uri`,
/// `client_id`, `client_secret`, `scopes`, `expiry`).
async fn exchange(
    flow: &AuthFlow,
    client: &ClientSecret,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> anyhow::Result<Value> {
    let resp = crate::outbound::client(std::time::Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?
        .post(&flow.token_url)
        .form(&[
            ("code", code),
            ("client_id", client.client_id.as_str()),
            ("client_secret", client.client_secret.expose()),
            ("redirect_uri", redirect_uri),
            ("grant_type", "authorization_code"),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .context("calling the token endpoint")?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let error = body.get("error").and_then(Value::as_str).unwrap_or("");
        bail!("the token endpoint answered {status} {error}");
    }
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(String::from);
    let (Some(access), Some(refresh)) = (field("access_token"), field("refresh_token")) else {
        bail!("the token endpoint returned no refresh token: remove the app's access at https://myaccount.google.com/permissions and run google-auth again");
    };
    let lifetime = body
        .get("expires_in")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    let expiry = chrono::Utc::now() + chrono::Duration::seconds(lifetime);
    let scopes: Vec<String> = match field("scope") {
        Some(s) => s.split_whitespace().map(String::from).collect(),
        None => flow.scopes.clone(),
    };
    Ok(json!({
        "token": access,
        "refresh_token": refresh,
        "token_uri": flow.token_url,
        "client_id": client.client_id,
        "client_secret": client.client_secret.expose(),
        "scopes": scopes,
        "expiry": expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc_4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(input.as_bytes()), output);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn pkce_challenge_of_the_rfc_7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let v = pkce_verifier();
        assert_eq!(v.len(), 64);
        assert_ne!(v, pkce_verifier());
    }
}
