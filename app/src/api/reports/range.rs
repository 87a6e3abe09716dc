//! Which periods a daily or monthly read covers: the rules both share, and the message that
//! names the window a client may read when it asks outside it.

use crate::calendar::Period;

/// Days (months) a daily (monthly) read covers when `from` is not given: a week (a year).
pub(super) const DEFAULT_DAYS: i32 = 7;
pub(super) const DEFAULT_MONTHS: i32 = 12;

/// A range that cannot be read, and the window that can.
fn out_of_window(
    what: &str,
    first: impl std::fmt::Display,
    last: impl std::fmt::Display,
) -> String {
    format!("{what}; {first} to {last} (UTC) can be read")
}

/// Works out a requested range of periods, by the rules both reads share: `to` defaults to the
/// current period, `from` to `default_span - 1` periods before `to`; the range must lie within
/// the periods kept, up to the current one.
pub(super) fn range<P: Period>(
    from: Option<&str>,
    to: Option<&str>,
    default_span: i32,
    current: P,
) -> Result<(P, P), String> {
    let first = current.first_kept();
    let window = |what: &str| out_of_window(what, first, current);
    let to = match to {
        Some(text) => P::parse_text(text).map_err(|e| window(&format!("to: {e}")))?,
        None => current,
    };
    let (from, from_given) = match from {
        Some(text) => (
            P::parse_text(text).map_err(|e| window(&format!("from: {e}")))?,
            true,
        ),
        None => (to.shifted(1 - default_span).unwrap_or(to), false),
    };
    if from > to {
        return Err(window(&format!("from {from} is after to {to}")));
    }
    if to > current {
        return Err(window(&format!("to {to} is in the future")));
    }
    if from < first {
        // Name what the client sent: a `from` it gave, or the default it did not.
        return Err(if from_given {
            window(&format!("from {from} is before the first one kept"))
        } else {
            window(&format!(
                "to {to} leaves no room for the default range ({default_span} periods, from \
                 {from}) after the first one kept; send from as well"
            ))
        });
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Day;

    fn day(s: &str) -> Day {
        Day::parse(s).expect("day")
    }

    fn days(from: Option<&str>, to: Option<&str>) -> Result<(String, String), String> {
        let today = day("2026-11-21");
        range(from, to, DEFAULT_DAYS, today).map(|(a, b)| (a.to_string(), b.to_string()))
    }

    #[test]
    fn daily_ranges_default_to_the_last_week_and_stay_in_the_window() {
        let pair = |a: &str, b: &str| Ok((a.to_owned(), b.to_owned()));
        assert_eq!(days(None, None), pair("2026-11-15", "2026-11-21"));
        assert_eq!(
            days(None, Some("2026-11-10")),
            pair("2026-11-04", "2026-11-10")
        );
        assert_eq!(
            days(Some("2026-09-21"), None),
            pair("2026-09-21", "2026-11-21")
        );
        for (from, to, says) in [
            (Some("2026-11-22"), None, "after"),
            (None, Some("2026-11-22"), "future"),
            (Some("2026-09-20"), None, "before the first"),
            (Some("2026-11-31"), None, "not a date"),
            (None, Some("yesterday"), "not a date"),
            (None, Some("2026-09-25"), "send from as well"),
            (None, Some("0000-01-01"), "year from 0001"),
        ] {
            let err = days(from, to).expect_err("refused");
            assert!(err.contains(says), "{err}");
            assert!(
                err.contains("2026-09-21 to 2026-11-21 (UTC) can be read"),
                "{err}"
            );
        }
    }
}
