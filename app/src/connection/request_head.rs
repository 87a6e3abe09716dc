//! How much of an unanswered HTTP/1 request has arrived, watched byte by byte beneath the
//! parser.
//!
//! hyper buffers a request's head until it is complete, up to about 400 KB, and poem gives no
//! way to lower that. A client that opens many connections and sends each an endless header
//! section would pin that much per connection (2,000 such connections took 780 MiB). The
//! service's own requests need a few KB, so the connection layer holds every request to far
//! smaller bounds, before the bytes reach the parser:
//!
//! - the request line must end within [`MAX_REQUEST_LINE`] bytes (else `414`), and the header
//!   section within [`MAX_HEAD`] (else `431`);
//! - no more than [`MAX_UNANSWERED`] bytes are read past the last answer: beyond it, reading
//!   pauses until the service answers (a pipelining client is slowed, never refused).
//!
//! The tracker sees only the bytes, not the parser's state. After an answer, bytes the parser
//! already holds (a pipelined request read earlier) are not counted again, so a pipelining
//! client can make the parser hold at most twice [`MAX_UNANSWERED`]: still a hard bound.

use poem::http::StatusCode;

use crate::api::error::MAX_BODY_BYTES;

/// Longest request line (method, target, version) read.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Longest head (request line and header section) read: the limit of Node.js and of the
/// HTTP/2 header lists of poem, several times what this service's clients send.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most bytes read after the last answer before reading pauses: a whole head and the largest
/// body accepted.
pub const MAX_UNANSWERED: usize = MAX_HEAD + MAX_BODY_BYTES;

/// What the bytes read so far mean for the request under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within every bound.
    Within,
    /// The head outgrew its bound: refuse the request with this status and close.
    Refuse(StatusCode),
}

/// The request under way since the last answer.
#[derive(Debug, Default)]
pub struct RequestHead {
    /// Bytes read since the last answer.
    unanswered: usize,
    /// Bytes of the head so far, empty lines before the request line excluded.
    head: usize,
    /// Bytes of the line being read, its `\r` excluded.
    line: usize,
    /// The request line has ended.
    request_line_done: bool,
    /// The empty line that ends the head has been read; what follows is body or the next
    /// request, bounded only by [`MAX_UNANSWERED`].
    head_done: bool,
}

impl RequestHead {
    /// An answer was written: the next bytes begin a new request.
    pub fn answered(&mut self) {
        *self = Self::default();
    }

    /// How many more bytes may be read before the next answer.
    pub fn room(&self) -> usize {
        MAX_UNANSWERED.saturating_sub(self.unanswered)
    }

    /// Takes the bytes just read.
    pub fn observe(&mut self, bytes: &[u8]) -> Verdict {
        self.unanswered += bytes.len();
        if self.head_done {
            return Verdict::Within;
        }
        // Line by line (memchr), not byte by byte: this runs on every read of every request.
        let mut rest = bytes;
        while !rest.is_empty() {
            let (piece, ends_line) = match memchr::memchr(b'\n', rest) {
                Some(at) => (&rest[..at], true),
                None => (rest, false),
            };
            rest = &rest[piece.len() + usize::from(ends_line)..];
            // Carriage returns are not content: a line of only `\r` is empty.
            let content = piece.len() - memchr::memchr_iter(b'\r', piece).count();
            self.line += content;
            self.head += content;
            if !self.request_line_done && self.line > MAX_REQUEST_LINE {
                return Verdict::Refuse(StatusCode::URI_TOO_LONG);
            }
            if self.head > MAX_HEAD {
                return Verdict::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            if ends_line {
                if self.line == 0 && self.request_line_done {
                    self.head_done = true;
                    return Verdict::Within;
                }
                // Empty lines before the request line are skipped, as the parser does.
                self.request_line_done |= self.line > 0;
                self.line = 0;
            }
        }
        Verdict::Within
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordinary_request_is_within_every_bound() {
        let mut head = RequestHead::default();
        let request =
            b"\r\nGET /transactions/AR1133 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n";
        assert_eq!(head.observe(request), Verdict::Within);
        assert!(head.head_done);
        assert_eq!(head.room(), MAX_UNANSWERED - request.len());
        head.answered();
        assert_eq!(head.room(), MAX_UNANSWERED);
    }

    #[test]
    fn a_head_split_across_reads_ends_where_it_ends() {
        let mut head = RequestHead::default();
        for part in [&b"GET / HTTP/1.1\r"[..], b"\nHost: x\r\n\r", b"\n"] {
            assert_eq!(head.observe(part), Verdict::Within);
        }
        assert!(head.head_done);
        // Body bytes after the head count only towards the unanswered bound.
        assert_eq!(head.observe(&[b'x'; MAX_HEAD]), Verdict::Within);
    }

    #[test]
    fn bare_line_feeds_end_lines_too() {
        let mut head = RequestHead::default();
        assert_eq!(
            head.observe(b"GET / HTTP/1.1\nHost: x\n\n"),
            Verdict::Within
        );
        assert!(head.head_done);
    }

    #[test]
    fn an_endless_request_line_is_refused_with_414() {
        let mut head = RequestHead::default();
        assert_eq!(head.observe(b"GET /"), Verdict::Within);
        let verdict = head.observe(&vec![b'a'; MAX_REQUEST_LINE]);
        assert_eq!(verdict, Verdict::Refuse(StatusCode::URI_TOO_LONG));
    }

    #[test]
    fn an_endless_header_section_is_refused_with_431() {
        let mut head = RequestHead::default();
        assert_eq!(head.observe(b"GET / HTTP/1.1\r\n"), Verdict::Within);
        let mut verdict = Verdict::Within;
        for _ in 0..1000 {
            verdict = head.observe(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
            if verdict != Verdict::Within {
                break;
            }
        }
        assert_eq!(
            verdict,
            Verdict::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    proptest::proptest! {
        /// However the bytes are split across reads, the verdict is the same.
        #[test]
        fn the_verdict_does_not_depend_on_how_reads_split_the_bytes(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'\r', b'\n']), 0..40_000),
            cuts in proptest::collection::vec(0usize..40_000, 0..8),
        ) {
            let mut whole = RequestHead::default();
            let expected = whole.observe(&bytes);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut split = RequestHead::default();
            let mut verdict = Verdict::Within;
            let mut from = 0;
            for to in cuts.into_iter().chain([bytes.len()]) {
                verdict = split.observe(&bytes[from..to]);
                from = to;
                if verdict != Verdict::Within {
                    break;
                }
            }
            proptest::prop_assert_eq!(verdict, expected);
            proptest::prop_assert_eq!(split.head_done, whole.head_done);
        }
    }
}
