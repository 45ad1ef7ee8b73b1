//! The agenda: upcoming matches grouped by local day, with what changed lately highlighted.
//!
//! A match is *upcoming* while it has not ended (`start + MATCH_DURATION_MINUTES` is ahead). Its
//! highlight comes from the state: `cancelled` whenever the match is cancelled; `new`, `updated`
//! or `removed` when its last change (`last_action`, `changed_at`) is at most [`RECENT`] old. A
//! withdrawn match is no longer in the feed; it is listed (struck through) only while that
//! change is recent, so a referee sees why it left the calendar.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::html::{ago, esc, time_tag};
use crate::reconcile::{Action, Presence, StoredMatch};

/// How long a change stays highlighted.
pub const RECENT: Duration = Duration::days(7);

/// What the agenda needs besides the matches.
#[derive(Debug, Clone, Copy)]
pub struct AgendaContext {
    pub now: DateTime<Utc>,
    pub tz: Tz,
    pub match_duration: Duration,
    /// Phone numbers and e-mail addresses may be shown.
    pub personal: bool,
}

/// The highlight of one match, if any: (css class, label).
pub fn highlight(m: &StoredMatch, now: DateTime<Utc>) -> Option<(&'static str, String)> {
    let recent = now - m.changed_at <= RECENT;
    let since = |what: &str| format!("{what} {}", ago(now, m.changed_at));
    if m.presence == Presence::Withdrawn {
        return recent.then(|| ("withdrawn", since("removed from your list")));
    }
    if m.record.cancelled {
        return Some((
            "cancelled",
            if recent && m.last_action == Action::Cancel {
                since("cancelled")
            } else {
                "cancelled".to_string()
            },
        ));
    }
    if !recent {
        return None;
    }
    match m.last_action {
        Action::Create => Some(("new", since("new"))),
        Action::Update => Some(("updated", since("moved or updated"))),
        _ => None,
    }
}

/// The matches the agenda lists, in kick-off order.
pub fn upcoming<'a>(matches: &'a [StoredMatch], cx: &AgendaContext) -> Vec<&'a StoredMatch> {
    matches
        .iter()
        .filter(|m| m.record.start + cx.match_duration > cx.now)
        .filter(|m| m.presence.in_feed() || cx.now - m.changed_at <= RECENT)
        .collect()
}

/// The agenda section's body.
pub fn render(matches: &[StoredMatch], cx: &AgendaContext) -> String {
    let list = upcoming(matches, cx);
    if list.is_empty() {
        return "<p class=\"card muted\">No upcoming matches. New ones appear here as soon as \
                FOGIS lists them.</p>"
            .to_string();
    }
    let mut out = String::new();
    let mut day = None;
    for m in list {
        let local = m.record.start.with_timezone(&cx.tz);
        let this_day = local.date_naive();
        if day != Some(this_day) {
            if day.is_some() {
                out.push_str("</ol></section>");
            }
            out.push_str(&format!(
                "<section class=\"card day\"><h3>{}</h3><ol>",
                esc(&local.format("%A %-d %B %Y").to_string())
            ));
            day = Some(this_day);
        }
        out.push_str(&item(m, cx));
    }
    out.push_str("</ol></section>");
    out
}

fn item(m: &StoredMatch, cx: &AgendaContext) -> String {
    let r = &m.record;
    let local = r.start.with_timezone(&cx.tz);
    let (class, badge) = match highlight(m, cx.now) {
        Some((class, label)) => (
            class,
            format!(" <span class=\"badge {class}\">{}</span>", esc(&label)),
        ),
        None => ("", String::new()),
    };
    let mut meta: Vec<String> = Vec::new();
    if let Some(v) = &r.venue {
        meta.push(esc(v));
    }
    if let Some(c) = &r.competition {
        meta.push(esc(c));
    }
    if let Some(nr) = &r.match_nr {
        meta.push(format!("match {}", esc(nr)));
    }
    if r.postponed {
        meta.push("<strong>postponed</strong>".to_string());
    }
    meta.push(format!(
        "<a href=\"{}\" rel=\"noreferrer\">match page</a>",
        esc(&r.match_url())
    ));
    format!(
        "<li class=\"match {class}\" data-match-id=\"{id}\"><div class=\"when\">\
         <time datetime=\"{iso}\">{hm}</time></div><div class=\"what\">\
         <div class=\"title\"><span class=\"name\">{title}</span>{badge}</div>\
         <div class=\"meta\">{meta}</div>\
         {refs}{contacts}</div></li>",
        id = r.match_id,
        iso = r.start.to_rfc3339(),
        hm = local.format("%H:%M"),
        title = esc(&r.title()),
        meta = meta.join(" · "),
        refs = referees(m, cx.personal),
        contacts = team_contacts(m, cx.personal),
    )
}

