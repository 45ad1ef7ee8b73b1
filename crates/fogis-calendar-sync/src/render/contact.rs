//! One person of the phonebook, as the vCard renderer and the address-book sinks see it.

use chrono::{DateTime, Utc};
use fogis_pubsub::Address;

/// One person in the phonebook.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    /// `fogis-referee-{referee number}`; without a number `fogis-referee-p{phone digits}`, else
    /// `fogis-referee-e{first 16 hex digits of SHA-256 of the lower-case e-mail}` (an address
    /// is not put into resource names and URLs).
    pub uid: String,
    /// FOGIS `domarnr`.
    pub referee_number: Option<String>,
    pub name: String,
    /// E.164 ([`crate::render::vcard::normalize_phone`]); the mobile, else the other phone.
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub address: Option<Address>,
    /// Shared matches not yet started: (kick-off, title, this person's role), by kick-off.
    pub upcoming: Vec<(DateTime<Utc>, String, String)>,
    /// The latest `changed_at` of the matches this contact comes from: the card's `REV`.
    pub updated: DateTime<Utc>,
}

impl Contact {
    /// The resource name in an address book: `{uid}.vcf`.
    pub fn file_name(&self) -> String {
        format!("{}.vcf", self.uid)
    }
}
