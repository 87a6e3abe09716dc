//! The API port speaks HTTP/1.1 only: a client that opens with the HTTP/2 connection preface
//! ("prior knowledge" cleartext HTTP/2) is told to use HTTP/1.1 and the connection is closed.
//!
//! poem serves every connection through hyper's automatic protocol detection, and its HTTP/2
//! settings allow unbounded concurrent streams: one connection that opened streams without
//! reading them took a pod past its memory limit. No client of this service needs HTTP/2: the
//! load balancer speaks HTTP/1.1 to the pods, and requests are small and independent. Serving
//! HTTP/2 safely would also mean parsing its frames here, so that PING and empty frames do not
//! keep a connection alive and its errors are JSON. Refusing it is the smaller surface;
//! `docs/operations.md` has the reasoning.
//!
//! The refusal is HTTP/2's own: the server's SETTINGS frame, then GOAWAY with
//! `HTTP_1_1_REQUIRED`, its debug data the JSON error body. Clients such as curl retry over
//! HTTP/1.1 on that code.
//!
//! The first bytes of a connection are held back while they could still be the preface (at
//! most 24, which is all hyper's detection reads before it decides anyway), and handed on
//! as soon as they cannot.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use poem::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{api::error::connection_error_body, telemetry};

/// The client connection preface of HTTP/2 (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// GOAWAY's error code asking for HTTP/1.1 (RFC 9113, section 7).
const HTTP_1_1_REQUIRED: u32 = 0xd;

enum State {
    /// The first bytes match the preface this far; none has been handed on.
    Sniffing { matched: usize },
    /// Not HTTP/2: everything passes through.
    Http1,
    /// The preface arrived; the refusal is being sent, from this offset.
    Refusing { sent: usize },
    /// The refusal is sent (or could not be): the connection ends.
    Refused,
}

/// A connection that refuses the HTTP/2 preface and passes everything else through.
pub struct Http1Only<S> {
    inner: S,
    state: State,
}

impl<S> Http1Only<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::Sniffing { matched: 0 },
        }
    }
}

/// The server preface (an empty SETTINGS frame) and a GOAWAY frame with `HTTP_1_1_REQUIRED`
/// and the JSON error body as its debug data.
fn refusal() -> Vec<u8> {
    let debug = serde_json::to_vec(&connection_error_body(
        StatusCode::HTTP_VERSION_NOT_SUPPORTED,
    ))
    .unwrap_or_default();
    let mut frames = Vec::with_capacity(9 + 9 + 8 + debug.len());
    // SETTINGS: length 0, type 0x4, no flags, stream 0.
    frames.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    // GOAWAY: length, type 0x7, no flags, stream 0; last stream 0, the error code, debug data.
    let length = (8 + debug.len()) as u32;
    frames.extend_from_slice(&length.to_be_bytes()[1..]);
    frames.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]);
    frames.extend_from_slice(&0u32.to_be_bytes());
    frames.extend_from_slice(&HTTP_1_1_REQUIRED.to_be_bytes());
    frames.extend_from_slice(&debug);
    frames
}

impl<S: AsyncRead + AsyncWrite + Unpin> Http1Only<S> {
    /// Sends the refusal; ready when all of it is written or the socket failed.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let frames = refusal();
        while let State::Refusing { sent } = &mut self.state {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &frames[*sent..])) {
                Ok(n) if n > 0 && *sent + n < frames.len() => *sent += n,
                _ => self.state = State::Refused,
            }
        }
        // Best effort: the frames are small, and a client that does not read them loses only
        // the explanation.
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        Poll::Ready(())
    }
}

fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "HTTP/2 is not served on this port",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Http1Only<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Http1 => return Pin::new(&mut this.inner).poll_read(cx, buf),
                State::Refused => return Poll::Ready(Err(refused())),
                State::Refusing { .. } => {
                    ready!(this.poll_refusal(cx));
                    return Poll::Ready(Err(refused()));
                }
                State::Sniffing { matched } => {
                    let mut first = [0u8; PREFACE.len()];
                    let mut read = ReadBuf::new(&mut first[..PREFACE.len() - matched]);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                    let got = read.filled();
                    let now = matched + got.len();
                    if !got.is_empty() && got == &PREFACE[matched..now] {
                        if now < PREFACE.len() {
                            this.state = State::Sniffing { matched: now };
                            continue;
                        }
                        telemetry::metrics::malformed_request(
                            StatusCode::HTTP_VERSION_NOT_SUPPORTED.as_u16(),
                        );
                        tracing::debug!("refusing cleartext HTTP/2");
                        this.state = State::Refusing { sent: 0 };
                        continue;
                    }
                    // Not the preface (or the end of the stream): hand on what was held back.
                    // The reader asks for at least the preface's length, as hyper does.
                    if buf.remaining() < now {
                        return Poll::Ready(Err(io::Error::other(
                            "read buffer shorter than the HTTP/2 preface",
                        )));
                    }
                    buf.put_slice(&PREFACE[..matched]);
                    buf.put_slice(got);
                    this.state = State::Http1;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

write_through!(Http1Only);

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::api::error::ErrorBody;

    #[tokio::test]
    async fn the_preface_is_answered_with_goaway_http_1_1_required() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut conn = Http1Only::new(server);
        // Dripped in pieces: held back until it is whole.
        for part in [&PREFACE[..3], &PREFACE[3..20], &PREFACE[20..]] {
            client.write_all(part).await.expect("write");
        }
        let mut buf = [0u8; 64];
        let err = conn.read(&mut buf).await.expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        drop(conn);
        let mut frames = Vec::new();
        client.read_to_end(&mut frames).await.expect("read");
        assert_eq!(&frames[..9], &[0, 0, 0, 0x4, 0, 0, 0, 0, 0], "SETTINGS");
        let goaway = &frames[9..];
        let length = u32::from_be_bytes([0, goaway[0], goaway[1], goaway[2]]) as usize;
        assert_eq!(goaway[3], 0x7, "GOAWAY");
        assert_eq!(goaway.len(), 9 + length);
        assert_eq!(&goaway[13..17], &HTTP_1_1_REQUIRED.to_be_bytes());
        let body: ErrorBody = serde_json::from_slice(&goaway[17..]).expect("JSON debug data");
        assert_eq!(body.error, "http_version_not_supported");
    }

    #[tokio::test]
    async fn http1_passes_through_whole_even_when_it_starts_like_the_preface() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut conn = Http1Only::new(server);
        client.write_all(b"PR").await.expect("write");
        client
            .write_all(b"OPFIND / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        drop(client);
        let mut seen = Vec::new();
        conn.read_to_end(&mut seen).await.expect("read");
        assert_eq!(seen, b"PROPFIND / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_client_that_closes_mid_preface_gets_its_bytes_then_the_end() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut conn = Http1Only::new(server);
        client.write_all(b"PRI * ").await.expect("write");
        drop(client);
        let mut seen = Vec::new();
        conn.read_to_end(&mut seen).await.expect("read");
        assert_eq!(seen, b"PRI * ");
    }
}
