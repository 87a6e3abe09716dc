//! JSON bodies for the answers the HTTP/1 parser gives on its own.
//!
//! hyper answers a request it cannot parse itself, before any endpoint runs: a control
//! character in a header value or an unreadable request line gets `400`, a request target over
//! its limit `414`, a header section over its limit `431`. The answer has an empty body, and the
//! connection is closed after it. Clients of this service read every error in one JSON shape, so
//! each accepted connection passes through [`JsonProtocolErrors`], which recognises exactly that
//! answer on its way out and sends the same status line and headers with a JSON body instead.
//!
//! Recognition is strict: a `400`, `414` or `431` status line whose head carries both
//! `connection: close` and `content-length: 0`. Every answer an endpoint of this service gives
//! carries a JSON body, so only the parser's own answers match.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    sync::LazyLock,
    task::{Context, Poll, ready},
};

use memchr::memmem::{self, Finder};
use poem::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{api::error::connection_error_body, telemetry};

/// A connection whose outgoing parser answers are rewritten to carry a JSON error body.
/// Reads, and every other write, pass straight through.
pub struct JsonProtocolErrors<S> {
    inner: S,
    /// The JSON answer that stands in for the parser's empty one, and how much of it is sent.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<S> JsonProtocolErrors<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            replacement: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> JsonProtocolErrors<S> {
    /// Sends what is left of a replacement answer; ready once all of it is written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, sent)) = &mut self.replacement {
            if *sent == bytes.len() {
                self.replacement = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes over the parser answer at the front of `buf`: reports it as written and sends the
    /// JSON answer in its place (now, or on the flush that always follows it).
    fn replace(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        answer: ParserAnswer,
    ) -> Poll<io::Result<usize>> {
        tracing::debug!(
            status = answer.status.as_u16(),
            "request could not be parsed"
        );
        telemetry::metrics::malformed_request(answer.status.as_u16());
        self.replacement = Some((json_answer(&head[..answer.len], answer.status), 0));
        match self.poll_replacement(cx) {
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            _ => Poll::Ready(Ok(answer.len)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonProtocolErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonProtocolErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_replacement(cx))?;
        match find_parser_answer(buf) {
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
            // Earlier answers first; the parser's answer is at the front of the next write.
            Some(answer) if answer.start > 0 => {
                Pin::new(&mut this.inner).poll_write(cx, &buf[..answer.start])
            }
            Some(answer) => this.replace(cx, buf, answer),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_replacement(cx))?;
        // hyper writes a response head as one buffer, so the answer lies within one slice.
        for (i, slice) in bufs.iter().enumerate() {
            let Some(answer) = find_parser_answer(slice) else {
                continue;
            };
            if i == 0 && answer.start == 0 {
                return this.replace(cx, slice, answer);
            }
            let mut before = bufs[..i].to_vec();
            if answer.start > 0 {
                before.push(IoSlice::new(&slice[..answer.start]));
            }
            return Pin::new(&mut this.inner).poll_write_vectored(cx, &before);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A parser answer found in an outgoing buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParserAnswer {
    /// Offset of its status line.
    start: usize,
    /// Length of its head, blank line included (it has no body).
    len: usize,
    status: StatusCode,
}

const CONTENT_LENGTH_ZERO: &[u8] = b"\r\ncontent-length: 0\r\n";
const CONNECTION_CLOSE: &[u8] = b"\r\nconnection: close\r\n";
const HEAD_END: &[u8] = b"\r\n\r\n";

/// Finds the parser's own error answer in `buf`, if the whole of its head is there.
fn find_parser_answer(buf: &[u8]) -> Option<ParserAnswer> {
    // One search per write; the answers of the service itself fail it on the first bytes.
    static STATUS_LINE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"HTTP/1.1 4"));
    let mut from = 0;
    while let Some(found) = STATUS_LINE.find(&buf[from..]) {
        let start = from + found;
        let rest = &buf[start..];
        let len = memmem::find(rest, HEAD_END)? + HEAD_END.len();
        let head = &rest[..len];
        let status = match &head[9..12] {
            b"400" => Some(StatusCode::BAD_REQUEST),
            b"414" => Some(StatusCode::URI_TOO_LONG),
            b"431" => Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            _ => None,
        };
        if let Some(status) = status {
            let head_before_blank_line = &head[..len - 2];
            if memmem::find(head_before_blank_line, CONTENT_LENGTH_ZERO).is_some()
                && memmem::find(head_before_blank_line, CONNECTION_CLOSE).is_some()
            {
                return Some(ParserAnswer { start, len, status });
            }
        }
        from = start + len;
    }
    None
}

/// The parser's answer with the JSON error body: its status line and headers are kept, the
/// empty `content-length` becomes the body's type and length.
fn json_answer(head: &[u8], status: StatusCode) -> Vec<u8> {
    let body = serde_json::to_vec(&connection_error_body(status)).unwrap_or_default();
    let Some(at) = memmem::find(head, CONTENT_LENGTH_ZERO) else {
        return head.to_vec();
    };
    let mut answer = Vec::with_capacity(head.len() + body.len() + 64);
    answer.extend_from_slice(&head[..at]);
    answer.extend_from_slice(b"\r\ncontent-type: application/json; charset=utf-8");
    answer.extend_from_slice(format!("\r\ncontent-length: {}\r\n", body.len()).as_bytes());
    answer.extend_from_slice(&head[at + CONTENT_LENGTH_ZERO.len()..]);
    answer.extend_from_slice(&body);
    answer
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::api::error::ErrorBody;

    const PARSER_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sat, 21 Nov 2026 09:30:03 GMT\r\n\r\n";
    const SERVICE_200: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 2\r\n\r\n{}";
    const SERVICE_404: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 2\r\n\r\n{}";

    #[test]
    fn finds_the_parser_answer_alone_and_after_other_answers() {
        let alone = find_parser_answer(PARSER_400).expect("found");
        assert_eq!(alone.start, 0);
        assert_eq!(alone.len, PARSER_400.len());
        assert_eq!(alone.status, StatusCode::BAD_REQUEST);

        let pipelined = [SERVICE_404, SERVICE_200, PARSER_400].concat();
        let after = find_parser_answer(&pipelined).expect("found");
        assert_eq!(after.start, SERVICE_404.len() + SERVICE_200.len());
        assert_eq!(after.len, PARSER_400.len());
    }

    #[test]
    fn ignores_answers_with_a_body_or_kept_alive_and_other_statuses() {
        assert_eq!(find_parser_answer(SERVICE_200), None);
        assert_eq!(find_parser_answer(SERVICE_404), None);
        let kept_alive = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(find_parser_answer(kept_alive), None);
        let other = b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(find_parser_answer(other), None);
        // A head cut short is not recognised (and passes through untouched).
        assert_eq!(find_parser_answer(&PARSER_400[..40]), None);
    }

    #[test]
    fn the_json_answer_keeps_status_and_headers_and_adds_the_body() {
        let answer = json_answer(PARSER_400, StatusCode::BAD_REQUEST);
        let text = String::from_utf8(answer).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(
            head.contains("\r\ndate: Sat, 21 Nov 2026 09:30:03 GMT"),
            "{head}"
        );
        assert!(
            head.contains("\r\ncontent-type: application/json; charset=utf-8"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let parsed: ErrorBody = serde_json::from_str(body).expect("JSON body");
        assert_eq!(parsed.error, "malformed_request");
    }

    /// Writes `chunks` through the wrapper (vectored or not) and returns what came out.
    async fn through_wrapper(chunks: &[&[u8]], vectored: bool) -> Vec<u8> {
        let (client, server) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut client = client;
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.map(|_| out)
        });
        let mut wrapped = JsonProtocolErrors::new(server);
        if vectored {
            let slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
            let total: usize = chunks.iter().map(|c| c.len()).sum();
            let mut sent = 0;
            while sent < total {
                // Re-slice what is left, as hyper does after a partial write.
                let mut rest = Vec::new();
                let mut skip = sent;
                for s in &slices {
                    if skip >= s.len() {
                        skip -= s.len();
                        continue;
                    }
                    rest.push(IoSlice::new(&s[skip..]));
                    skip = 0;
                }
                sent += wrapped.write_vectored(&rest).await.expect("write");
            }
        } else {
            wrapped.write_all(&chunks.concat()).await.expect("write");
        }
        wrapped.shutdown().await.expect("shutdown");
        drop(wrapped);
        reader.await.expect("join").expect("read")
    }

    #[tokio::test]
    async fn rewrites_the_parser_answer_and_leaves_the_rest_byte_for_byte() {
        for vectored in [false, true] {
            let out = through_wrapper(&[SERVICE_200, SERVICE_404, PARSER_400], vectored).await;
            let expected_prefix = [SERVICE_200, SERVICE_404].concat();
            assert!(out.starts_with(&expected_prefix), "vectored={vectored}");
            let rewritten = &out[expected_prefix.len()..];
            assert_eq!(
                rewritten,
                json_answer(PARSER_400, StatusCode::BAD_REQUEST).as_slice(),
                "vectored={vectored}"
            );
        }
        let untouched = through_wrapper(&[SERVICE_200, SERVICE_404], true).await;
        assert_eq!(untouched, [SERVICE_200, SERVICE_404].concat());
    }
}
