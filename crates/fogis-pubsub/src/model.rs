//! The normalised shape of one match, whatever form it arrived in.
//!
//! Every field that a message form may not carry is an `Option`: `None` means "this message does
//! not say", never "empty". A raw FOGIS match says everything it has; the lossy processed forms
//! (enhanced 2.0, simplified legacy) say little, and a consumer that already knows more about a
//! match should keep what it knows where the new message is silent.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// When a match kicks off, as precisely as the message says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum Kickoff {
    /// An instant (FOGIS `tid`, epoch milliseconds, UTC).
    Utc(DateTime<Utc>),
    /// A wall-clock time in the federation's time zone (Europe/Stockholm), from
    /// `speldatum` + `avsparkstid` or `date` + `time`; the consumer resolves it.
    Local(NaiveDateTime),
}

/// Which message form a match came in; decides how much it can be trusted to be complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchForm {
    /// The raw FOGIS match (`matchid`, `lag1namn`, `domaruppdraglista`, ...).
    Raw,
    /// Enhanced schema 2.0 (`match_id`, `teams: {home, away}`, `referees: [{name, role}]`).
    Enhanced,
    /// Simplified legacy (`match_id`, `teams: "A vs B"`, `referees: [names]`).
    Legacy,
}

/// A postal address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
}

impl Address {
    /// True when no part of the address is known.
    pub fn is_empty(&self) -> bool {
        self.street.is_none() && self.postal_code.is_none() && self.city.is_none()
    }
}

/// A referee assigned to a match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Referee {
    pub name: String,
    /// Long role name (`Huvuddomare`, `Assisterande 1`).
    pub role: Option<String>,
    /// Short role name (`Dom`, `AD1`, `AD2`, `4:e dom`).
    pub role_short: Option<String>,
    /// FOGIS referee number (`domarnr`), the stable key of a referee.
    pub referee_number: Option<String>,
    /// FOGIS referee id (`domareid`).
    pub referee_id: Option<i64>,
    pub mobile: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<Address>,
}

/// A team's contact person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TeamContact {
    pub team: Option<String>,
    pub name: String,
    pub mobile: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// A stand-in contact (`reserv`).
    pub reserve: bool,
}

/// One match, normalised from any message form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// The stable FOGIS match id: the key of everything.
    pub match_id: i64,
    pub form: MatchForm,
    /// Match number shown to people (`matchnr`).
    pub match_nr: Option<String>,
    pub home_team: Option<String>,
    pub away_team: Option<String>,
    pub kickoff: Kickoff,
    pub venue: Option<String>,
    pub venue_address: Option<String>,
    /// Venue coordinates (latitude, longitude).
    pub coordinates: Option<(f64, f64)>,
    pub competition: Option<String>,
    /// `installd`: the match is cancelled.
    pub cancelled: Option<bool>,
    /// `uppskjuten`: the match is postponed.
    pub postponed: Option<bool>,
    /// `avbruten`: the match was interrupted.
    pub interrupted: Option<bool>,
    pub referees: Option<Vec<Referee>>,
    pub team_contacts: Option<Vec<TeamContact>>,
    /// The match exactly as received, for consumers that forward it.
    #[serde(skip)]
    pub raw: serde_json::Value,
}
