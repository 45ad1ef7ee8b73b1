//! The agenda: upcoming matches grouped by local day, with what changed lately highlighted.
//!
//! A match is *upcoming* while it has not ended (`start + MATCH_DURATION_MINUTES` is ahead). Its
//! highlight comes from the state: `cancelled` whenever the match is cancelled; `new`, `updated`
//! or `removed` when its last change (`last_action`, `changed_at`) is at most [`RECENT`] old. A
//! withdrawn match is no longer in the feed; it is listed (struck through) only while that
//! change is recent, so a referee sees why it left the calendar.

use std::borrow::Borrow;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};

use super::html::{ago, time_tag};
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
pub fn upcoming<'a, M: Borrow<StoredMatch>>(
    matches: &'a [M],
    cx: &AgendaContext,
) -> Vec<&'a StoredMatch> {
    matches
        .iter()
        .map(Borrow::borrow)
        .filter(|m| m.record.start + cx.match_duration > cx.now)
        .filter(|m| m.presence.in_feed() || cx.now - m.changed_at <= RECENT)
        .collect()
}

/// The agenda section's body.
pub fn render<M: Borrow<StoredMatch>>(matches: &[M], cx: &AgendaContext) -> Markup {
    let list = upcoming(matches, cx);
    if list.is_empty() {
        return html! {
            p class="card muted" {
                "No upcoming matches. New ones appear here as soon as FOGIS lists them."
            }
        };
    }
    // The matches by local day, in kick-off order.
    let mut days: Vec<(String, Vec<&StoredMatch>)> = Vec::new();
    let mut day = None;
    for m in list {
        let local = m.record.start.with_timezone(&cx.tz);
        match days.last_mut() {
            Some((_, ms)) if day == Some(local.date_naive()) => ms.push(m),
            _ => {
                days.push((local.format("%A %-d %B %Y").to_string(), vec![m]));
                day = Some(local.date_naive());
            }
        }
    }
    html! {
        @for (day, ms) in &days {
            section class="card day" {
                h3 { (day) }
                ol { @for m in ms { (item(m, cx)) } }
            }
        }
    }
}

fn item(m: &StoredMatch, cx: &AgendaContext) -> Markup {
    let r = &m.record;
    let local = r.start.with_timezone(&cx.tz);
    let highlight = highlight(m, cx.now);
    let class = highlight.as_ref().map_or("", |(class, _)| class);
    let mut meta: Vec<Markup> = Vec::new();
    if let Some(v) = &r.venue {
        meta.push(html! { (v) });
    }
    if let Some(c) = &r.competition {
        meta.push(html! { (c) });
    }
    if let Some(nr) = &r.match_nr {
        meta.push(html! { "match " (nr) });
    }
    if r.postponed {
        meta.push(html! { strong { "postponed" } });
    }
    meta.push(html! { a href=(r.match_url()) rel="noreferrer" { "match page" } });
    html! {
        li class={ "match " (class) } data-match-id=(r.match_id) {
            div class="when" {
                time datetime=(r.start.to_rfc3339()) { (local.format("%H:%M").to_string()) }
            }
            div class="what" {
                div class="title" {
                    span class="name" { (r.title()) }
                    @if let Some((class, label)) = &highlight {
                        " " span class={ "badge " (class) } { (label) }
                    }
                }
                div class="meta" {
                    @for (i, part) in meta.iter().enumerate() {
                        @if i > 0 { " · " }
                        (part)
                    }
                }
                (referees(m, cx.personal))
                (team_contacts(m, cx.personal))
            }
        }
    }
}

fn referees(m: &StoredMatch, personal: bool) -> Markup {
    html! {
        @if !m.record.referees.is_empty() {
            ul class="refs" {
                @for r in &m.record.referees {
                    li {
                        (r.role_short.as_deref().or(r.role.as_deref()).unwrap_or("Domare"))
                        ": " (r.name)
                        @if personal {
                            @if let Some(phone) = r.mobile.as_deref().or(r.phone.as_deref()) {
                                " · "
                                a href={ "tel:" (phone.replace([' ', '-'], "")) } { (phone) }
                            }
                            @if let Some(mail) = &r.email {
                                " · " a href={ "mailto:" (mail) } { (mail) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Team contacts are people's names and numbers: shown only with a token.
fn team_contacts(m: &StoredMatch, personal: bool) -> Markup {
    html! {
        @if personal && !m.record.team_contacts.is_empty() {
            details {
                summary class="meta" { "Team contacts" }
                ul {
                    @for c in &m.record.team_contacts {
                        li class="meta" {
                            @if let Some(team) = &c.team { (team) ": " }
                            (c.name)
                            @if let Some(phone) = c.mobile.as_deref().or(c.phone.as_deref()) {
                                " · " (phone)
                            }
                            @if let Some(mail) = &c.email { " · " (mail) }
                        }
                    }
                }
            }
        }
    }
}

/// A one-line summary of the next match, for the banner.
pub fn next_line<M: Borrow<StoredMatch>>(matches: &[M], cx: &AgendaContext) -> Option<Markup> {
    let next = upcoming(matches, cx)
        .into_iter()
        .find(|m| m.presence.in_feed() && !m.record.cancelled)?;
    Some(html! {
        "Next: " (next.record.title()) " · " (time_tag(next.record.start, cx.tz))
    })
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
        let html = render(&matches, &cx).into_string();
        assert!(html.contains("removed from your list"), "{html}");
        assert!(render::<StoredMatch>(&[], &cx)
            .into_string()
            .contains("No upcoming matches"));
    }
}
