//! The pull source's section: where the list is pulled from, the last pull and its result, the
//! next one.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::html::{esc, time_tag, when};
use crate::ingest::pull::{PullResult, PullStatus};
use crate::mask::mask_pii;

pub fn section(p: &PullStatus, now: DateTime<Utc>, tz: Tz, personal: bool) -> String {
    if !p.enabled {
        return "<p class=\"card muted\">Off: set <code>FOGIS_API_CLIENT_URL</code> to the \
                stack's fogis-api-client service and the calendar heals from FOGIS's own list \
                by itself.</p>"
            .to_string();
    }
    let text = |s: &str| esc(&if personal { s.to_string() } else { mask_pii(s) });
    let every = match p.interval_seconds {
        0 => "at start and when Redis reconnects or a publish was lost".to_string(),
        s if s % 60 == 0 => format!(
            "every {} min, and when pub/sub may have lost something",
            s / 60
        ),
        s => format!("every {s} s, and when pub/sub may have lost something"),
    };
    let mut out = format!(
        "<div class=\"card\"><dl><dt>Source</dt><dd><code>{}</code> · {}</dd>",
        esc(p.source.as_deref().unwrap_or_default()),
        esc(&every)
    );
    let last = match (p.last_pull_at, p.last_result) {
        _ if p.in_progress => "<span class=\"badge\">pulling now</span>".to_string(),
        (Some(at), Some(result)) => {
            let class = match result {
                PullResult::Applied | PullResult::Unchanged => "ok",
                PullResult::Held | PullResult::Dropped => "warn",
                PullResult::Failed | PullResult::Invalid => "rejected",
            };
            let trigger = p.last_trigger.map(|t| t.as_str()).unwrap_or_default();
            format!(
                "{} · {} · <span class=\"badge {class}\">{}</span> {}",
                when(now, at, tz),
                esc(trigger),
                result.as_str(),
                text(p.last_detail.as_deref().unwrap_or_default())
            )
        }
        _ => "none yet".to_string(),
    };
    out.push_str(&format!("<dt>Last pull</dt><dd>{last}</dd>"));
    if p.consecutive_failures > 0 {
        let since = p
            .failing_since
            .map(|t| format!(" since {}", when(now, t, tz)))
            .unwrap_or_default();
        out.push_str(&format!(
            "<dt>Failing</dt><dd><span class=\"badge warn\">{} attempt(s)</span>{since}: \
             nothing applied from it; the calendar is as the last good list left it</dd>",
            p.consecutive_failures
        ));
    }
    if let Some(t) = p.last_success_at {
        out.push_str(&format!(
            "<dt>Last good answer</dt><dd>{}</dd>",
            when(now, t, tz)
        ));
    }
    let next = match p.next_pull_at {
        Some(t) if t > now => format!("{} (in {})", time_tag(t, tz), esc(&until(now, t))),
        Some(_) => "now".to_string(),
        None if p.in_progress => "after this one".to_string(),
        None => "on the next event".to_string(),
    };
    out.push_str(&format!("<dt>Next pull</dt><dd>{next}</dd></dl></div>"));
    out
}

/// `45 s`, `12 min`, `3 h`.
fn until(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    match (t - now).num_seconds() {
        s if s < 60 => format!("{} s", s.max(1)),
        s if s < 3600 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}
