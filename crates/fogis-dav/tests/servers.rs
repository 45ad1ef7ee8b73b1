//! fogis-dav against real servers started by each test: Radicale (Basic only), Xandikos, and
//! WsgiDAV (Digest only). See test_support::dav for how they are installed and run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fogis_dav::{
    discovery, item_url, CollectionKind, DavClient, DavError, ErrorClass, Precondition, Url,
    VcardVersion,
};
use test_support::dav::{Flavour, Server, PASSWORD, USER};

const CALDAV_SERVERS: [Flavour; 2] = [Flavour::Radicale, Flavour::Xandikos];

/// Runs a future on a fresh current-thread runtime (servers are started, blocking, before).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

fn client() -> DavClient {
    DavClient::builder()
        .credentials(USER, PASSWORD)
        .build()
        .unwrap()
}

fn event(uid: &str, summary: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fogis-dav//tests//EN\r\nBEGIN:VEVENT\r\n\
         UID:{uid}\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250301T150000Z\r\n\
         DTEND:20250301T170000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn todo(uid: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fogis-dav//tests//EN\r\nBEGIN:VTODO\r\n\
         UID:{uid}\r\nDTSTAMP:20250101T000000Z\r\nSUMMARY:Pack the whistle\r\nEND:VTODO\r\n\
         END:VCALENDAR\r\n"
    )
}

