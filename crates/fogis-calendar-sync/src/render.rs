//! Render: the state as text others read. iCalendar ([`ics`]), event titles ([`title`]),
//! vCards ([`vcard`]) and the phonebook built from the matches ([`phonebook`]). Pure functions:
//! no I/O, no state.

pub mod contact;
pub mod ics;
pub mod phonebook;
pub mod title;
pub mod vcard;
