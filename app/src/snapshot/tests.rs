use std::io::Cursor;

use super::*;
use crate::{
    auth::ClientName,
    calendar::{Day, Month},
    idempotency::IdempotencyKey,
    route::Route,
};

fn route(text: &str) -> Route {
    Route::parse(text).expect("route")
}

fn header() -> Header {
    Header {
        id: "0123456789abcdef".into(),
        source: "embedded".into(),
        taken_at: 1_765_000_000,
    }
}

fn sample() -> (Vec<RouteRecord>, Vec<KeyRecord>) {
    let routes = vec![
        RouteRecord {
            route: route("AR1133"),
            total: 12,
            days: vec![
                (Day::parse("2026-12-01").expect("day"), 3),
                (Day::parse("2026-12-02").expect("day"), 4),
            ],
            months: vec![(Month::parse("2026-12").expect("month"), 7)],
        },
        RouteRecord {
            route: route("LA0001"),
            total: u64::MAX,
            days: vec![],
            months: vec![],
        },
    ];
    let client = ClientName::parse("booking-engine").expect("client");
    let keys = vec![
        KeyRecord {
            key: IdempotencyKey::parse(b"a-shared-key").expect("key"),
            route: route("AR1133"),
            count: 12,
            expires_at: 1_765_086_400,
        },
        KeyRecord {
            key: IdempotencyKey::parse(b"k-1").expect("key").scoped(&client),
            route: route("LA0001"),
            count: 1,
            expires_at: 1_765_086_401,
        },
    ];
    (routes, keys)
}

fn written() -> String {
    let (routes, keys) = sample();
    let mut writer = SnapshotWriter::new(Vec::new(), &header()).expect("header");
    for r in &routes {
        writer.route(r).expect("route");
    }
    for k in &keys {
        writer.key(k).expect("key");
    }
    let (out, r, k) = writer.finish().expect("end");
    assert_eq!((r, k), (2, 2));
    String::from_utf8(out).expect("utf-8")
}

fn read_all(text: &str) -> Result<(Header, Vec<Record>), FormatError> {
    let mut reader = SnapshotReader::new(Cursor::new(text.as_bytes()))?;
    let mut records = Vec::new();
    while let Some(record) = reader.next_record()? {
        records.push(record);
    }
    Ok((reader.header().clone(), records))
}

/// The error a file with line `n` (1-based) replaced by `line` gets, as text.
fn with_line(n: usize, line: &str) -> String {
    let mut lines: Vec<String> = written().lines().map(str::to_owned).collect();
    lines[n - 1] = line.to_owned();
    let text = lines.join("\n") + "\n";
    read_all(&text).expect_err("refused").to_string()
}

#[test]
fn a_snapshot_reads_back_as_written() {
    let (header_read, records) = read_all(&written()).expect("reads");
    assert_eq!(header_read, header());
    let (routes, keys) = sample();
    let expected: Vec<Record> = routes
        .into_iter()
        .map(Record::Route)
        .chain(keys.into_iter().map(Record::Key))
        .collect();
    assert_eq!(records, expected);
}

#[test]
fn a_file_cut_short_is_refused() {
    let text = written();
    let lines: Vec<&str> = text.lines().collect();
    // Without its end line.
    let cut = lines[..lines.len() - 1].join("\n") + "\n";
    assert_eq!(
        read_all(&cut).expect_err("cut").to_string(),
        "the file ends at line 5 without its end line: it was cut short"
    );
    // In the middle of a line.
    let cut = &text[..text.len() - 10];
    let err = read_all(cut).expect_err("cut").to_string();
    assert!(err.starts_with("line 6: "), "{err}");
    // Empty.
    assert!(read_all("").is_err());
}

