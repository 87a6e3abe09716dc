//! The flight route: the one place that knows what a valid route looks like and what its
//! canonical form is.
//!
//! A route is an airline flight designator: a two-character airline code (letters or digits, not
//! both digits) or a three-letter code, then a flight number of one to four digits, then an
//! optional one-letter operational suffix. Input is accepted in any letter case and turned into
//! one canonical spelling (upper case, flight number zero-padded to four digits) so that one
//! flight never splits into two counters: `ar1`, `AR01` and `AR0001` are the same route.

use std::fmt;

/// The pattern that accepted input matches, published in the OpenAPI document. Validation does
/// not run this regex: [`Route::parse`] is a hand-written scanner of the same grammar, which the
/// property tests check against this pattern.
pub const ROUTE_PATTERN: &str =
    "^(?:[A-Za-z][A-Za-z0-9]|[0-9][A-Za-z]|[A-Za-z]{3})[0-9]{1,4}[A-Za-z]?$";

/// Longest accepted input: three-letter airline, four digits, one suffix letter.
pub const MAX_ROUTE_LEN: usize = 8;

/// What a caller is told when a route is rejected.
pub const ROUTE_RULE: &str = "a route is an airline code (2 letters or digits, not both digits, \
     or 3 letters), a flight number of 1 to 4 digits and an optional letter suffix, \
     e.g. AR1133, U24567, ARG1133 or AA100A";

/// A validated flight route in canonical form. It is small and `Copy`: the canonical spelling
/// is at most eight ASCII bytes, kept inline.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    bytes: [u8; MAX_ROUTE_LEN],
    len: u8,
}

/// Why an input is not a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the route is empty; {ROUTE_RULE}")]
    Empty,
    #[error("the route is longer than {MAX_ROUTE_LEN} characters; {ROUTE_RULE}")]
    TooLong,
    #[error("the route does not start with a valid airline code; {ROUTE_RULE}")]
    BadAirline,
    #[error("the route has no flight number of 1 to 4 digits after the airline code; {ROUTE_RULE}")]
    BadFlightNumber,
    #[error("the route has unexpected characters after the flight number; {ROUTE_RULE}")]
    BadSuffix,
}

impl Route {
    /// Parses a route in any letter case and returns its canonical form.
    pub fn parse(input: &str) -> Result<Self, RouteError> {
        let raw = input.as_bytes();
        if raw.is_empty() {
            return Err(RouteError::Empty);
        }
        if raw.len() > MAX_ROUTE_LEN {
            return Err(RouteError::TooLong);
        }
        let at = |i: usize| raw.get(i).copied().unwrap_or(0);

        // The airline code. The two forms never both match: a two-character code is followed by
        // a digit, a three-letter code has a letter in that position.
        let two_chars = at(0).is_ascii_alphanumeric()
            && at(1).is_ascii_alphanumeric()
            && !(at(0).is_ascii_digit() && at(1).is_ascii_digit());
        let three_letters = (0..3).all(|i| at(i).is_ascii_alphabetic());
        let airline_len = if two_chars && at(2).is_ascii_digit() {
            2
        } else if three_letters {
            3
        } else if two_chars {
            // A plausible airline code with no flight number after it.
            2
        } else {
            return Err(RouteError::BadAirline);
        };

        let digits = raw[airline_len..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if !(1..=4).contains(&digits) {
            return Err(RouteError::BadFlightNumber);
        }
        let rest = &raw[airline_len + digits..];
        let suffix = match rest {
            [] => None,
            [letter] if letter.is_ascii_alphabetic() => Some(letter.to_ascii_uppercase()),
            _ => return Err(RouteError::BadSuffix),
        };

        let mut bytes = [0u8; MAX_ROUTE_LEN];
        let mut len = 0;
        for &b in &raw[..airline_len] {
            bytes[len] = b.to_ascii_uppercase();
            len += 1;
        }
        for _ in digits..4 {
            bytes[len] = b'0';
            len += 1;
        }
        for &b in &raw[airline_len..airline_len + digits] {
            bytes[len] = b;
            len += 1;
        }
        if let Some(letter) = suffix {
            bytes[len] = letter;
            len += 1;
        }
        Ok(Route {
            bytes,
            len: len as u8,
        })
    }

    /// The canonical spelling, e.g. `AR0001`.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever written by `parse`.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }

    /// The airline code: what comes before the four digits of the canonical form.
    pub fn airline(&self) -> &str {
        let text = self.as_str();
        let suffix = usize::from(text.ends_with(|c: char| c.is_ascii_alphabetic()));
        &text[..text.len().saturating_sub(4 + suffix)]
    }
}

/// An airline code, as routes begin with: two letters or digits (not both digits) or three
/// letters, in upper case. Every route of one airline starts with its code and a digit, so
/// they sit together in route order (`AR` before `ARG`: a digit sorts before a letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Airline {
    bytes: [u8; 3],
    len: u8,
}

/// What a caller is told when an airline code is rejected.
pub const AIRLINE_RULE: &str =
    "an airline code is 2 letters or digits (not both digits) or 3 letters, e.g. AR, U2 or ARG";

