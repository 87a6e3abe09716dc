use super::*;
use crate::auth::digest_hex;

fn parse(text: &str) -> (KeyTable, Vec<(usize, LineError)>) {
    KeyTable::parse(text.as_bytes())
}

fn scope_of(table: &KeyTable, key: &str) -> Option<(String, Scope)> {
    table
        .client(&crate::auth::digest(key.as_bytes()))
        .map(|c| (c.name.to_string(), c.scope))
}

#[test]
fn a_file_maps_each_keys_digest_to_its_client() {
    let text = format!(
        "# the booking engine, two keys while rotating\n\
         \n\
         booking-engine write {}\n\
         booking-engine\twrite\t{}   # next key\n\
         \x20 dashboards   read {}\r\n",
        digest_hex("key-1"),
        digest_hex("key-2"),
        digest_hex("key-3"),
    );
    let (table, errors) = parse(&text);
    assert_eq!(errors, []);
    assert_eq!((table.keys(), table.clients()), (3, 2));
    assert_eq!(
        scope_of(&table, "key-1"),
        Some(("booking-engine".into(), Scope::Write))
    );
    assert_eq!(
        scope_of(&table, "key-2"),
        Some(("booking-engine".into(), Scope::Write))
    );
    assert_eq!(
        scope_of(&table, "key-3"),
        Some(("dashboards".into(), Scope::Read))
    );
    assert_eq!(scope_of(&table, "key-4"), None);
    let (empty, errors) = parse("# nobody yet\n\n");
    assert_eq!((empty.keys(), empty.clients(), errors.len()), (0, 0, 0));
}

/// Each broken line is refused on its own, with its number; every other line is in force.
#[test]
fn a_broken_line_grants_nothing_and_the_others_stand() {
    let good = digest_hex("k");
    let text = format!(
        "# c\n\
         alice write {good} extra\n\
         alice write\n\
         Alice write {}\n\
         alice owner {}\n\
         alice write {}\n\
         alice write {}\n\
         alice write fck_not-a-digest-but-a-key\n\
         bob write caf\u{e9}\n\
         carol read {}\n",
        digest_hex("k4"),
        digest_hex("k5"),
        good.to_uppercase(),
        &good[1..],
        digest_hex("carol"),
    );
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"dave write \xff\xfe\n");
    let (table, errors) = KeyTable::parse(&bytes);
    assert_eq!(
        errors,
        [
            (2, LineError::FieldCount(4)),
            (3, LineError::FieldCount(2)),
            (4, LineError::ClientName),
            (5, LineError::Scope),
            (6, LineError::Digest),
            (7, LineError::Digest),
            (8, LineError::Digest),
            (9, LineError::Digest),
            (11, LineError::NotText),
        ]
    );
    assert_eq!((table.keys(), table.clients()), (1, 1));
    assert_eq!(
        scope_of(&table, "carol"),
        Some(("carol".into(), Scope::Read))
    );
    for key in ["k", "k4", "k5"] {
        assert_eq!(scope_of(&table, key), None, "{key}");
    }
}

/// Lines that contradict each other grant the least: a client with both scopes keeps its
/// read lines, whichever comes first; a key listed for two clients is nobody's.
#[test]
fn contradicting_lines_grant_the_least() {
    let text = format!(
        "alice write {}\n\
         bob read {}\n\
         alice read {}\n\
         alice write {}\n\
         carol write {}\n\
         carol write {}\n\
         dave read {}\n\
         erin read {}\n",
        digest_hex("a1"),
        digest_hex("b1"),
        digest_hex("a2"),
        digest_hex("a3"),
        digest_hex("c1"),
        digest_hex("c1"),
        digest_hex("shared"),
        digest_hex("shared"),
    );
    let (table, errors) = parse(&text);
    let conflict = |line| LineError::ScopeConflict {
        client: "alice".into(),
        scope: "write",
        lower: "read",
        lower_line: line,
    };
    assert_eq!(
        errors,
        [
            (1, conflict(3)),
            (4, conflict(3)),
            (6, LineError::DuplicateKey(5)),
            (7, LineError::SharedKey(8)),
            (8, LineError::SharedKey(7)),
        ]
    );
    assert_eq!(scope_of(&table, "a1"), None);
    assert_eq!(scope_of(&table, "a2"), Some(("alice".into(), Scope::Read)));
    assert_eq!(scope_of(&table, "a3"), None);
    assert_eq!(scope_of(&table, "c1"), Some(("carol".into(), Scope::Write)));
    assert_eq!(scope_of(&table, "shared"), None);
    assert_eq!((table.keys(), table.clients()), (3, 3));
}

/// A raw key pasted into any column, or a whole line of one, is never repeated by an error.
#[test]
fn errors_never_repeat_what_a_line_holds() {
    let key = "fck_Secret-Key-Material_0123456789abcdefghijklmnopq";
    let lowercase_key = "0123456789abcdef0123456789abcdef-not-a-digest-but-secret";
    let digest = digest_hex("k");
    for line in [
        format!("{key} write {digest}"),
        format!("alice {key} {digest}"),
        format!("alice write {key}"),
        format!("alice write {lowercase_key}"),
        format!("{lowercase_key} {lowercase_key} {digest}"),
        key.to_owned(),
        format!("alice write {digest} {key}"),
        format!("{key}\u{0} write {digest}"),
    ] {
        let (table, errors) = parse(&line);
        assert_eq!(table.keys(), 0, "{line}");
        assert_eq!(errors.len(), 1, "{line}");
        let message = errors[0].1.to_string();
        for secret in [key, lowercase_key, "Secret", "not-a-digest"] {
            assert!(!message.contains(secret), "{line}: {message}");
        }
        assert_eq!(message.lines().count(), 1, "{message}");
    }
}

#[test]
fn an_empty_file_or_a_broken_last_line_without_newline_may_be_cut_short() {
    let line = format!("alice write {}", digest_hex("k"));
    assert!(may_be_cut_short(b""));
    assert!(may_be_cut_short(&line.as_bytes()[..20]));
    assert!(may_be_cut_short(
        format!("{line}\n{}", &line[..30]).as_bytes()
    ));
    assert!(!may_be_cut_short(line.as_bytes()), "a whole last line");
    assert!(!may_be_cut_short(format!("{line}\n").as_bytes()));
    assert!(!may_be_cut_short(b"# keys\n"));
    assert!(!may_be_cut_short(b"# no keys yet"));
    assert!(
        !may_be_cut_short(b"alice write oops\n"),
        "broken, but whole"
    );
}

#[test]
fn file_errors_read_as_one_line_naming_the_file() {
    let error = KeysFileError::Unreadable {
        path: PathBuf::from("/etc/flight-counter/api-keys"),
        reason: "No such file or directory (os error 2)".into(),
    };
    let text = error.to_string();
    assert!(
        text.starts_with("cannot read the API keys file /etc/flight-counter/api-keys: "),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);
}