#[test]
fn each_bad_field_is_named_with_its_line() {
    let cases = [
        (
            1,
            r#"{"format":"other","version":1,"id":"x","source":"s","taken_at":1}"#,
            "line 1: format: \"other\" is not \"flight-counter-snapshot\"",
        ),
        (
            1,
            r#"{"format":"flight-counter-snapshot","version":2,"id":"x","source":"s","taken_at":1}"#,
            "line 1: version: version 2 is not known (this build reads version 1)",
        ),
        (
            2,
            r#"{"type":"route","route":"AR1133","transactions":-1,"days":{},"months":{}}"#,
            "line 2: transactions: -1 is not a whole number from 0 to 18446744073709551615",
        ),
        (
            2,
            r#"{"type":"route","route":"AR1133","transactions":18446744073709551616,"days":{},"months":{}}"#,
            "line 2: transactions: 1.8446744073709552e+19 is not a whole number from 0 to 18446744073709551615",
        ),
        (
            2,
            r#"{"type":"route","route":"ar1133","transactions":1,"days":{},"months":{}}"#,
            "line 2: route: \"ar1133\" is not in canonical form (AR1133)",
        ),
        (
            2,
            r#"{"type":"route","route":"AR1133","transactions":1,"days":{"2026-02-30":1},"months":{}}"#,
            "line 2: days: \"2026-02-30\" is not a valid period",
        ),
        (
            2,
            r#"{"type":"route","route":"AR1133","transactions":1,"days":{"2026-02-03":2},"months":{}}"#,
            "line 2: days: they add up to 2, more than the route's 1 transactions",
        ),
        (
            3,
            r#"{"type":"route","route":"AR1133","transactions":1,"days":{},"months":{}}"#,
            "line 3: route: AR1133 is listed twice",
        ),
        (
            3,
            r#"{"type":"route","route":"AA0001","transactions":1,"days":{},"months":{}}"#,
            "line 3: route: AA0001 comes after AR1133: routes are in ascending order",
        ),
        (
            4,
            r#"{"type":"key","client":null,"key":"has space","route":"AR1133","count":1,"expires_at":1}"#,
            "line 4: key: the Idempotency-Key has a character outside visible ASCII; ",
        ),
        (
            4,
            r#"{"type":"key","client":null,"key":"k","route":"AR1133","count":0,"expires_at":1}"#,
            "line 4: count: a key's count is at least 1",
        ),
        (
            5,
            r#"{"type":"route","route":"ZZ0001","transactions":1,"days":{},"months":{}}"#,
            "line 5: a route after the keys",
        ),
        (
            6,
            r#"{"type":"end","routes":3,"keys":2}"#,
            "line 6: routes: the end line says 3, the file has 2",
        ),
        (5, r#"{"type":"key""#, "line 5: not JSON: "),
        (
            5,
            r#"{"type":"other"}"#,
            "line 5: type: \"other\" is not route, key or end",
        ),
    ];
    for (n, line, expected) in cases {
        let err = with_line(n, line);
        assert!(err.starts_with(expected), "line {n} {line}: {err}");
    }
}

#[test]
fn nothing_may_follow_the_end_line() {
    let text = written() + "{}\n";
    assert_eq!(
        read_all(&text).expect_err("refused").to_string(),
        "line 7: a line after the end line"
    );
}

mod delta {
    use std::io::Cursor;

    use super::*;
    use crate::snapshot::{
        delta::{Delta, RecordSource},
        transfer::TransferError,
    };

    fn day(s: &str) -> Day {
        Day::parse(s).expect("day")
    }

    /// A route's name, total and days.
    type RouteLine<'a> = (&'a str, u64, &'a [(&'a str, u64)]);

    fn file(taken_at: u64, routes: &[RouteLine], keys: &[&str]) -> Vec<u8> {
        let header = Header {
            id: format!("snap{taken_at}"),
            source: "embedded".into(),
            taken_at,
        };
        let mut writer = SnapshotWriter::new(Vec::new(), &header).expect("header");
        for (name, total, days) in routes {
            writer
                .route(&RouteRecord {
                    route: route(name),
                    total: *total,
                    days: days.iter().map(|(d, n)| (day(d), *n)).collect(),
                    months: vec![],
                })
                .expect("route");
        }
        for key in keys {
            writer
                .key(&KeyRecord {
                    key: IdempotencyKey::parse(key.as_bytes()).expect("key"),
                    route: route("AR1133"),
                    count: 1,
                    expires_at: 2_000_000_000,
                })
                .expect("key");
        }
        writer.finish().expect("end").0
    }

    fn delta(later: &[u8], earlier: &[u8]) -> Result<Vec<Record>, TransferError> {
        let reader =
            |bytes: &[u8]| SnapshotReader::new(Cursor::new(bytes.to_vec())).expect("reads");
        let mut delta = Delta::new(reader(later), reader(earlier))?;
        let mut out = Vec::new();
        while let Some(record) = delta.next_record()? {
            out.push(record);
        }
        Ok(out)
    }

    #[test]
    fn only_what_was_recorded_in_between_is_left() {
        let earlier = file(
            100,
            &[("AR1133", 5, &[("2026-12-01", 5)]), ("LA0001", 3, &[])],
            &["k1", "k3"],
        );
        let later = file(
            200,
            &[
                ("AR1133", 9, &[("2026-12-01", 5), ("2026-12-02", 4)]),
                ("LA0001", 3, &[]),
                ("UX0001", 2, &[("2026-12-02", 2)]),
            ],
            &["k1", "k2"],
        );
        let records = delta(&later, &earlier).expect("a delta");
        let summary: Vec<String> = records
            .iter()
            .map(|r| match r {
                Record::Route(r) => format!("{} {} {:?}", r.route, r.total, r.days.len()),
                Record::Key(k) => format!("key {}", k.key),
            })
            .collect();
        assert_eq!(summary, ["AR1133 4 1", "UX0001 2 1", "key k2"]);
        let Record::Route(ar) = &records[0] else {
            panic!("a route first");
        };
        assert_eq!(ar.days, vec![(day("2026-12-02"), 4)]);
    }

    #[test]
    fn snapshots_out_of_order_or_of_other_stores_are_refused() {
        let a = file(100, &[("AR1133", 5, &[]), ("LA0001", 3, &[])], &[]);
        let b = file(200, &[("AR1133", 4, &[]), ("LA0001", 3, &[])], &[]);
        let err = delta(&b, &a).expect_err("shrank").to_string();
        assert!(
            err.starts_with("route AR1133: the later snapshot (line 2) holds less"),
            "{err}"
        );
        let c = file(200, &[("LA0001", 3, &[])], &[]);
        let err = delta(&c, &a).expect_err("vanished").to_string();
        assert!(
            err.starts_with("route AR1133 is in the earlier snapshot but not"),
            "{err}"
        );
        let d = file(300, &[("AR1133", 5, &[])], &[]);
        let err = delta(&d, &a).expect_err("vanished at the end").to_string();
        assert!(err.starts_with("route LA0001 is in the earlier"), "{err}");
        let err = delta(&a, &b).expect_err("order").to_string();
        assert_eq!(
            err,
            "the earlier snapshot was taken after the later one (200 > 100)"
        );
    }
}

