//! The cursor of a page of `GET /transactions`: where the next page starts, opaque to clients
//! and checked when it comes back, so that a cursor altered or made up is refused with `400`
//! instead of starting a page somewhere unexpected.
//!
//! It holds the last route of the page and a 64-bit digest of it. Nothing in it is secret (a
//! route is anyone's to ask for) and it needs no key shared between instances: a page may be
//! answered by any instance behind the load balancer.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};

use crate::route::Route;

/// Which layout a cursor has.
const VERSION: u8 = 1;
const DIGEST_LEN: usize = 8;

fn digest(route: &str) -> [u8; DIGEST_LEN] {
    let mut hash = Sha256::new();
    hash.update(b"flight-counter list cursor\0");
    hash.update([VERSION]);
    hash.update(route.as_bytes());
    let full = hash.finalize();
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&full[..DIGEST_LEN]);
    out
}

/// The cursor of the page after `last`.
pub fn after(last: Route) -> String {
    let mut bytes = vec![VERSION];
    bytes.extend_from_slice(last.as_str().as_bytes());
    bytes.extend_from_slice(&digest(last.as_str()));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The route a cursor starts after; `None` for anything [`after`] did not make.
pub fn parse(cursor: &str) -> Option<Route> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let (&version, rest) = bytes.split_first()?;
    if version != VERSION || rest.len() <= DIGEST_LEN {
        return None;
    }
    let (name, check) = rest.split_at(rest.len() - DIGEST_LEN);
    let name = std::str::from_utf8(name).ok()?;
    let route = Route::parse(name).ok()?;
    // Only the canonical spelling was ever written.
    (route.as_str() == name && check == digest(name)).then_some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_gives_back_its_route_and_any_change_is_refused() {
        let route = Route::parse("ARG1133").expect("route");
        let cursor = after(route);
        assert_eq!(parse(&cursor), Some(route));
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).expect("base64");
        for i in 0..bytes.len() {
            bytes[i] ^= 0x01;
            assert_eq!(
                parse(&URL_SAFE_NO_PAD.encode(&bytes)),
                None,
                "byte {i} changed"
            );
            bytes[i] ^= 0x01;
        }
        // Another route's name with this route's digest.
        let mut forged = vec![VERSION];
        forged.extend_from_slice(b"AR1133");
        forged.extend_from_slice(&digest("ARG1133"));
        assert_eq!(parse(&URL_SAFE_NO_PAD.encode(forged)), None);
        for junk in ["", "x", "AR1133", "%%%", &cursor[..cursor.len() - 1]] {
            assert_eq!(parse(junk), None, "{junk:?}");
        }
    }
}
