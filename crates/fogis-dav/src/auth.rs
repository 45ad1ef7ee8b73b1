//! HTTP authentication: Basic (RFC 7617) or Digest (RFC 7616), chosen from the server's
//! `WWW-Authenticate` challenge. The challenge parsing and Digest arithmetic are the
//! `http-auth` crate's; this module decides when to answer and what a 401 means.
//!
//! No credentials are sent before the server asks, unless [`crate::ClientBuilder::preemptive_basic`]
//! says so: a password sent as Basic to a server that wanted Digest would travel in clear text
//! for nothing. After the first challenge every request carries an answer to it (Digest with an
//! increasing nonce count), so a session costs one extra round trip, not one per request.

use std::sync::Mutex;

use http_auth::{PasswordClient, PasswordParams};
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};

use crate::DavError;

/// A user name and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What to do after a 401.
pub(crate) enum AfterChallenge {
    /// Send the request again with this `Authorization` value.
    Retry(String),
}

/// The credentials and the scheme learned from the server's last challenge.
pub(crate) struct Auth {
    credentials: Option<Credentials>,
    preemptive_basic: bool,
    /// Held only while computing a header value, never across an `.await`.
    scheme: Mutex<Option<PasswordClient>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("credentials", &self.credentials)
            .field("scheme", &self.scheme_name())
            .finish()
    }
}

impl Auth {
    pub(crate) fn new(credentials: Option<Credentials>, preemptive_basic: bool) -> Auth {
        Auth {
            credentials,
            preemptive_basic,
            scheme: Mutex::new(None),
        }
    }

    /// `Basic`, `Digest`, or `None` before the first challenge.
    pub(crate) fn scheme_name(&self) -> Option<&'static str> {
        match &*self.lock() {
            Some(PasswordClient::Basic(_)) => Some("Basic"),
            Some(PasswordClient::Digest(_)) => Some("Digest"),
            _ => None,
        }
    }

    /// The `Authorization` value for a request, if a scheme is known (or Basic is preemptive).
    /// `uri` is the request target (path and query), as Digest signs it.
    pub(crate) fn authorization(&self, method: &str, uri: &str) -> Option<String> {
        let credentials = self.credentials.as_ref()?;
        let mut scheme = self.lock();
        match scheme.as_mut() {
            Some(client) => client.respond(&params(credentials, method, uri)).ok(),
            None if self.preemptive_basic => Some(http_auth::basic::encode_credentials(
                &credentials.username,
                &credentials.password,
            )),
            None => None,
        }
    }

    /// Decides on a 401. `sent` is the scheme of the `Authorization` the request carried, if
    /// any. Retrying is allowed once per request: when nothing was sent, when the server
    /// switched schemes, or when it said the Digest nonce was `stale`; otherwise the
    /// credentials themselves were refused.
    pub(crate) fn on_unauthorized(
        &self,
        headers: &HeaderMap,
        sent: Option<&'static str>,
        method: &str,
        uri: &str,
    ) -> Result<AfterChallenge, DavError> {
        let credentials = self
            .credentials
            .as_ref()
            .ok_or(DavError::CredentialsMissing)?;
        let values: Vec<&str> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(match sent {
                // Answered, and refused without a new challenge: the credentials.
                Some(scheme) => DavError::CredentialsRefused { scheme },
                None => DavError::ChallengeMissing,
            });
        }
        let mut builder = PasswordClient::builder();
        for value in &values {
            builder = builder.challenges(value);
        }
        let offered = offered_schemes(&values);
        let mut client = match builder.build() {
            Ok(client) => client,
            // `Basic` without the realm RFC 7617 requires: the realm only labels the prompt.
            Err(_) if scheme_offered(&offered, "Basic") => {
                PasswordClient::try_from(r#"Basic realm="""#)
                    .map_err(|e| DavError::Protocol(format!("Basic challenge: {e}")))?
            }
            Err(e) if scheme_offered(&offered, "Digest") => {
                return Err(DavError::Protocol(format!(
                    "cannot read the server's Digest challenge: {}",
                    crate::error::excerpt(&e)
                )))
            }
            Err(_) => return Err(DavError::AuthSchemeUnsupported { offered }),
        };
        let (name, stale) = match &client {
            PasswordClient::Digest(d) => ("Digest", d.stale()),
            _ => ("Basic", false),
        };
        if sent == Some(name) && !stale {
            return Err(DavError::CredentialsRefused { scheme: name });
        }
        let value = client
            .respond(&params(credentials, method, uri))
            .map_err(|e| DavError::Protocol(format!("cannot answer the {name} challenge: {e}")))?;
        *self.lock() = Some(client);
        Ok(AfterChallenge::Retry(value))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<PasswordClient>> {
        // A panic while holding it cannot leave the scheme half-written: recover the value.
        self.scheme
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn params<'a>(c: &'a Credentials, method: &'a str, uri: &'a str) -> PasswordParams<'a> {
    PasswordParams {
        username: &c.username,
        password: &c.password,
        uri,
        method,
        body: None,
    }
}

