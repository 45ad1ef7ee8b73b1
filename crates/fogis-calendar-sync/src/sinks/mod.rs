pub mod dav;
pub mod phonebook;
pub mod vcard;