#[test]
fn discovery_from_the_server_root_creates_then_finds_the_calendar_and_address_book() {
    for flavour in CALDAV_SERVERS {
        let server = Server::start(flavour);
        let client = client();
        block_on(async {
            let root = Url::parse(&server.root()).unwrap();
            let homes = discovery::find_homes(&client, &root, CollectionKind::Calendar)
                .await
                .unwrap_or_else(|e| panic!("{flavour:?}: {e}\n{}", server.log()));
            // Both name the principal /user/ (Radicale after the user name); the root itself
            // is no home, so this went root -> current-user-principal -> home set.
            assert_eq!(
                homes.principal,
                Some(root.join("/user/").unwrap()),
                "{flavour:?}"
            );
            assert!(!homes.homes.is_empty(), "{flavour:?}");
            let missing = discovery::find_collection(
                &client,
                &root,
                CollectionKind::Calendar,
                "Domaruppdrag",
            )
            .await
            .unwrap();
            assert_eq!(missing, None, "{flavour:?}");

            let made = discovery::find_or_create(
                &client,
                &root,
                CollectionKind::Calendar,
                "Domaruppdrag",
                &["VEVENT"],
            )
            .await
            .unwrap_or_else(|e| panic!("{flavour:?}: {e}\n{}", server.log()));
            assert_eq!(made.kind, Some(CollectionKind::Calendar));
            assert_eq!(made.display_name.as_deref(), Some("Domaruppdrag"));
            assert!(made.accepts_component("VEVENT"), "{flavour:?}: {made:?}");
            assert!(homes
                .homes
                .iter()
                .any(|h| made.url.as_str().starts_with(h.as_str())));

            // Found again by its display name, from the root and from the URL itself.
            for start in [root.clone(), made.url.clone()] {
                let again = discovery::find_or_create(
                    &client,
                    &start,
                    CollectionKind::Calendar,
                    "Domaruppdrag",
                    &["VEVENT"],
                )
                .await
                .unwrap();
                assert_eq!(again.url, made.url, "{flavour:?} from {start}");
            }
            let book = discovery::find_or_create(
                &client,
                &root,
                CollectionKind::AddressBook,
                "Domaruppdrag kontakter",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{flavour:?}: {e}\n{}", server.log()));
            assert_eq!(book.kind, Some(CollectionKind::AddressBook));
            assert_ne!(book.url, made.url);
            let found = discovery::find_collection(
                &client,
                &root,
                CollectionKind::AddressBook,
                "Domaruppdrag kontakter",
            )
            .await
            .unwrap();
            assert_eq!(found.map(|c| c.url), Some(book.url), "{flavour:?}");
            // The calendar is not an address book, however it is named.
            let wrong = discovery::find_collection(
                &client,
                &root,
                CollectionKind::AddressBook,
                "Domaruppdrag",
            )
            .await
            .unwrap();
            assert_eq!(wrong, None, "{flavour:?}");
        });
    }
}

/// Radicale 3 stores a VEVENT in a VTODO-only calendar (it does not enforce the component
/// set), so only Xandikos can show the refusal.
#[test]
fn a_tasks_only_calendar_refuses_an_event_with_the_servers_reason_and_takes_a_task() {
    let server = Server::start(Flavour::Xandikos);
    let client = client();
    block_on(async {
        let home = discovery::find_homes(
            &client,
            &Url::parse(&server.root()).unwrap(),
            CollectionKind::Calendar,
        )
        .await
        .unwrap()
        .homes
        .remove(0);
        let tasks = home.join("tasks/").unwrap();
        client
            .mkcalendar(&tasks, "Tasks", &["VTODO"])
            .await
            .unwrap();
        let props = client.collection(&tasks).await.unwrap().unwrap();
        assert_eq!(props.components, vec!["VTODO".to_owned()]);
        assert!(!props.accepts_component("VEVENT"));

        let put = client
            .put(
                &item_url(&tasks, "match-1.ics").unwrap(),
                event("match-1", "Home - Away"),
                "text/calendar; charset=utf-8",
                Precondition::CreateOnly,
            )
            .await;
        let err = put.expect_err("a VEVENT in a VTODO-only calendar");
        match &err {
            DavError::Precondition {
                status,
                name,
                reason,
                ..
            } => {
                assert_eq!(*status, 403);
                assert_eq!(name, "supported-calendar-component");
                assert!(
                    reason.as_deref().unwrap_or_default().contains("VEVENT"),
                    "{err}"
                );
            }
            other => panic!("expected a precondition error, got {other:?}"),
        }
        assert_eq!(err.class(), ErrorClass::Item);
        assert!(!err.is_auth());
        // The same session goes on with the next item.
        let etag = client
            .put(
                &item_url(&tasks, "todo-1.ics").unwrap(),
                todo("todo-1"),
                "text/calendar; charset=utf-8",
                Precondition::CreateOnly,
            )
            .await
            .unwrap();
        assert!(etag.is_some());
    });
}

#[test]
fn conditional_put_and_delete_refuse_a_stale_etag() {
    for flavour in CALDAV_SERVERS {
        let server = Server::start(flavour);
        let client = client();
        block_on(async {
            let calendar = discovery::find_or_create(
                &client,
                &Url::parse(&server.root()).unwrap(),
                CollectionKind::Calendar,
                "Matcher",
                &["VEVENT"],
            )
            .await
            .unwrap();
            let url = item_url(&calendar.url, "match 7.ics").unwrap();
            let put = |body: String, p: Precondition| {
                let client = &client;
                let url = url.clone();
                async move { client.put(&url, body, "text/calendar", p).await }
            };
            let first = put(event("m7", "A - B"), Precondition::CreateOnly)
                .await
                .unwrap()
                .expect("a strong ETag");
            let again = put(event("m7", "A - B"), Precondition::CreateOnly).await;
            assert_eq!(again, Err(DavError::PreconditionFailed), "{flavour:?}");
            let second = put(event("m7", "A - C"), Precondition::IfMatch(first.clone()))
                .await
                .unwrap()
                .expect("a strong ETag");
            assert_ne!(first, second);
            let stale = put(event("m7", "A - D"), Precondition::IfMatch(first.clone())).await;
            assert_eq!(stale, Err(DavError::PreconditionFailed), "{flavour:?}");
            assert_eq!(stale.unwrap_err().class(), ErrorClass::Conflict);

            let members = client.members(&calendar.url).await.unwrap();
            assert_eq!(members.len(), 1, "{flavour:?}: {members:?}");
            assert_eq!(members[0].name, "match 7.ics");
            assert_eq!(members[0].etag.as_deref(), Some(second.as_str()));
            let got = client
                .multiget(
                    &calendar.url,
                    CollectionKind::Calendar,
                    std::slice::from_ref(&url),
                )
                .await
                .unwrap();
            assert_eq!(got.len(), 1, "{flavour:?}");
            assert!(got[0].data.contains("SUMMARY:A - C"), "{flavour:?}");

            let deleted = client.delete(&url, Some(&first)).await;
            assert_eq!(deleted, Err(DavError::PreconditionFailed), "{flavour:?}");
            let still = client.get(&url).await.unwrap().expect("still there");
            assert!(still.data.contains("SUMMARY:A - C"));
            client.delete(&url, Some(&second)).await.unwrap();
            assert_eq!(client.get(&url).await.unwrap(), None);
            // Deleting what is gone is success.
            client.delete(&url, Some(&second)).await.unwrap();
        });
    }
}

#[test]
fn address_books_of_both_servers_advertise_vcard_3_only() {
    for flavour in CALDAV_SERVERS {
        let server = Server::start(flavour);
        let client = client();
        block_on(async {
            let book = discovery::find_or_create(
                &client,
                &Url::parse(&server.root()).unwrap(),
                CollectionKind::AddressBook,
                "Kontakter",
                &[],
            )
            .await
            .unwrap();
            let props = client.collection(&book.url).await.unwrap().unwrap();
            assert_eq!(props.vcard_versions, vec![VcardVersion::V3], "{flavour:?}");
            assert_eq!(props.vcard_version(), VcardVersion::V3);
        });
    }
}

#[test]
fn a_basic_only_server_takes_basic_and_refusals_say_which_problem_it_is() {
    let server = Server::start(Flavour::Radicale);
    block_on(async {
        let root = Url::parse(&server.root()).unwrap();
        let good = client();
        discovery::find_homes(&good, &root, CollectionKind::Calendar)
            .await
            .unwrap();
        assert_eq!(good.auth_scheme(), Some("Basic"));

        let wrong = DavClient::builder()
            .credentials(USER, "not the password")
            .build()
            .unwrap();
        let err = wrong.collection(&root).await.unwrap_err();
        assert_eq!(err, DavError::CredentialsRefused { scheme: "Basic" });
        assert!(err.is_auth() && err.class() == ErrorClass::Config);
        assert!(!err.to_string().contains("not the password"));

        let anonymous = DavClient::builder().build().unwrap();
        let err = anonymous.collection(&root).await.unwrap_err();
        assert_eq!(err, DavError::CredentialsMissing);
    });
}

#[test]
fn a_digest_only_server_takes_digest_for_a_whole_session() {
    let server = Server::start(Flavour::WsgiDavDigest);
    block_on(async {
        let client = client();
        let root = Url::parse(&server.root()).unwrap();
        // Several requests on one challenge: the nonce count goes up each time.
        for n in 0..4 {
            let url = item_url(&root, &format!("note-{n}.txt")).unwrap();
            let etag = client
                .put(
                    &url,
                    format!("note {n}"),
                    "text/plain",
                    Precondition::CreateOnly,
                )
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
            let got = client.get(&url).await.unwrap().unwrap();
            assert_eq!(got.data, format!("note {n}"));
            client.delete(&url, etag.as_deref()).await.unwrap();
        }
        assert_eq!(client.auth_scheme(), Some("Digest"));

        let wrong = DavClient::builder()
            .credentials(USER, "not the password")
            .build()
            .unwrap();
        let err = wrong
            .get(&item_url(&root, "x.txt").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err, DavError::CredentialsRefused { scheme: "Digest" });
        assert!(!err.to_string().contains("not the password"));
        // Basic sent up front is refused by a Digest-only server and the client moves on to
        // Digest, never reporting the password as wrong.
        let eager = DavClient::builder()
            .credentials(USER, PASSWORD)
            .preemptive_basic(true)
            .build()
            .unwrap();
        assert_eq!(
            eager
                .get(&item_url(&root, "none.txt").unwrap())
                .await
                .unwrap(),
            None
        );
        assert_eq!(eager.auth_scheme(), Some("Digest"));
    });
}

#[test]
fn a_server_that_is_not_there_is_transient() {
    let port = test_support::free_port();
    let root = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let err = block_on(async { client().collection(&root).await.unwrap_err() });
    assert!(err.is_transient(), "{err:?}");
}
