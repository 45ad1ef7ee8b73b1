//! The pull source's section: where the list is pulled from, the last pull and its result, the
//! next one.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};

use super::html::{time_tag, when};
use crate::ingest::pull::{PullResult, PullStatus};
use crate::mask::mask_pii;

pub fn section(p: &PullStatus, now: DateTime<Utc>, tz: Tz, personal: bool) -> Markup {
    if !p.enabled {
        return html! {
            p class="card muted" {
                "Off: set " code { "FOGIS_API_CLIENT_URL" } " to the stack's fogis-api-client \
                 service and the calendar heals from FOGIS's own list by itself."
            }
        };
    }
    let text = |s: &str| if personal { s.to_string() } else { mask_pii(s) };
    let every = match p.interval_seconds {
        0 => "at start and when Redis reconnects or a publish was lost".to_string(),
        s if s % 60 == 0 => format!(
            "every {} min, and when pub/sub may have lost something",
            s / 60
        ),
        s => format!("every {s} s, and when pub/sub may have lost something"),
    };
    let last = match (p.last_pull_at, p.last_result) {
        _ if p.in_progress => html! { span class="badge" { "pulling now" } },
        (Some(at), Some(result)) => {
            let class = match result {
                PullResult::Applied | PullResult::Unchanged => "ok",
                PullResult::Held | PullResult::Dropped => "warn",
                PullResult::Failed | PullResult::Invalid => "rejected",
            };
            let trigger = p.last_trigger.map(|t| t.as_str()).unwrap_or_default();
            html! {
                (when(now, at, tz)) " · " (trigger) " · "
                span class={ "badge " (class) } { (result.as_str()) } " "
                (text(p.last_detail.as_deref().unwrap_or_default()))
            }
        }
        _ => html! { "none yet" },
    };
    let next = match p.next_pull_at {
        Some(t) if t > now => html! { (time_tag(t, tz)) " (in " (until(now, t)) ")" },
        Some(_) => html! { "now" },
        None if p.in_progress => html! { "after this one" },
        None => html! { "on the next event" },
    };
    html! {
        div class="card" {
            dl {
                dt { "Source" }
                dd { code { (p.source.as_deref().unwrap_or_default()) } " · " (every) }
                dt { "Last pull" } dd { (last) }
                @if p.consecutive_failures > 0 {
                    dt { "Failing" }
                    dd {
                        span class="badge warn" { (p.consecutive_failures) " attempt(s)" }
                        @if let Some(t) = p.failing_since { " since " (when(now, t, tz)) }
                        ": nothing applied from it; the calendar is as the last good list left it"
                    }
                }
                @if let Some(t) = p.last_success_at {
                    dt { "Last good answer" } dd { (when(now, t, tz)) }
                }
                dt { "Next pull" } dd { (next) }
            }
        }
    }
}

/// `45 s`, `12 min`, `3 h`.
fn until(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    match (t - now).num_seconds() {
        s if s < 60 => format!("{} s", s.max(1)),
        s if s < 3600 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}
