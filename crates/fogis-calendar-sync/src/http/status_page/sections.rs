//! The status sections: Redis, the last messages, the sinks.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use fogis_pubsub::SubscriberStatus;

use super::html::{ago, esc, when};
use super::{View, LAST_MESSAGES};
use crate::mask::mask_pii;
use crate::sinks::SinkStatus;

pub fn redis(r: &SubscriberStatus, now: DateTime<Utc>, tz: Tz, personal: bool) -> String {
    let text = |s: &str| esc(&if personal { s.to_string() } else { mask_pii(s) });
    let state = match (
        r.enabled,
        r.connected,
        r.connected_since,
        r.disconnected_since,
    ) {
        (false, ..) => "<span class=\"badge\">off</span> REDIS_PUBSUB_ENABLED or REDIS_ENABLED \
                        is false: lists arrive over HTTP only"
            .to_string(),
        (true, true, Some(since), _) => format!(
            "<span class=\"badge ok\">connected</span> since {}",
            when(now, since, tz)
        ),
        (true, true, None, _) => "<span class=\"badge ok\">connected</span>".to_string(),
        (true, false, _, Some(since)) => format!(
            "<span class=\"badge warn\">not connected</span> since {}",
            when(now, since, tz)
        ),
        (true, false, _, None) => "<span class=\"badge warn\">not connected</span>".to_string(),
    };
    let mut out = format!(
        "<div class=\"card\"><p>{state}</p><dl><dt>Reconnects</dt><dd>{}</dd>\
         <dt>Messages</dt><dd>{} received, {} applied, {} duplicate, {} rejected</dd>",
        r.reconnect_count,
        r.messages_received,
        r.messages_applied,
        r.messages_duplicate,
        r.messages_rejected
    );
    if let Some(e) = &r.last_error {
        let at = r
            .last_error_at
            .map(|t| format!(" ({})", when(now, t, tz)))
            .unwrap_or_default();
        out.push_str(&format!("<dt>Last error</dt><dd>{}{at}</dd>", text(e)));
    }
    out.push_str("</dl>");
    if !r.recent.is_empty() {
        out.push_str("<h3>Last on Redis</h3><ul class=\"log\">");
        for m in r.recent.iter().rev().take(LAST_MESSAGES) {
            out.push_str(&format!(
                "<li>{} · <code>{}</code> · {}</li>",
                when(now, m.at, tz),
                esc(&m.channel),
                text(&m.outcome)
            ));
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>");
    out
}

/// The engine's sync log: every list from HTTP, Redis or the CLI, and what it did.
pub fn messages(v: &View) -> String {
    let (now, tz) = (v.agenda.now, v.agenda.tz);
    let log = match &v.log {
        Ok(log) if log.is_empty() => {
            return "<p class=\"card muted\">No message yet. Post a list to /sync or publish \
                    one on Redis.</p>"
                .to_string()
        }
        Ok(log) => log,
        Err(e) => return format!("<p class=\"card\">{}</p>", esc(e)),
    };
    let mut out = String::from("<div class=\"card\"><ul class=\"log\">");
    for e in log {
        let what = match (&e.counts, &e.detail) {
            (Some(c), detail) => {
                let parts: Vec<String> = [
                    ("created", c.created),
                    ("updated", c.updated),
                    ("cancelled", c.cancelled),
                    ("withdrawn", c.withdrawn),
                    ("archived", c.archived),
                    ("unchanged", c.unchanged),
                    ("rejected", c.rejected),
                ]
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
                let mut s = if parts.is_empty() {
                    "nothing to do".to_string()
                } else {
                    parts.join(", ")
                };
                if let Some(d) = detail {
                    s.push_str(": ");
                    s.push_str(d);
                }
                s
            }
            (None, Some(d)) => d.clone(),
            (None, None) => String::new(),
        };
        let what = if v.agenda.personal {
            what
        } else {
            mask_pii(&what)
        };
        let id = e
            .message_id
            .as_deref()
            .map(|id| format!(" · <code>{}</code>", esc(id)))
            .unwrap_or_default();
        out.push_str(&format!(
            "<li>{} · {} <span class=\"badge {cls}\">{outcome}</span> {}{id}</li>",
            when(now, e.at, tz),
            esc(&e.origin),
            esc(&what),
            cls = css_class(&e.outcome),
            outcome = esc(&e.outcome),
        ));
    }
    out.push_str("</ul></div>");
    out
}

/// A CSS class for an outcome: only known words, never text from outside.
fn css_class(outcome: &str) -> &'static str {
    match outcome {
        "applied" => "applied",
        "duplicate" => "duplicate",
        "rejected" => "rejected",
        _ => "warn",
    }
}

pub fn sinks(list: &[SinkStatus], now: DateTime<Utc>, tz: Tz, personal: bool) -> String {
    if list.is_empty() {
        return "<p class=\"card muted\">None configured: the feed is the calendar. \
                CALDAV_URL, CARDDAV_URL and FORWARD_URL add one.</p>"
            .to_string();
    }
    let text = |s: &str| esc(&if personal { s.to_string() } else { mask_pii(s) });
    let mut out = String::new();
    for s in list {
        let (cls, state) = if s.auth_failed {
            (
                "rejected",
                "credentials refused: fix the username or password",
            )
        } else if s.paused_until.is_some() {
            ("warn", "unavailable: retrying")
        } else {
            ("ok", "ok")
        };
        out.push_str(&format!(
            "<div class=\"card\"><p><strong>{}</strong> <span class=\"badge {cls}\">{state}\
             </span><br><code>{}</code></p><dl><dt>Pending</dt><dd>{}</dd>",
            esc(s.name),
            text(&s.target),
            s.pending
        ));
        if let Some(t) = s.last_success {
            out.push_str(&format!(
                "<dt>Last success</dt><dd>{}</dd>",
                when(now, t, tz)
            ));
        }
        if let Some(e) = &s.last_error {
            let at = s
                .last_error_at
                .map(|t| format!(" ({})", esc(&ago(now, t))))
                .unwrap_or_default();
            out.push_str(&format!("<dt>Last error</dt><dd>{}{at}</dd>", text(e)));
        }
        out.push_str("</dl></div>");
    }
    out
}
