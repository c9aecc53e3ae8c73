//! `hestyna-obsd healthcheck`: one plain-HTTP GET of a probe path, for container health checks in an
//! image without a shell or curl. Exit 0 on 200, 1 otherwise.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// The URL is not `http://host:port/path` (the port is required).
    #[error(
        "{url:?} is not an http://host:port/path URL (TLS listeners: probe http.health_listen)"
    )]
    BadUrl {
        /// The URL given.
        url: String,
    },
    /// The connection or the exchange failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL probed.
        url: String,
        /// The error.
        source: std::io::Error,
    },
    /// The answer was not `200`.
    #[error("{url} answered {status:?}")]
    Status {
        /// The URL probed.
        url: String,
        /// The status line.
        status: String,
    },
}

/// GETs `url` within `timeout`; `Ok` when it answers 200.
pub fn probe(url: &str, timeout: Duration) -> Result<(), HealthcheckError> {
    let bad = || HealthcheckError::BadUrl { url: url.into() };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !authority.contains(':') {
        return Err(bad());
    }
    let path = if path.is_empty() { "/" } else { path };
    let io = |source| HealthcheckError::Io {
        url: url.into(),
        source,
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(bad)?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    // The status line is all we need; 512 bytes hold it.
    let mut head = [0u8; 512];
    let n = stream.read(&mut head).map_err(io)?;
    let text = String::from_utf8_lossy(&head[..n]);
    let status = text.lines().next().unwrap_or("").to_owned();
    match status.split(' ').nth(1) {
        Some("200") => Ok(()),
        _ => Err(HealthcheckError::Status {
            url: url.into(),
            status,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_probed() {
        for url in ["https://127.0.0.1:9464/livez", "127.0.0.1:9464", "http://"] {
            let e = probe(url, Duration::from_millis(100)).unwrap_err();
            assert!(matches!(e, HealthcheckError::BadUrl { .. }), "{url}: {e}");
        }
    }

    #[test]
    fn a_closed_port_and_a_non_200_answer_fail() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for answer in [
                "HTTP/1.1 503 Service Unavailable\r\n\r\n",
                "HTTP/1.1 200 OK\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        let url = format!("http://{addr}/readyz");
        let e = probe(&url, Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("503"), "{e}");
        probe(&url, Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = probe(&format!("http://{closed}/livez"), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, HealthcheckError::Io { .. }), "{e}");
    }
}
