//! The HTTP client of OTLP over http/protobuf: the daemon's own reqwest (rustls, the system's roots),
//! so that exporting adds no second HTTP or TLS stack.

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use std::time::Duration;

/// The most of a collector's answer that is read.
const MAX_ANSWER: usize = 1 << 20;

/// reqwest, as the exporter's client.
#[derive(Debug)]
pub struct Client(reqwest::Client);

impl Client {
    /// A client whose requests end after `timeout`.
    pub fn new(timeout: Duration) -> Result<Client, reqwest::Error> {
        reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(Client)
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let mut answer = self.0.execute(request).await?;
        let mut response = Response::builder().status(answer.status());
        if let Some(headers) = response.headers_mut() {
            *headers = std::mem::take(answer.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("the collector's answer is over {MAX_ANSWER} bytes").into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(response.body(Bytes::from(body))?)
    }
}
