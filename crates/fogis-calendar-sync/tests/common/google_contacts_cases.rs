//! Google Contacts: adoption by FOGIS id, by phone and by e-mail, creation, the group over
//! several pages, 429 on the first page, stale ETags, sequential mutations.

use super::*;
use google_fake::people::membership;

fn person(fake: &GoogleFake, name: &str) -> Value {
    fake.lock().people.persons[name].clone()
}

fn values(p: &Value, field: &str) -> Vec<String> {
    p[field]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["value"].as_str().unwrap().to_string())
        .collect()
}

fn referees_with_new_people() -> Vec<Value> {
    let mut second = raw_match(7200002, 12, "Qviding FIF", "Lödde BK", "Valhalla IP");
    second["domaruppdraglista"] = json!([
        referee(
            "Dom",
            "John Doe",
            USER_REFEREE,
            "0700000000",
            "john.doe@example.com",
            "Example Street 1"
        ),
        referee(
            "AD1",
            "Åsa Öberg",
            "77777",
            "070-777 77 77",
            "asa@example.com",
            "Ängsgatan 3"
        ),
        referee("AD2", "Bo Ek", "88888", "", "bo.ek@example.com", ""),
    ]);
    vec![
        raw_match(7200001, 5, "Gunnilse IS", "Höganäs BK", "Gunnilse IP"),
        second,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_adopted_by_fogis_id_phone_and_email_and_created_otherwise() {
    let fake = GoogleFake::start().await;
    let (jane, alice, bo, other, group) = {
        let mut f = fake.lock();
        let p = &mut f.people;
        p.page_cap = Some(2);
        p.first_page_429 = 1;
        p.fail_concurrent_writes = true;
        for g in ["Familj", "Jobb", "Fotboll"] {
            p.add_group(g);
        }
        let group = p.add_group("Referees");
        // As the deployed service created it.
        let jane = p.add(json!({
            "names": [{"givenName": "Jane", "familyName": "Smith"}],
            "phoneNumbers": [{"value": "0701111111", "type": "mobile"}],
            "emailAddresses": [{"value": "jane.smith@example.com", "type": "work"}],
            "addresses": [{"formattedValue": "Example Street 2, 41101 Göteborg, Sverige",
                "streetAddress": "Example Street 2", "postalCode": "41101", "city": "Göteborg",
                "country": "Sverige", "type": "home"}],
            "externalIds": [{"value": "FogisId=DomarNr=61438", "type": "account"}],
            "memberships": [membership("contactGroups/myContacts"), membership(&group)]}));
        // The user's own contacts.
        let alice = p.add(
            json!({"names": [{"givenName": "Alice", "familyName": "A."}],
            "phoneNumbers": [{"value": "+46 70 222 22 22", "type": "mobile"}],
            "emailAddresses": [{"value": "alice@home.example", "type": "home"}]}),
        );
        let bo = p.add(json!({"names": [{"givenName": "Bo", "familyName": "Ek"}],
            "emailAddresses": [{"value": "Bo.Ek@Example.com"}]}));
        let other = p.add(
            json!({"names": [{"givenName": "Johan", "familyName": "Annan"}],
            "phoneNumbers": [{"value": "070-777 77 77"}],
            "externalIds": [{"value": "FogisId=DomarNr=55555", "type": "account"}]}),
        );
        (jane, alice, bo, other, group)
    };
    let before = |n: &str| person(&fake, n)["etag"].clone();
    let (jane_etag, other_etag) = (before(&jane), before(&other));
    let svc = start_service(&fake, true, true).await;
    // The first run (an empty phonebook) lists once; its first page meets a 429 once.
    wait_sink(&svc, "google_contacts", LIMIT, |s| {
        s["pending"] == 0 && s["last_success"].is_string()
    })
    .await;
    assert_eq!(fake.lock().people.full_sync_first_pages, 2);
    assert_eq!(fake.count(Api::People, 429), 1);
    svc.post(
        "/sync",
        message(&referees_with_new_people(), "p1").to_string(),
    )
    .await;
    let sinks = wait_idle(&svc, LIMIT).await;

    {
        let f = fake.lock();
        let pages = f.people.full_sync_first_pages;
        assert_eq!(
            pages, 3,
            "one paged listing for the run, not one per referee"
        );
        assert_eq!(f.people.concurrent_failures, 0, "mutations are sequential");
        let writes = f.people.writes;
        assert_eq!(
            writes, 4,
            "Alice and Bo linked, Åsa created, one members:modify"
        );
    }
    assert_eq!(
        person(&fake, &jane)["etag"],
        jane_etag,
        "adopted by FOGIS id, unchanged"
    );
    assert_eq!(
        person(&fake, &other)["etag"],
        other_etag,
        "another referee's contact is left alone"
    );

    let a = person(&fake, &alice);
    assert!(
        values(&a, "externalIds").contains(&"FogisId=DomarNr=62000".to_string()),
        "{a}"
    );
    assert_eq!(
        values(&a, "phoneNumbers"),
        ["+46 70 222 22 22"],
        "an equal phone is kept as written"
    );
    assert_eq!(
        values(&a, "emailAddresses"),
        ["alice.andersson@example.com", "alice@home.example"]
    );
    assert_eq!(
        a["names"][0]["familyName"], "A.",
        "the user's name for them is kept"
    );
    let b = person(&fake, &bo);
    assert!(values(&b, "externalIds").contains(&"FogisId=DomarNr=88888".to_string()));
    assert_eq!(values(&b, "emailAddresses"), ["Bo.Ek@Example.com"]);

    let members = fake.lock().people.members(&group);
    for p in [&jane, &alice, &bo] {
        assert!(members.contains(p), "{p} in Referees");
    }
    let all: Vec<Value> = fake.lock().people.persons.values().cloned().collect();
    let asa: Vec<&Value> = all
        .iter()
        .filter(|p| values(p, "externalIds").contains(&"FogisId=DomarNr=77777".to_string()))
        .collect();
    assert_eq!(asa.len(), 1);
    assert_eq!(asa[0]["names"][0]["givenName"], "Åsa");
    assert_eq!(values(asa[0], "phoneNumbers"), ["+46707777777"]);
    assert!(members.contains(&asa[0]["resourceName"].as_str().unwrap().to_string()));
    assert!(
        !all.iter().any(|p| values(p, "externalIds")
            .iter()
            .any(|x| x.ends_with(USER_REFEREE))),
        "the user is skipped"
    );
    let s = sinks["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "google_contacts")
        .unwrap()
        .clone();
    assert!(
        s["notice"]
            .as_str()
            .unwrap()
            .contains("1 created, 2 updated, 2 linked"),
        "{s}"
    );

    // Google's listing lags behind an edit the user just made: our ETag is stale. The update
    // answers 400 failedPrecondition; the contact is re-read and the update repeated.
    fake.lock().people.lag();
    fake.lock().people.user_edit(
        &alice,
        json!({"biographies": [{"value": "Domare i Göteborg"}]}),
    );
    let mut changed = referees_with_new_people();
    changed[0]["domaruppdraglista"][2]["mobiltelefon"] = json!("0703333333");
    svc.post("/sync", message(&changed, "p2").to_string()).await;
    wait_idle(&svc, LIMIT).await;
    assert_eq!(fake.count(Api::People, 400), 1);
    let a = person(&fake, &alice);
    assert_eq!(
        values(&a, "phoneNumbers"),
        ["+46703333333"],
        "the old FOGIS number is replaced"
    );
    assert_eq!(
        a["biographies"][0]["value"], "Domare i Göteborg",
        "the user's edit survives"
    );
    assert_eq!(
        fake.lock().people.full_sync_first_pages,
        4,
        "one listing for the second run"
    );
    svc.stop().await;
}