/// Importing a bad file: the error names the line; what was applied before it is marked, so
/// the store is either unchanged (a bad line in the first chunk) or finished exactly by running
/// the import again on the mended file.
mod bad_files {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::{
        clock::{Clock, ManualClock},
        snapshot::transfer::{self, IMPORT_CHUNK, TransferError},
        store::{MemoryStore, SnapshotStore, StoreBase},
    };

    /// 2026-11-26 12:00 UTC.
    const NOW: u64 = 1_795_694_400;
    const ROUTES: usize = 2_500;

    fn store() -> MemoryStore {
        MemoryStore::with_clock(ManualClock::at(UNIX_EPOCH + Duration::from_secs(NOW)))
    }

    /// A snapshot of `ROUTES` routes, as lines.
    fn lines() -> Vec<String> {
        let clock = ManualClock::at(UNIX_EPOCH + Duration::from_secs(NOW));
        let mut writer = SnapshotWriter::new(Vec::new(), &header()).expect("header");
        for r in 0..ROUTES {
            let total = 1 + r as u64 % 7;
            writer
                .route(&RouteRecord {
                    route: route(&format!("UX{}", 1000 + r)),
                    total: total + 10,
                    days: vec![(clock.today(), total)],
                    months: vec![(clock.this_month(), total)],
                })
                .expect("route");
        }
        let (out, _, _) = writer.finish().expect("end");
        String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn text(lines: &[String]) -> String {
        lines.join("\n") + "\n"
    }

    async fn import(store: &MemoryStore, text: &str) -> Result<transfer::Imported, TransferError> {
        transfer::import(
            store,
            Cursor::new(text.as_bytes()),
            false,
            NOW,
            &mut |_, _| {},
        )
        .await
    }

    async fn exported(store: &MemoryStore) -> Vec<Record> {
        let header = Header {
            taken_at: NOW,
            ..header()
        };
        let (out, _) = transfer::export(store, &header, Vec::new(), &mut |_, _| {})
            .await
            .expect("export");
        read_all(&String::from_utf8(out).expect("utf-8"))
            .expect("reads")
            .1
    }

    /// The two lists are equal; the first difference is shown, not both lists.
    fn assert_same(got: &[Record], expected: &[Record]) {
        if let Some(i) = (0..got.len().min(expected.len())).find(|&i| got[i] != expected[i]) {
            panic!("record {i}: {:?}, not {:?}", got[i], expected[i]);
        }
        assert_eq!(got.len(), expected.len());
    }

    /// `good` with line `n` (1-based) replaced by `line`.
    fn with(good: &[String], n: usize, line: &str) -> String {
        let mut lines = good.to_vec();
        lines[n - 1] = line.to_owned();
        text(&lines)
    }

    #[tokio::test]
    async fn a_bad_line_in_the_first_chunk_changes_nothing() {
        let good = lines();
        let store = store();
        let bad_total = good[9].replace("\"transactions\":", "\"transactions\":-");
        let err = import(&store, &with(&good, 10, &bad_total))
            .await
            .expect_err("refused")
            .to_string();
        assert!(err.starts_with("line 10: "), "{err}");
        assert!(store.is_empty().await.expect("is_empty"));
        assert_eq!(store.import_mark(&header().id).await.expect("mark"), None);
        // The mended file imports whole.
        import(&store, &text(&good)).await.expect("import");
        assert_eq!(
            exported(&store).await,
            read_all(&text(&good)).expect("reads").1
        );
    }

    #[tokio::test]
    async fn a_bad_line_later_leaves_an_import_a_rerun_finishes() {
        let good = lines();
        let expected = read_all(&text(&good)).expect("reads").1;
        // Past the first chunk: an invalid route, a route out of order (a duplicate), a line
        // cut in half, and the file cut short.
        let at = IMPORT_CHUNK + 300;
        let cut_line = &good[at - 1][..good[at - 1].len() / 2];
        let cases = [
            with(&good, at, &good[at - 1].replace("\"UX", "\"#X")),
            with(&good, at, &good[at - 2]),
            with(&good, at, cut_line),
            text(&good[..at]),
        ];
        for bad in cases {
            let store = store();
            let err = import(&store, &bad).await.expect_err("refused").to_string();
            assert!(
                err.starts_with(&format!("line {at}: "))
                    || err.contains(&format!("ends at line {at}")),
                "{err}"
            );
            // The first chunk went in, and is marked.
            let mark = store.import_mark(&header().id).await.expect("mark");
            let mark = mark.expect("a mark after the first chunk");
            assert!(!mark.finished && mark.lines_done > 1, "{mark:?}");
            assert_eq!(store.get(route("UX1000")).await.expect("get"), 11);
            // Run again on the mended file: it resumes, and ends exact.
            let again = import(&store, &text(&good)).await.expect("resumed");
            let transfer::Imported::Applied {
                resumed, routes, ..
            } = again
            else {
                panic!("applied, not {again:?}");
            };
            assert!(resumed);
            assert_eq!(routes, ROUTES as u64 + 1 - mark.lines_done);
            assert_same(&exported(&store).await, &expected);
            // And a third time changes nothing.
            assert_eq!(
                import(&store, &text(&good)).await.expect("again"),
                transfer::Imported::AlreadyImported
            );
        }
    }
}
