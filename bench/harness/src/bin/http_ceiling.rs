//! The HTTP library's own ceiling on one runtime thread: hyper's HTTP/1.1 server, with nothing
//! else, answering every request with a fixed JSON body of the size the service's answers have.
//!
//! `bench/run.sh` loads it beside the service, nginx and Redis. The service's stack (poem,
//! poem-openapi, the ledger) does its work on top of this, so the gap between this row and
//! `GET /version` is what the framework costs per request, and this row bounds what any
//! handler on the same library and thread count can reach.
//!
//! Usage: `http-ceiling PORT` (listens on 127.0.0.1 only).

use std::{convert::Infallible, process::ExitCode};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, header, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

/// About as long as a POST's answer (`{"route": ..., "transactions": ...}`).
const BODY: &[u8] = br#"{"route":"AR1133","transactions":1234567}"#;

async fn answer(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Ok(response)
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // A client that goes away mid-request ends its connection; nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

fn main() -> ExitCode {
    let Some(port) = std::env::args().nth(1).and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: http-ceiling PORT");
        return ExitCode::from(2);
    };
    // One thread, as the service runs in the benchmark.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("http-ceiling: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("http-ceiling: {err}");
            ExitCode::FAILURE
        }
    }
}
