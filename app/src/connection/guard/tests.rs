use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::api::error::ErrorBody;

const LIMITS: Timeouts = Timeouts {
    idle: Duration::from_secs(60),
    request: Duration::from_secs(15),
};

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_after_the_idle_limit() {
    let (_client, server) = tokio::io::duplex(64);
    let mut conn = ConnectionGuard::new(server, LIMITS);
    let started = Instant::now();
    let mut buf = [0u8; 8];
    let err = conn.read(&mut buf).await.expect_err("times out");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), LIMITS.idle);
}

#[tokio::test(start_paused = true)]
async fn answered_traffic_keeps_the_connection_open_and_restarts_the_idle_clock() {
    let (mut client, server) = tokio::io::duplex(64);
    let mut conn = ConnectionGuard::new(server, LIMITS);
    let mut buf = [0u8; 8];
    // A request every 40 s for 4 minutes, each answered at once: never 60 s of silence,
    // never a request unanswered for 15 s.
    let talker = tokio::spawn(async move {
        let mut answer = [0u8; 1];
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(40)).await;
            client.write_all(b"x").await.expect("write");
            client.read_exact(&mut answer).await.expect("answer");
        }
        client
    });
    for _ in 0..6 {
        assert_eq!(conn.read(&mut buf).await.expect("read"), 1);
        conn.write_all(b"y").await.expect("answer");
    }
    let _client = talker.await.expect("join");
    let last = Instant::now();
    let err = conn.read(&mut buf).await.expect_err("times out");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(last.elapsed(), LIMITS.idle);
}

/// Sends `piece` every `every` until the guard cuts the connection off; returns the error
/// the guard's read ended with, how long after the start, and what the client read back.
async fn drip_until_cut_off(
    piece: &'static [u8],
    every: Duration,
) -> (io::Error, Duration, String) {
    let (client, server) = tokio::io::duplex(4096);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let mut conn = ConnectionGuard::new(server, LIMITS);
    let dripper = tokio::spawn(async move {
        for _ in 0..120 {
            if client_write.write_all(piece).await.is_err() {
                break;
            }
            tokio::time::sleep(every).await;
        }
    });
    let started = Instant::now();
    let mut buf = [0u8; 8];
    let err = loop {
        match conn.read(&mut buf).await {
            Ok(_) => continue,
            Err(err) => break err,
        }
    };
    let elapsed = started.elapsed();
    drop(conn);
    let mut answer = String::new();
    client_read.read_to_string(&mut answer).await.expect("read");
    dripper.abort();
    (err, elapsed, answer)
}

#[tokio::test(start_paused = true)]
async fn a_request_dripped_byte_by_byte_is_cut_off_with_a_408() {
    // A byte every 5 s: never idle, but the request never completes.
    let (err, elapsed, answer) = drip_until_cut_off(b"G", Duration::from_secs(5)).await;
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(elapsed, LIMITS.request);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let body: ErrorBody = serde_json::from_str(body).expect("JSON body");
    assert_eq!(body.error, "request_timeout");
}

#[tokio::test(start_paused = true)]
async fn empty_lines_are_not_progress_and_start_the_request_deadline() {
    // A bare line end every second: before, this kept a connection open for ever.
    let (err, elapsed, answer) = drip_until_cut_off(b"\r\n", Duration::from_secs(1)).await;
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(elapsed, LIMITS.request);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
}

#[tokio::test(start_paused = true)]
async fn an_endless_header_section_is_refused_with_a_json_431() {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let mut conn = ConnectionGuard::new(server, LIMITS);
    client_write
        .write_all(b"GET / HTTP/1.1\r\n")
        .await
        .expect("write");
    let filler = format!("X-Filler: {}\r\n", "a".repeat(1000));
    for _ in 0..100 {
        client_write
            .write_all(filler.as_bytes())
            .await
            .expect("write");
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut taken = 0;
    let err = loop {
        match conn.read(&mut buf).await {
            Ok(n) => taken += n,
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        taken <= crate::connection::MAX_HEAD,
        "{taken} bytes handed on"
    );
    drop(conn);
    drop(client_write);
    let mut answer = String::new();
    client_read.read_to_string(&mut answer).await.expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let body: ErrorBody = serde_json::from_str(body).expect("JSON body");
    assert_eq!(body.error, "request_header_fields_too_large");
}

#[tokio::test(start_paused = true)]
async fn reading_pauses_at_the_byte_bound_until_the_answer_starts() {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let mut conn = ConnectionGuard::new(server, LIMITS);
    // Pipelined requests, more bytes of them than may be read before an answer.
    let request = b"GET /transactions/AR1133 HTTP/1.1\r\nHost: x\r\n\r\n";
    let pipelined = request.repeat(2 * crate::connection::MAX_UNANSWERED / request.len());
    client.write_all(&pipelined).await.expect("write");
    let mut buf = vec![0u8; 1 << 20];
    let mut taken = 0;
    while taken < crate::connection::MAX_UNANSWERED {
        taken += conn.read(&mut buf).await.expect("read");
    }
    assert_eq!(taken, crate::connection::MAX_UNANSWERED);
    // Nothing more until an answer: the read waits (here, for the request deadline).
    let paused = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await;
    assert!(paused.is_err(), "read past the bound");
    conn.write_all(b"HTTP/1.1 200 OK\r\n")
        .await
        .expect("answer");
    let n = conn.read(&mut buf).await.expect("read after the answer");
    assert!(n > 0);
}
