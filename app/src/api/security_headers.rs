//! Headers that tell a browser how little the service's pages may do: the Swagger UI page and
//! the dashboard run only the scripts the service put in them.
//!
//! Both pages carry their script and style inline, so the Content Security Policy allows
//! exactly those inline blocks by their SHA-256 (computed once, when the page is rendered)
//! rather than any inline script. Everything else a page loads comes from the service itself:
//! the OpenAPI document and the API, which the pages call.

use base64::Engine as _;
use poem::{
    Response,
    http::{HeaderValue, header},
};
use sha2::{Digest as _, Sha256};

/// `'sha256-<base64>'` of the content of every `<tag ...>...</tag>` block in `html`.
fn inline_hashes(html: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after_open = &rest[start..];
        let Some(content_start) = after_open.find('>') else {
            break;
        };
        let content = &after_open[content_start + 1..];
        let Some(end) = content.find(&close) else {
            break;
        };
        let digest = Sha256::digest(&content.as_bytes()[..end]);
        hashes.push(format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        ));
        rest = &content[end + close.len()..];
    }
    hashes
}

/// The headers of an HTML page, its policy built from the page itself.
#[derive(Clone)]
pub struct PageHeaders {
    content_security_policy: HeaderValue,
}

impl PageHeaders {
    pub fn for_page(html: &str) -> Self {
        let scripts = inline_hashes(html, "script").join(" ");
        let styles = inline_hashes(html, "style").join(" ");
        // Swagger UI sets `style` attributes from its scripts, which hashes cannot name, so
        // inline style attributes are allowed; styles cannot run code.
        let policy = format!(
            "default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline' \
             {styles}; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        Self {
            content_security_policy: HeaderValue::from_str(&policy)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
        }
    }

    /// The policy of a page of the service's own (the dashboard): like [`Self::for_page`], but
    /// its scripts never set `style` attributes, so no inline style is allowed beyond its own
    /// `<style>` blocks, and it loads no images or fonts (its charts are inline SVG).
    pub fn for_own_page(html: &str) -> Self {
        let scripts = inline_hashes(html, "script").join(" ");
        let styles = inline_hashes(html, "style").join(" ");
        let policy = format!(
            "default-src 'none'; script-src {scripts}; style-src {styles}; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        Self {
            content_security_policy: HeaderValue::from_str(&policy)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
        }
    }

    /// The policy, as sent.
    #[cfg(test)]
    pub fn policy(&self) -> &str {
        self.content_security_policy.to_str().unwrap_or_default()
    }

    /// Adds the page's headers to `resp`.
    pub fn apply(&self, resp: &mut Response) {
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            self.content_security_policy.clone(),
        );
        apply_document_headers(resp);
    }
}

/// Headers of every document the service serves (the page, the OpenAPI document, metrics):
/// no content-type guessing, and no address of the service sent to other sites.
pub fn apply_document_headers(resp: &mut Response) {
    let headers = resp.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_each_inline_block_by_its_hash() {
        let html = "<html><style a=\"b\">p{}</style><script charset=\"UTF-8\">x()</script>\
                    <body><script>\n y() \n</script></body></html>";
        let hashes = inline_hashes(html, "script");
        assert_eq!(hashes.len(), 2);
        // printf 'x()' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            hashes[0],
            "'sha256-D6IGS8VMvCoyaR/l0h9tERrBTATY01CoPS7l6xDv0kI='"
        );
        let headers = PageHeaders::for_page(html);
        let policy = headers
            .content_security_policy
            .to_str()
            .expect("ASCII policy");
        assert!(
            policy.contains(&hashes[0]) && policy.contains(&hashes[1]),
            "{policy}"
        );
        assert!(!policy.contains("script-src 'unsafe-inline'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    }
}
