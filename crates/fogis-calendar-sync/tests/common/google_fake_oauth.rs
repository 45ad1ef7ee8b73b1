//! The fake's OAuth endpoints: the token endpoint (refresh, with `invalid_grant` on demand;
//! code exchange checking the PKCE verifier against the challenge) and the authorization
//! endpoint, which "consents" at once and redirects to the loopback with a code.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{b64url, decode_form, json_ok, Shared, CLIENT_ID, CLIENT_SECRET};

pub fn token(state: &Shared, body: &[u8]) -> Response {
    let form: HashMap<String, String> = decode_form(&String::from_utf8_lossy(body))
        .into_iter()
        .collect();
    let mut f = state.lock().unwrap_or_else(|p| p.into_inner());
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let oauth_error = |status: u16, error: &str, description: &str| {
        let body = json!({"error": error, "error_description": description});
        (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
    };
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return oauth_error(401, "invalid_client", "The OAuth client was not found.");
    }
    match get("grant_type") {
        "refresh_token" => {
            f.refreshes += 1;
            if f.invalid_grant || !f.refresh_tokens.contains(get("refresh_token")) {
                return oauth_error(400, "invalid_grant", "Token has been expired or revoked.");
            }
            let access = f.issue_access_token();
            json_ok(
                json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer",
                "scope": "https://www.googleapis.com/auth/calendar.events https://www.googleapis.com/auth/contacts"}),
            )
        }
        "authorization_code" => {
            f.code_exchanges.push(form.clone());
            let Some((challenge, method, redirect)) = f.codes.remove(get("code")) else {
                return oauth_error(400, "invalid_grant", "Malformed auth code.");
            };
            if redirect != get("redirect_uri") {
                return oauth_error(400, "redirect_uri_mismatch", "Bad Request");
            }
            let verifier = get("code_verifier");
            if method != "S256" || b64url(&Sha256::digest(verifier.as_bytes())) != challenge {
                return oauth_error(400, "invalid_grant", "Invalid code verifier.");
            }
            let access = f.issue_access_token();
            let refresh = format!("1//fake-refresh-{}", f.next());
            f.refresh_tokens.insert(refresh.clone());
            json_ok(
                json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer",
                "refresh_token": refresh,
                "scope": "https://www.googleapis.com/auth/calendar.events https://www.googleapis.com/auth/contacts"}),
            )
        }
        _ => oauth_error(400, "unsupported_grant_type", "Invalid grant_type"),
    }
}

/// The consent screen, already consented: redirects to `redirect_uri` with a code.
pub fn authorize(state: &Shared, query: &[(String, String)]) -> Response {
    let q: HashMap<String, String> = query.iter().cloned().collect();
    let mut f = state.lock().unwrap_or_else(|p| p.into_inner());
    f.auth_requests.push(q.clone());
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let redirect = get("redirect_uri");
    if get("client_id") != CLIENT_ID
        || get("response_type") != "code"
        || !redirect.starts_with("http://127.0.0.1:")
    {
        return (StatusCode::BAD_REQUEST, "Error 400: invalid_request").into_response();
    }
    let code = format!("4/fake-code-{}", f.next());
    f.codes.insert(
        code.clone(),
        (
            get("code_challenge"),
            get("code_challenge_method"),
            redirect.clone(),
        ),
    );
    let mut location = reqwest::Url::parse(&redirect).unwrap();
    location
        .query_pairs_mut()
        .append_pair("state", &get("state"))
        .append_pair("code", &code)
        .append_pair("scope", &get("scope"));
    (StatusCode::FOUND, [("location", location.to_string())]).into_response()
}
