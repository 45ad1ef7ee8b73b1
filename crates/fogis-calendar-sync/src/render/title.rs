//! The event title: `EVENT_TITLE` filled in, with what FOGIS says about the match in front.
//!
//! A cancelled match (`installd`) reads `INSTÄLLD: …` and a postponed one (`uppskjuten`)
//! `UPPSKJUTEN: …` in the feed, on CalDAV and on Google alike, so that a phone's list view shows
//! it, not only the event's status or description.

use crate::model::MatchRecord;
use crate::render::phonebook::clean_number;

/// The deployed calendar service's title.
pub use crate::config::DEFAULT_EVENT_TITLE as DEFAULT_TEMPLATE;
/// Title prefix of a cancelled match.
pub const CANCELLED_PREFIX: &str = "INSTÄLLD: ";
/// Title prefix of a postponed match.
pub const POSTPONED_PREFIX: &str = "UPPSKJUTEN: ";

/// `EVENT_TITLE` and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleTemplate {
    template: String,
    /// The user's own referee number, for `{role}`.
    user: Option<String>,
}

impl Default for TitleTemplate {
    fn default() -> Self {
        TitleTemplate::new(DEFAULT_TEMPLATE, None)
    }
}

impl TitleTemplate {
    /// A blank template is the default one.
    pub fn new(template: &str, user_referee_number: Option<&str>) -> TitleTemplate {
        let template = if template.trim().is_empty() {
            DEFAULT_TEMPLATE
        } else {
            template.trim()
        };
        TitleTemplate {
            template: template.to_string(),
            user: user_referee_number.and_then(clean_number),
        }
    }

    /// The title of `r`: the template with `{home}`, `{away}`, `{role}` and `{competition}`
    /// filled in (an unknown team is `?`, an unknown role or competition is left out, with the
    /// separators around it), behind `INSTÄLLD: ` or `UPPSKJUTEN: `.
    pub fn render(&self, r: &MatchRecord) -> String {
        let role = self.user_role(r).unwrap_or_default();
        let mut out = String::with_capacity(self.template.len() + 48);
        let mut rest = self.template.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open..];
            let (value, len) = [
                ("{home}", r.home_team.as_deref().unwrap_or("?")),
                ("{away}", r.away_team.as_deref().unwrap_or("?")),
                ("{role}", role.as_str()),
                ("{competition}", r.competition.as_deref().unwrap_or("")),
            ]
            .iter()
            .find(|(name, _)| after.starts_with(name))
            .map_or(("{", 1), |(name, value)| (*value, name.len()));
            out.push_str(value);
            rest = &after[len..];
        }
        out.push_str(rest);
        let title = tidy(&out);
        let prefix = if r.cancelled {
            CANCELLED_PREFIX
        } else if r.postponed {
            POSTPONED_PREFIX
        } else {
            ""
        };
        format!("{prefix}{title}")
    }

    /// The short role (`Dom`, `AD1`) of the user in this match, or the long one.
    fn user_role(&self, r: &MatchRecord) -> Option<String> {
        let user = self.user.as_deref()?;
        let me = r.referees.iter().find(|x| {
            x.referee_number
                .as_deref()
                .and_then(clean_number)
                .is_some_and(|n| n == user)
        })?;
        me.role_short.clone().or_else(|| me.role.clone())
    }
}

/// White space folded, and separators left dangling by an empty field removed: `": A - B"`
/// becomes `"A - B"`, `"A - B ()"` becomes `"A - B"`.
fn tidy(s: &str) -> String {
    let folded = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let folded = folded.replace("()", "").replace("[]", "");
    let trimmed = folded.trim_matches(|c: char| c.is_whitespace() || ":-|,·–/".contains(c));
    let trimmed = trimmed.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.is_empty() {
        "?".to_string()
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogis_pubsub::Referee;

    fn record() -> MatchRecord {
        MatchRecord {
            match_id: 1,
            match_nr: None,
            home_team: Some("IFK Göteborg".into()),
            away_team: Some("Falkenbergs FF".into()),
            start: chrono::DateTime::UNIX_EPOCH,
            venue: None,
            venue_address: None,
            coordinates: None,
            competition: Some("Div 2".into()),
            cancelled: false,
            postponed: false,
            interrupted: false,
            referees: vec![
                Referee {
                    name: "A".into(),
                    role_short: Some("Dom".into()),
                    referee_number: Some("111".into()),
                    ..Referee::default()
                },
                Referee {
                    name: "B".into(),
                    role: Some("Assisterande 1".into()),
                    role_short: Some("AD1".into()),
                    referee_number: Some(" 222 ".into()),
                    ..Referee::default()
                },
            ]
            .into_iter()
            .map(std::sync::Arc::new)
            .collect(),
            team_contacts: vec![],
        }
    }

    #[test]
    fn the_default_is_the_deployed_services_title() {
        let t = TitleTemplate::default();
        assert_eq!(t.render(&record()), "IFK Göteborg - Falkenbergs FF");
        let mut r = record();
        r.away_team = None;
        assert_eq!(t.render(&r), "IFK Göteborg - ?");
    }

    #[test]
    fn placeholders_and_the_users_own_role() {
        let t = TitleTemplate::new("{role}: {home} - {away} ({competition})", Some("222"));
        assert_eq!(
            t.render(&record()),
            "AD1: IFK Göteborg - Falkenbergs FF (Div 2)"
        );
        // Not on this match, or no number configured: the role and its separator go.
        for t in [
            TitleTemplate::new("{role}: {home} - {away}", Some("999")),
            TitleTemplate::new("{role}: {home} - {away}", None),
        ] {
            assert_eq!(t.render(&record()), "IFK Göteborg - Falkenbergs FF");
        }
        let mut r = record();
        r.competition = None;
        let t = TitleTemplate::new("{home} - {away} ({competition})", None);
        assert_eq!(t.render(&r), "IFK Göteborg - Falkenbergs FF");
        // Unknown braces stay as they are; a blank template is the default.
        let t = TitleTemplate::new("{x} {home}", None);
        assert_eq!(t.render(&record()), "{x} IFK Göteborg");
        assert_eq!(TitleTemplate::new("  ", None), TitleTemplate::default());
    }

    #[test]
    fn cancelled_and_postponed_lead_the_title() {
        let t = TitleTemplate::new("{role} {home} - {away}", Some("111"));
        let mut r = record();
        r.cancelled = true;
        r.postponed = true;
        assert_eq!(t.render(&r), "INSTÄLLD: Dom IFK Göteborg - Falkenbergs FF");
        r.cancelled = false;
        assert_eq!(
            t.render(&r),
            "UPPSKJUTEN: Dom IFK Göteborg - Falkenbergs FF"
        );
    }
}
