//! Rejects requests that announce a body larger than the service accepts. No operation reads a
//! body, so this only stops clients from making the server receive large uploads. (poem's own
//! `SizeLimit` also rejects every request without `Content-Length`, which GETs do not send.)

use poem::{Endpoint, Error, Middleware, Request, http::StatusCode, http::header};

pub struct BodyLimit {
    max_bytes: u64,
}

impl BodyLimit {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes: max_bytes as u64,
        }
    }
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
    max_bytes: u64,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        if let Some(length) = req.headers().get(header::CONTENT_LENGTH) {
            let length = length
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            match length {
                Some(n) if n <= self.max_bytes => {}
                Some(_) => return Err(Error::from_status(StatusCode::PAYLOAD_TOO_LARGE)),
                None => return Err(Error::from_status(StatusCode::BAD_REQUEST)),
            }
        }
        self.inner.call(req).await
    }
}