impl Airline {
    /// Parses an airline code in any letter case.
    pub fn parse(input: &str) -> Option<Self> {
        let raw = input.as_bytes();
        let valid = match raw {
            [a, b] => {
                a.is_ascii_alphanumeric()
                    && b.is_ascii_alphanumeric()
                    && !(a.is_ascii_digit() && b.is_ascii_digit())
            }
            [a, b, c] => [a, b, c].iter().all(|x| x.is_ascii_alphabetic()),
            _ => false,
        };
        if !valid {
            return None;
        }
        let mut bytes = [0u8; 3];
        for (to, from) in bytes.iter_mut().zip(raw) {
            *to = from.to_ascii_uppercase();
        }
        Some(Self {
            bytes,
            len: raw.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }

    /// Whether `route` is one of this airline's.
    pub fn flies(&self, route: &Route) -> bool {
        route.airline() == self.as_str()
    }
}

impl fmt::Display for Airline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Routes key the ledger's queues on every request. The canonical bytes (zero-padded) identify a
// route on their own, so they hash as one integer instead of an array and a length.
impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from_le_bytes(self.bytes));
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Route({})", self.as_str())
    }
}

impl std::str::FromStr for Route {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Route::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_routes_are_canonicalised() {
        let cases = [
            ("AR1133", "AR1133"),
            ("ar1133", "AR1133"),
            ("LA0001", "LA0001"),
            ("la1", "LA0001"),
            ("ar1", "AR0001"),
            ("U24567", "U24567"),
            ("u2456", "U20456"),
            ("2K100", "2K0100"),
            ("ARG1133", "ARG1133"),
            ("arg7", "ARG0007"),
            ("AA100A", "AA0100A"),
            ("aa100a", "AA0100A"),
            ("AB1C", "AB0001C"),
            ("ABC1234Z", "ABC1234Z"),
            ("A11", "A10001"),
        ];
        for (input, canonical) in cases {
            let route = Route::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(route.as_str(), canonical, "input {input}");
        }
    }

    #[test]
    fn a_route_knows_its_airline_and_airlines_parse_as_routes_begin() {
        for (route, airline) in [
            ("AR1133", "AR"),
            ("ar1", "AR"),
            ("U24567", "U2"),
            ("3u1", "3U"),
            ("ARG1133", "ARG"),
            ("AA100A", "AA"),
            ("ARG1A", "ARG"),
        ] {
            let route = Route::parse(route).expect("route");
            assert_eq!(route.airline(), airline, "{route}");
            let code = Airline::parse(&airline.to_lowercase()).expect("airline");
            assert!(code.flies(&route), "{code} flies {route}");
        }
        assert!(
            !Airline::parse("AR")
                .expect("AR")
                .flies(&Route::parse("ARG1").expect("r"))
        );
        for bad in ["", "A", "12", "ABCD", "A1B", "AR1", "Ä1"] {
            assert_eq!(Airline::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn invalid_routes_are_rejected_with_the_reason() {
        let cases = [
            ("", RouteError::Empty),
            ("ABCD12345", RouteError::TooLong),
            ("12345", RouteError::BadAirline),
            ("11", RouteError::BadAirline),
            ("A", RouteError::BadAirline),
            ("AR", RouteError::BadFlightNumber),
            ("ARG", RouteError::BadFlightNumber),
            ("AR12345", RouteError::BadFlightNumber),
            ("ABCD1", RouteError::BadFlightNumber),
            ("AR1133AB", RouteError::BadSuffix),
            ("AR11-3", RouteError::BadSuffix),
            ("AR1 ", RouteError::BadSuffix),
            ("A-1", RouteError::BadAirline),
            (" AR1", RouteError::BadAirline),
            ("ÄR1", RouteError::BadAirline),
            ("AR1é", RouteError::BadSuffix),
            ("AR١٢", RouteError::BadFlightNumber),
            ("../AR1", RouteError::BadAirline),
        ];
        for (input, expected) in cases {
            assert_eq!(Route::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn error_messages_say_what_a_valid_route_looks_like() {
        let message = Route::parse("nope").unwrap_err().to_string();
        assert!(message.contains("AR1133"), "{message}");
    }

    proptest! {
        #[test]
        fn canonical_form_is_stable(input in "[A-Za-z0-9]{2,3}[0-9]{1,4}[A-Za-z]?") {
            if let Ok(route) = Route::parse(&input) {
                let again = Route::parse(route.as_str()).expect("canonical form parses");
                prop_assert_eq!(again, route);
                prop_assert_eq!(again.as_str(), route.as_str());
            }
        }

        #[test]
        fn case_never_splits_a_flight(input in "[A-Za-z]{2,3}[0-9]{1,4}[A-Za-z]?") {
            let lower = Route::parse(&input.to_lowercase());
            let upper = Route::parse(&input.to_uppercase());
            prop_assert_eq!(lower, upper);
        }

        #[test]
        fn parser_agrees_with_the_published_pattern(input in "\\PC{0,10}|[A-Za-z0-9]{1,9}") {
            let pattern = regex::Regex::new(ROUTE_PATTERN).expect("pattern compiles");
            prop_assert_eq!(Route::parse(&input).is_ok(), pattern.is_match(&input), "input {:?}", input);
        }

        #[test]
        fn canonical_form_has_a_four_digit_flight_number(
            airline in "[A-Z]{2,3}", number in 0u32..10_000, suffix in "[A-Z]?"
        ) {
            let route = Route::parse(&format!("{airline}{number}{suffix}")).expect("valid");
            prop_assert_eq!(route.as_str(), format!("{airline}{number:04}{suffix}"));
        }
    }
}
