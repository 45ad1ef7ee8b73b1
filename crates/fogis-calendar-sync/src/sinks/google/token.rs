//! The OAuth token of both Google sinks: google-auth's "authorized user" JSON, read as the
//! Python service wrote it (`token, refresh_token, token_uri, client_id, client_secret, scopes,
//! expiry`, no `type`).
//!
//! [`TokenSource`] hands out a valid access token, refreshing it (`grant_type=refresh_token`)
//! shortly before `expiry` or when an API answered 401, and writes the refreshed token back
//! atomically (temporary file, then rename), keeping every other key. When Google answers
//! `invalid_grant` the refresh token is dead: both sinks pause with a "re-authorize" message,
//! logged once, until the token file changes (a `google-auth` run), which is noticed without a
//! restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::sinks::SinkError;

/// What `/health` and `/sinks` say when the refresh token is dead.
pub const REAUTHORIZE: &str =
    "re-authorize: run `fogis-calendar-sync google-auth` (Google refused the refresh token)";

/// A token is refreshed this long before it expires.
const EARLY: chrono::Duration = chrono::Duration::seconds(60);

/// Hands out access tokens; shared by the calendar and contacts sinks (one user).
pub struct TokenSource {
    path: PathBuf,
    token_url: String,
    credentials_file: Option<PathBuf>,
    http: reqwest::Client,
    state: tokio::sync::Mutex<State>,
    dead_logged: AtomicBool,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("path", &self.path)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Modification time of the file as last read or written; `None`: not read yet.
    mtime: Option<SystemTime>,
    file: Map<String, Value>,
    access: Option<String>,
    expiry: Option<DateTime<Utc>>,
    /// The refresh token was refused: nothing works until the file changes.
    dead: bool,
}

