//! The status sections: Redis, the last messages, the sinks.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use fogis_pubsub::SubscriberStatus;
use maud::{html, Markup};

use super::html::{ago, when};
use super::{View, LAST_MESSAGES};
use crate::mask::mask_pii;
use crate::sinks::SinkStatus;

/// A free text that may hold personal data, masked unless the request may see it.
fn masked(s: &str, personal: bool) -> String {
    if personal {
        s.to_string()
    } else {
        mask_pii(s)
    }
}

pub fn redis(r: &SubscriberStatus, now: DateTime<Utc>, tz: Tz, personal: bool) -> Markup {
    let state = match (
        r.enabled,
        r.connected,
        r.connected_since,
        r.disconnected_since,
    ) {
        (false, ..) => html! {
            span class="badge" { "off" }
            " REDIS_PUBSUB_ENABLED or REDIS_ENABLED is false: lists arrive over HTTP only"
        },
        (true, true, Some(since), _) => html! {
            span class="badge ok" { "connected" } " since " (when(now, since, tz))
        },
        (true, true, None, _) => html! { span class="badge ok" { "connected" } },
        (true, false, _, Some(since)) => html! {
            span class="badge warn" { "not connected" } " since " (when(now, since, tz))
        },
        (true, false, _, None) => html! { span class="badge warn" { "not connected" } },
    };
    html! {
        div class="card" {
            p { (state) }
            dl {
                dt { "Reconnects" } dd { (r.reconnect_count) }
                dt { "Messages" }
                dd {
                    (r.messages_received) " received, " (r.messages_applied) " applied, "
                    (r.messages_duplicate) " duplicate, " (r.messages_rejected) " rejected"
                }
                @if let Some(e) = &r.last_error {
                    dt { "Last error" }
                    dd {
                        (masked(e, personal))
                        @if let Some(t) = r.last_error_at { " (" (when(now, t, tz)) ")" }
                    }
                }
            }
            @if !r.recent.is_empty() {
                h3 { "Last on Redis" }
                ul class="log" {
                    @for m in r.recent.iter().rev().take(LAST_MESSAGES) {
                        li {
                            (when(now, m.at, tz)) " · " code { (m.channel) } " · "
                            (masked(&m.outcome, personal))
                        }
                    }
                }
            }
        }
    }
}

/// The engine's sync log: every list from HTTP, Redis or the CLI, and what it did.
pub fn messages(v: &View) -> Markup {
    let (now, tz) = (v.agenda.now, v.agenda.tz);
    let log = match &v.log {
        Ok(log) if log.is_empty() => {
            return html! {
                p class="card muted" {
                    "No message yet. Post a list to /sync or publish one on Redis."
                }
            }
        }
        Ok(log) => log,
        Err(e) => return html! { p class="card" { (e) } },
    };
    html! {
        div class="card" {
            ul class="log" {
                @for e in log {
                    li {
                        (when(now, e.at, tz)) " · " (e.origin) " "
                        span class={ "badge " (css_class(&e.outcome)) } { (e.outcome) }
                        " " (masked(&what(e), v.agenda.personal))
                        @if let Some(id) = &e.message_id { " · " code { (id) } }
                    }
                }
            }
        }
    }
}

/// What one list did: its counts, then the detail.
fn what(e: &crate::store::LogEntry) -> String {
    match (&e.counts, &e.detail) {
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
    }
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

pub fn sinks(list: &[SinkStatus], now: DateTime<Utc>, tz: Tz, personal: bool) -> Markup {
    if list.is_empty() {
        return html! {
            p class="card muted" {
                "None configured: the feed is the calendar. CALDAV_URL, CARDDAV_URL and \
                 FORWARD_URL add one."
            }
        };
    }
    html! {
        @for s in list {
            @let (cls, state) = if s.auth_failed {
                ("rejected", "credentials refused: fix the username or password")
            } else if s.paused_until.is_some() {
                ("warn", "unavailable: retrying")
            } else {
                ("ok", "ok")
            };
            div class="card" {
                p {
                    strong { (s.name) } " " span class={ "badge " (cls) } { (state) } br;
                    code { (masked(&s.target, personal)) }
                }
                dl {
                    dt { "Pending" } dd { (s.pending) }
                    @if let Some(t) = s.last_success {
                        dt { "Last success" } dd { (when(now, t, tz)) }
                    }
                    @if let Some(e) = &s.last_error {
                        dt { "Last error" }
                        dd {
                            (masked(e, personal))
                            @if let Some(t) = s.last_error_at { " (" (ago(now, t)) ")" }
                        }
                    }
                }
            }
        }
    }
}
