//! `/dashboard`: a page for people, in a browser, over the read API: the top routes of today and
//! of this month, one route's days and months, a few routes side by side, refreshed live.
//!
//! The page is bundled in the binary and assembled once, at start, from three files kept apart
//! so that each can be read and linted as what it is: `dashboard.html` (the markup, with a
//! `{{style}}` and a `{{script}}` placeholder), `dashboard.css` and `dashboard.js`. The style
//! and the script go inline, so the page is one request and its Content Security Policy names
//! exactly those two blocks by their hashes. It draws its charts itself, as SVG: it loads
//! nothing but the API.
//!
//! The page needs no key; the API calls it makes send the read key a person enters in it.

use bytes::Bytes;
use poem::Response;

use super::security_headers::PageHeaders;

const TEMPLATE: &str = include_str!("dashboard.html");
const STYLE: &str = include_str!("dashboard.css");
const SCRIPT: &str = include_str!("dashboard.js");

/// The page as served: the template with its style and script in place.
fn assemble() -> String {
    TEMPLATE
        .replacen("{{style}}", STYLE, 1)
        .replacen("{{script}}", SCRIPT, 1)
}

/// The page and its headers, made once.
pub struct Dashboard {
    page: Bytes,
    headers: PageHeaders,
}

impl Default for Dashboard {
    fn default() -> Self {
        let html = assemble();
        let headers = PageHeaders::for_own_page(&html);
        Self {
            page: Bytes::from(html),
            headers,
        }
    }
}

impl Dashboard {
    /// The page, with its policy; `Bytes` clones are reference counted, so serving copies nothing.
    pub fn response(&self) -> Response {
        let mut page = super::document("text/html; charset=utf-8", self.page.clone());
        self.headers.apply(&mut page);
        page
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};

    use super::*;

    fn hash(text: &str) -> String {
        let digest = Sha256::digest(text.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    }

    /// The policy allows the page's own style and script, byte for byte, and nothing inline
    /// besides: a placeholder left unfilled, or a `<script`/`<style` inside the script or the
    /// style (which would end or split the block the hashes are computed over), fails here
    /// rather than in a browser.
    #[test]
    fn the_policy_allows_exactly_the_pages_own_style_and_script() {
        let html = assemble();
        assert!(!html.contains("{{"), "a placeholder is left in the page");
        for text in [STYLE, SCRIPT] {
            for tag in ["<script", "</script", "<style", "</style", "<!--"] {
                assert!(!text.contains(tag), "{tag} inside an inline block");
            }
        }
        assert_eq!(html.matches("<script").count(), 1);
        assert_eq!(html.matches("<style").count(), 1);
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")));
        let dashboard = Dashboard::default();
        let policy = dashboard.headers.policy();
        assert_eq!(
            policy,
            format!(
                "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
                 base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                hash(SCRIPT),
                hash(STYLE)
            )
        );
        assert!(!policy.contains("unsafe"), "{policy}");
    }

    /// No style attribute anywhere: the policy would block it.
    #[test]
    fn the_page_sets_no_inline_style_attributes() {
        let html = assemble();
        assert!(!html.contains(" style="), "a style attribute in the markup");
        for call in ["setAttribute('style'", "setAttribute(\"style\"", ".style."] {
            assert!(!SCRIPT.contains(call), "{call} in the script");
        }
        for call in ["eval(", "new Function", "innerHTML", "insertAdjacentHTML"] {
            assert!(!SCRIPT.contains(call), "{call} in the script");
        }
    }
}