impl TokenSource {
    pub fn new(
        path: PathBuf,
        token_url: String,
        credentials_file: Option<PathBuf>,
        http: reqwest::Client,
    ) -> TokenSource {
        TokenSource {
            path,
            token_url,
            credentials_file,
            http,
            state: tokio::sync::Mutex::new(State::default()),
            dead_logged: AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A valid access token, refreshed when it is about to expire.
    pub async fn access_token(&self) -> Result<String, SinkError> {
        let mut st = self.state.lock().await;
        self.reload_if_changed(&mut st)?;
        if st.dead {
            return Err(SinkError::Reauthorize(REAUTHORIZE.into()));
        }
        if let Some(token) = &st.access {
            if st.expiry.is_none_or(|e| e - EARLY > Utc::now()) {
                return Ok(token.clone());
            }
        }
        self.refresh(&mut st).await
    }

    /// An API refused `rejected` (401): a fresh token, unless another request refreshed already.
    pub async fn refresh_rejected(&self, rejected: &str) -> Result<String, SinkError> {
        let mut st = self.state.lock().await;
        self.reload_if_changed(&mut st)?;
        if st.dead {
            return Err(SinkError::Reauthorize(REAUTHORIZE.into()));
        }
        match &st.access {
            Some(current) if current != rejected => Ok(current.clone()),
            _ => self.refresh(&mut st).await,
        }
    }

    fn reload_if_changed(&self, st: &mut State) -> Result<(), SinkError> {
        let missing = || {
            SinkError::Reauthorize(format!(
                "{REAUTHORIZE}: the token file {} cannot be read",
                self.path.display()
            ))
        };
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(|_| missing())?;
        if st.mtime == Some(mtime) {
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.path).map_err(|_| missing())?;
        let Ok(Value::Object(file)) = serde_json::from_str::<Value>(&text) else {
            return Err(SinkError::Auth(format!(
                "the token file {} is not a JSON object: run `fogis-calendar-sync google-auth`",
                self.path.display()
            )));
        };
        st.access = file.get("token").and_then(Value::as_str).map(String::from);
        st.expiry = file
            .get("expiry")
            .and_then(Value::as_str)
            .and_then(parse_expiry);
        st.file = file;
        st.mtime = Some(mtime);
        if st.dead {
            tracing::info!(file = %self.path.display(), "Google token file changed: trying again");
        }
        st.dead = false;
        self.dead_logged.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn client(&self, st: &State) -> Result<(String, String), SinkError> {
        let from = |m: &Map<String, Value>| {
            let id = m.get("client_id")?.as_str()?.to_string();
            let secret = m.get("client_secret")?.as_str()?.to_string();
            Some((id, secret))
        };
        if let Some(c) = from(&st.file) {
            return Ok(c);
        }
        let file = self.credentials_file.as_ref().ok_or_else(|| {
            SinkError::Auth(
                "the token file has no client_id/client_secret: set GOOGLE_CREDENTIALS_FILE".into(),
            )
        })?;
        let secret = super::auth::ClientSecret::read(file)
            .map_err(|e| SinkError::Auth(format!("GOOGLE_CREDENTIALS_FILE: {e:#}")))?;
        Ok((secret.client_id, secret.client_secret.expose().to_string()))
    }

    async fn refresh(&self, st: &mut State) -> Result<String, SinkError> {
        let Some(refresh_token) = st
            .file
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(String::from)
        else {
            return Err(self.dead(st, "the token file has no refresh_token"));
        };
        let (client_id, client_secret) = self.client(st)?;
        let form = [
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        let resp = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| SinkError::Remote(format!("Google token endpoint: {e}")))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let error = body.get("error").and_then(Value::as_str).unwrap_or("");
        if status == 400 || status == 401 {
            if error == "invalid_grant" {
                return Err(self.dead(st, "invalid_grant"));
            }
            return Err(SinkError::Auth(format!(
                "Google refused the OAuth client ({status} {error}): check the client id and secret"
            )));
        }
        let token = body.get("access_token").and_then(Value::as_str);
        let (200..=299, Some(token)) = (status, token) else {
            return Err(SinkError::Remote(format!(
                "Google token endpoint answered {status} {error}"
            )));
        };
        let token = token.to_string();
        let lifetime = body
            .get("expires_in")
            .and_then(Value::as_i64)
            .unwrap_or(3600);
        let expiry = Utc::now() + chrono::Duration::seconds(lifetime);
        st.file.insert("token".into(), Value::from(token.clone()));
        st.file.insert(
            "expiry".into(),
            Value::from(expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
        if let Some(rotated) = body.get("refresh_token").and_then(Value::as_str) {
            st.file.insert("refresh_token".into(), Value::from(rotated));
        }
        st.access = Some(token.clone());
        st.expiry = Some(expiry);
        let text = serde_json::to_string_pretty(&st.file).unwrap_or_default();
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || {
            write_atomic(&path, text.as_bytes())?;
            std::fs::metadata(&path)?.modified()
        })
        .await;
        match written {
            Ok(Ok(mtime)) => st.mtime = Some(mtime),
            Ok(Err(e)) => tracing::warn!(file = %self.path.display(), error = %e,
                "could not write the refreshed Google token back; using it from memory"),
            Err(e) => tracing::warn!(error = %e, "writing the Google token file failed"),
        }
        tracing::debug!("Google access token refreshed");
        Ok(token)
    }

    /// The refresh token is dead: pause until the file changes; say so once.
    fn dead(&self, st: &mut State, why: &str) -> SinkError {
        st.dead = true;
        if !self.dead_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(file = %self.path.display(), reason = why,
                "Google sinks paused: {REAUTHORIZE}");
        }
        SinkError::Reauthorize(REAUTHORIZE.into())
    }
}

/// google-auth writes `2024-05-01T12:34:56.789012Z` (naive UTC plus `Z`); also takes RFC 3339.
pub fn parse_expiry(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never half of
/// one: [`crate::store::files::write_atomic`] (random `create_new` temporary file, mode 0600, no
/// symlink followed, directory synced).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::store::files::write_atomic(path, bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn expiry_in_google_auth_and_rfc3339_forms() {
        let a = parse_expiry("2024-05-01T12:34:56.789012Z").unwrap();
        assert_eq!(a.to_rfc3339(), "2024-05-01T12:34:56.789012+00:00");
        let b = parse_expiry("2024-05-01T12:34:56Z").unwrap();
        assert_eq!(b.timestamp(), 1714566896);
        let c = parse_expiry("2024-05-01T14:34:56+02:00").unwrap();
        assert_eq!(c, b);
        assert!(parse_expiry("soon").is_none());
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