fn referees(m: &StoredMatch, personal: bool) -> String {
    if m.record.referees.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul class=\"refs\">");
    for r in &m.record.referees {
        let role = r
            .role_short
            .as_deref()
            .or(r.role.as_deref())
            .unwrap_or("Domare");
        out.push_str(&format!("<li>{}: {}", esc(role), esc(&r.name)));
        if personal {
            if let Some(phone) = r.mobile.as_deref().or(r.phone.as_deref()) {
                out.push_str(&format!(
                    " · <a href=\"tel:{}\">{}</a>",
                    esc(&phone.replace([' ', '-'], "")),
                    esc(phone)
                ));
            }
            if let Some(mail) = &r.email {
                out.push_str(&format!(
                    " · <a href=\"mailto:{}\">{}</a>",
                    esc(mail),
                    esc(mail)
                ));
            }
        }
        out.push_str("</li>");
    }
    out.push_str("</ul>");
    out
}

/// Team contacts are people's names and numbers: shown only with a token.
fn team_contacts(m: &StoredMatch, personal: bool) -> String {
    if !personal || m.record.team_contacts.is_empty() {
        return String::new();
    }
    let mut out = String::from("<details><summary class=\"meta\">Team contacts</summary><ul>");
    for c in &m.record.team_contacts {
        let team = c.team.as_deref().map(|t| format!("{}: ", esc(t)));
        out.push_str(&format!(
            "<li class=\"meta\">{}{}",
            team.unwrap_or_default(),
            esc(&c.name)
        ));
        if let Some(phone) = c.mobile.as_deref().or(c.phone.as_deref()) {
            out.push_str(&format!(" · {}", esc(phone)));
        }
        if let Some(mail) = &c.email {
            out.push_str(&format!(" · {}", esc(mail)));
        }
        out.push_str("</li>");
    }
    out.push_str("</ul></details>");
    out
}

/// A one-line summary of the next match, for the banner.
pub fn next_line(matches: &[StoredMatch], cx: &AgendaContext) -> Option<String> {
    let next = upcoming(matches, cx)
        .into_iter()
        .find(|m| m.presence.in_feed() && !m.record.cancelled)?;
    Some(format!(
        "Next: {} · {}",
        esc(&next.record.title()),
        time_tag(next.record.start, cx.tz)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchRecord;

    fn stored(
        start_in_days: i64,
        presence: Presence,
        action: Action,
        changed_days_ago: i64,
    ) -> StoredMatch {
        let now = Utc::now();
        let record = MatchRecord {
            match_id: 1,
            match_nr: None,
            home_team: Some("Home".into()),
            away_team: Some("Away".into()),
            start: now + Duration::days(start_in_days),
            venue: None,
            venue_address: None,
            coordinates: None,
            competition: None,
            cancelled: action == Action::Cancel,
            postponed: false,
            interrupted: false,
            referees: Vec::new(),
            team_contacts: Vec::new(),
        };
        StoredMatch {
            hash: record.content_hash(),
            record,
            presence,
            sequence: 0,
            created_at: now - Duration::days(30),
            changed_at: now - Duration::days(changed_days_ago),
            last_action: action,
        }
    }

    fn class(m: &StoredMatch) -> Option<&'static str> {
        highlight(m, Utc::now()).map(|(c, _)| c)
    }

    #[test]
    fn recent_changes_are_highlighted_and_old_ones_are_not() {
        assert_eq!(
            class(&stored(3, Presence::Listed, Action::Create, 1)),
            Some("new")
        );
        assert_eq!(class(&stored(3, Presence::Listed, Action::Create, 8)), None);
        assert_eq!(
            class(&stored(3, Presence::Listed, Action::Update, 6)),
            Some("updated")
        );
        assert_eq!(class(&stored(3, Presence::Listed, Action::Update, 8)), None);
        // A cancelled match stays marked, however long ago it was cancelled.
        assert_eq!(
            class(&stored(3, Presence::Listed, Action::Cancel, 30)),
            Some("cancelled")
        );
        assert_eq!(
            class(&stored(3, Presence::Withdrawn, Action::Withdraw, 2)),
            Some("withdrawn")
        );
    }

    #[test]
    fn the_agenda_lists_what_is_ahead_and_recently_removed_matches() {
        let cx = AgendaContext {
            now: Utc::now(),
            tz: chrono_tz::Europe::Stockholm,
            match_duration: Duration::minutes(120),
            personal: false,
        };
        let matches = vec![
            stored(-2, Presence::Archived, Action::Archive, 1),
            stored(0, Presence::Listed, Action::Unchanged, 20),
            stored(3, Presence::Listed, Action::Create, 1),
            stored(4, Presence::Withdrawn, Action::Withdraw, 2),
            stored(5, Presence::Withdrawn, Action::Withdraw, 9),
        ];
        let listed: Vec<i64> = upcoming(&matches, &cx)
            .iter()
            .map(|m| (m.record.start - cx.now).num_days())
            .collect();
        // Kicking off now (still on), ahead, recently removed; not the past nor the old removal.
        assert_eq!(listed, [0, 3, 4]);
        let html = render(&matches, &cx);
        assert!(html.contains("removed from your list"), "{html}");
        assert!(render(&[], &cx).contains("No upcoming matches"));
    }
}