fn scheme_offered(offered: &str, scheme: &str) -> bool {
    offered
        .split(", ")
        .any(|name| name.eq_ignore_ascii_case(scheme))
}

/// The scheme names of the challenges, for the error message (`Bearer, NTLM`).
fn offered_schemes(values: &[&str]) -> String {
    let mut names: Vec<String> = Vec::new();
    for value in values {
        match http_auth::parse_challenges(value) {
            Ok(challenges) => names.extend(challenges.iter().map(|c| c.scheme.to_owned())),
            Err(_) => names.extend(value.split_whitespace().next().map(str::to_owned)),
        }
    }
    names.dedup();
    let names: Vec<String> = names.iter().map(|n| crate::error::excerpt(n)).collect();
    if names.is_empty() {
        "no".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn creds() -> Option<Credentials> {
        Some(Credentials {
            username: "user".into(),
            password: "secret-pw".into(),
        })
    }

    fn challenge(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn digest_is_preferred_and_refusal_after_answering_blames_the_credentials() {
        let auth = Auth::new(creds(), false);
        assert_eq!(auth.authorization("GET", "/"), None);
        let h = challenge(&[
            r#"Basic realm="x""#,
            r#"Digest realm="x", nonce="abc", qop="auth", algorithm=SHA-256"#,
        ]);
        let AfterChallenge::Retry(v) = auth.on_unauthorized(&h, None, "GET", "/").unwrap();
        assert!(v.starts_with("Digest "), "{v}");
        assert!(!v.contains("secret-pw"));
        assert_eq!(auth.scheme_name(), Some("Digest"));
        let next = auth.authorization("PUT", "/a.ics").unwrap();
        assert!(next.contains("nc=00000002"), "{next}");
        let err = auth.on_unauthorized(&h, Some("Digest"), "GET", "/");
        assert!(matches!(
            err,
            Err(DavError::CredentialsRefused { scheme: "Digest" })
        ));
        let stale = challenge(&[r#"Digest realm="x", nonce="new", qop="auth", stale=true"#]);
        assert!(auth
            .on_unauthorized(&stale, Some("Digest"), "GET", "/")
            .is_ok());
    }

    #[test]
    fn an_unsupported_scheme_is_named_and_not_blamed_on_the_password() {
        let auth = Auth::new(creds(), false);
        let h = challenge(&[r#"Bearer realm="x""#, "NTLM"]);
        let err = auth.on_unauthorized(&h, None, "GET", "/").err().unwrap();
        assert_eq!(
            err,
            DavError::AuthSchemeUnsupported {
                offered: "Bearer, NTLM".into()
            }
        );
        // A Basic challenge without a realm is still answered.
        let bare = challenge(&["Basic"]);
        assert!(auth.on_unauthorized(&bare, None, "GET", "/").is_ok());
        assert_eq!(auth.scheme_name(), Some("Basic"));
        let err = auth.on_unauthorized(&bare, Some("Basic"), "GET", "/");
        assert_eq!(
            err.err(),
            Some(DavError::CredentialsRefused { scheme: "Basic" })
        );
        let err = auth.on_unauthorized(&HeaderMap::new(), None, "GET", "/");
        assert_eq!(err.err(), Some(DavError::ChallengeMissing));
        let err = auth.on_unauthorized(&HeaderMap::new(), Some("Basic"), "GET", "/");
        assert_eq!(
            err.err(),
            Some(DavError::CredentialsRefused { scheme: "Basic" })
        );
        let none = Auth::new(None, false);
        let err = none.on_unauthorized(&h, None, "GET", "/").err().unwrap();
        assert_eq!(err, DavError::CredentialsMissing);
    }

    #[test]
    fn basic_preemptive_only_when_asked() {
        let auth = Auth::new(creds(), true);
        let v = auth.authorization("GET", "/").unwrap();
        assert_eq!(v, "Basic dXNlcjpzZWNyZXQtcHc=");
        assert!(!format!("{auth:?}").contains("secret-pw"));
    }
}
