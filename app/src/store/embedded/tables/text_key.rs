//! [`TextKey`]: the key type of the hot tables, a string compared as its bytes.
//!
//! redb's own `&str` key deserializes both sides of every comparison, validating them as UTF-8
//! each time a lookup or insert walks the B-tree; under random routes that was about a tenth of
//! the store threads' time. UTF-8 strings order exactly as their bytes, so comparing the bytes
//! gives the same order without the check. The encoding is the string's bytes, as `&str`'s is:
//! only the type name differs, so tables keyed by it live under their own names.

use std::{borrow::Cow, cmp::Ordering};

use redb::{Key, TypeName, Value};

/// What [`TextKey::from_bytes`] yields for bytes that are not UTF-8 (a damaged file: every key
/// written is a `&str`). No route or idempotency key contains it (both are ASCII), so whatever
/// reads it back rejects it rather than the store panicking.
pub(in crate::store::embedded) const NOT_UTF8: &str = "\u{FFFD}";

/// A string key, stored as its UTF-8 bytes and ordered by them (which is `str`'s order).
#[derive(Debug)]
pub(in crate::store::embedded) struct TextKey;

impl Value for TextKey {
    type SelfType<'a>
        = &'a str
    where
        Self: 'a;
    type AsBytes<'a>
        = &'a [u8]
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> &'a str
    where
        Self: 'a,
    {
        // Validated once per value read out, not per comparison; the bytes come from the file,
        // so a damaged one must not panic.
        std::str::from_utf8(data).unwrap_or(NOT_UTF8)
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a &'b str) -> &'a [u8]
    where
        Self: 'b,
    {
        value.as_bytes()
    }

    fn type_name() -> TypeName {
        TypeName::new("flight_counter::TextKey")
    }
}

impl Key for TextKey {
    fn compare(data1: &[u8], data2: &[u8]) -> Ordering {
        data1.cmp(data2)
    }

    /// The shortest prefix of `right` that still sorts above `left`, as `&[u8]`'s separator,
    /// but extended to a character boundary so that it stays UTF-8 (it is a key like any other
    /// to whatever deserializes it); `left` itself when that prefix would be no shorter.
    fn separator<'a>(left: &'a [u8], right: &'a [u8]) -> Cow<'a, [u8]> {
        debug_assert!(left < right);
        let common = left.iter().zip(right).take_while(|(x, y)| x == y).count();
        let len = char_boundary_at_or_after(right, common + 1);
        // A prefix of `right` longer than the common part sorts above `left`, and below `right`
        // as long as it is shorter than `right`.
        if len < left.len() && len < right.len() {
            Cow::Borrowed(&right[..len])
        } else {
            Cow::Borrowed(left)
        }
    }

    // The empty string sorts below every other: tuples use it to shorten their separators.
    fn min_encoded_key() -> Option<Cow<'static, [u8]>> {
        Some(Cow::Borrowed(&[]))
    }
}

/// `index` moved forward past continuation bytes (`10xx_xxxx`) to where a character starts, or
/// to the end.
fn char_boundary_at_or_after(utf8: &[u8], mut index: usize) -> usize {
    while utf8
        .get(index)
        .is_some_and(|byte| byte & 0b1100_0000 == 0b1000_0000)
    {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// ASCII, two-, three- and four-byte characters, the empty string and prefixes of one
    /// another: where a comparison of bytes could part from `str`'s.
    const SAMPLES: &[&str] = &[
        "",
        "A",
        "AR",
        "AR1133",
        "AR11330",
        "AR2",
        "LA1",
        "ar1133",
        "\u{7f}",
        "é",
        "éa",
        "e\u{301}",
        "\u{7ff}",
        "\u{800}",
        "\u{FFFD}",
        "\u{ffff}",
        "\u{10000}",
        "𝄞",
        "𝄞𝄞",
        "\u{10ffff}",
        "client key-1",
        "client\u{a0}key",
    ];

    #[test]
    fn compare_orders_as_str_does() {
        for a in SAMPLES {
            for b in SAMPLES {
                assert_eq!(
                    TextKey::compare(a.as_bytes(), b.as_bytes()),
                    a.cmp(b),
                    "{a:?} against {b:?}"
                );
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_read_as_a_marker_route_and_key_parsing_reject() {
        for bytes in [
            &b"\xff"[..],
            b"AR\x80",
            b"\xc3",
            b"\xe2\x82",
            b"\xf0\x9d\x84",
            b"\xed\xa0\x80",
            b"AR1133\xc0\xaf",
        ] {
            assert_eq!(TextKey::from_bytes(bytes), NOT_UTF8, "{bytes:?}");
        }
        assert!(crate::route::Route::parse(NOT_UTF8).is_err());
        assert!(crate::idempotency::IdempotencyKey::parse(NOT_UTF8.as_bytes()).is_err());
        assert_eq!(TextKey::from_bytes("AR1133".as_bytes()), "AR1133");
    }

    /// Every ordered pair of the samples: the separator is between them, UTF-8, and no longer
    /// than the left one.
    #[test]
    fn separators_of_the_samples_lie_between_and_stay_utf8() {
        for a in SAMPLES {
            for b in SAMPLES.iter().filter(|b| a < *b) {
                check_separator(a, b);
            }
        }
    }

    fn check_separator(left: &str, right: &str) {
        let separator = TextKey::separator(left.as_bytes(), right.as_bytes());
        assert!(
            TextKey::compare(left.as_bytes(), &separator).is_le()
                && TextKey::compare(&separator, right.as_bytes()).is_lt(),
            "{separator:?} is not in [{left:?}, {right:?})"
        );
        assert!(separator.len() <= left.len(), "{separator:?} for {left:?}");
        assert!(
            std::str::from_utf8(&separator).is_ok(),
            "{separator:?} for {left:?} and {right:?}"
        );
    }

    /// Mostly a few of the same characters, so that strings share prefixes.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                3 => prop::sample::select(vec!['A', 'R', '1', 'é', '€', '𝄞']),
                1 => any::<char>(),
            ],
            0..8,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn compare_agrees_with_str(a in text(), b in text()) {
            prop_assert_eq!(TextKey::compare(a.as_bytes(), b.as_bytes()), a.cmp(&b));
        }

        #[test]
        fn separators_lie_between_and_stay_utf8(a in text(), b in text()) {
            match a.cmp(&b) {
                Ordering::Less => check_separator(&a, &b),
                Ordering::Greater => check_separator(&b, &a),
                Ordering::Equal => {}
            }
        }

        #[test]
        fn any_bytes_read_back_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let text = TextKey::from_bytes(&bytes);
            prop_assert!(text.as_bytes() == bytes.as_slice() || text == NOT_UTF8);
        }
    }
}
