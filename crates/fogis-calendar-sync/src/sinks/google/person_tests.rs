#![allow(clippy::unwrap_used)]
use fogis_pubsub::Address;
use serde_json::json;

use super::*;

fn contact() -> Contact {
    Contact {
        uid: "fogis-referee-12345".into(),
        referee_number: Some("12345".into()),
        name: "Anna Maria Öberg".into(),
        mobile: Some("+46701234567".into()),
        email: Some("Anna@Example.com".into()),
        address: Some(Address {
            street: Some("Storgatan 1".into()),
            postal_code: Some("41101".into()),
            city: Some("Göteborg".into()),
        }),
        upcoming: vec![],
        updated: chrono::Utc::now(),
    }
}

#[test]
fn a_new_person_carries_everything() {
    let p = Owned::of(&contact()).new_person();
    assert_eq!(
        p["names"],
        json!([{"givenName": "Anna Maria", "familyName": "Öberg"}])
    );
    assert_eq!(p["phoneNumbers"][0]["value"], "+46701234567");
    assert_eq!(p["emailAddresses"][0]["value"], "Anna@Example.com");
    assert_eq!(
        p["addresses"][0]["formattedValue"],
        "Storgatan 1, 41101 Göteborg"
    );
    assert_eq!(
        p["externalIds"],
        json!([{"value": "FogisId=DomarNr=12345", "type": "account"}])
    );
}

#[test]
fn found_by_id_then_phone_then_email_never_someone_elses() {
    let people = vec![
        json!({"resourceName": "people/c1", "phoneNumbers": [{"value": "070-123 45 67"}],
               "externalIds": [{"value": "FogisId=DomarNr=999", "type": "account"}]}),
        json!({"resourceName": "people/c2", "phoneNumbers": [{"value": "0701234567"}]}),
        json!({"resourceName": "people/c3", "emailAddresses": [{"value": " anna@example.COM"}]}),
        json!({"resourceName": "people/c4",
               "externalIds": [{"value": "FogisId=DomarNr=12345", "type": "account"}]}),
    ];
    let ix = Index::build(&people);
    let ours = Owned::of(&contact());
    let mut taken = HashSet::new();
    assert_eq!(ix.find(&ours, &taken), Some((3, Found::ExternalId)));
    taken.insert(3);
    assert_eq!(
        ix.find(&ours, &taken),
        Some((1, Found::Phone)),
        "c1 is referee 999"
    );
    taken.insert(1);
    assert_eq!(ix.find(&ours, &taken), Some((2, Found::Email)));
    taken.insert(2);
    assert_eq!(ix.find(&ours, &taken), None);
}

#[test]
fn merging_keeps_the_users_values_and_drops_our_stale_ones() {
    let ours = Owned::of(&contact());
    let mut previous = ours.clone();
    previous.phone = Some("+46709999999".into());
    let person = json!({
        "names": [{"givenName": "Anna", "familyName": "Ö", "displayName": "Anna Ö",
                   "metadata": {"source": {"type": "CONTACT"}}}],
        "phoneNumbers": [{"value": "070-999 99 99", "type": "mobile"},
                         {"value": "031-12 34 56", "type": "home"}],
        "emailAddresses": [{"value": "anna@example.com", "type": "work"}],
        "externalIds": [{"value": "x", "type": "custom"}],
    });
    let merged = merge(&person, &ours, Some(&previous));
    assert_eq!(
        merged["names"][0]["givenName"], "Anna",
        "the user renamed it: kept"
    );
    let phones: Vec<&str> = merged["phoneNumbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_str().unwrap())
        .collect();
    assert_eq!(phones, ["+46701234567", "031-12 34 56"]);
    assert_eq!(merged["emailAddresses"].as_array().unwrap().len(), 1);
    assert_eq!(merged["addresses"][0]["city"], "Göteborg");
    assert_eq!(merged["externalIds"].as_array().unwrap().len(), 2);
    assert!(differs(&person, &merged));
}

#[test]
fn an_equal_contact_needs_no_update() {
    let ours = Owned::of(&contact());
    let mut person = ours.new_person();
    person["names"][0]["displayName"] = json!("Anna Maria Öberg");
    person["phoneNumbers"][0]["value"] = json!("070-123 45 67");
    person["phoneNumbers"][0]["canonicalForm"] = json!("+46701234567");
    let merged = merge(&person, &ours, None);
    assert!(!differs(&person, &merged), "{merged}");
    let merged = merge(&person, &ours, Some(&ours));
    assert!(!differs(&person, &merged), "{merged}");
}
