//! What a connection is held to before and while it is served: a cap per client address, and a deadline
//! on every write.

use super::auth::client_key;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Open connections per client address ([`client_key`]: IPv6 by /64), at most `max` each.
#[derive(Clone)]
pub(super) struct AddressSlots {
    max: usize,
    open: Arc<parking_lot::Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's place; given back when dropped.
pub(super) struct AddressSlot {
    key: IpAddr,
    /// The address held no other connection when this one was taken.
    first: bool,
    open: Arc<parking_lot::Mutex<HashMap<IpAddr, usize>>>,
}

impl AddressSlot {
    /// Whether the address held no other connection when this one was taken.
    pub(super) fn is_first(&self) -> bool {
        self.first
    }
}

impl AddressSlots {
    pub(super) fn new(max: usize) -> Self {
        AddressSlots {
            max,
            open: Arc::default(),
        }
    }

    /// A place for a connection from `ip`, unless it holds `max` already.
    pub(super) fn try_take(&self, ip: IpAddr) -> Option<AddressSlot> {
        let key = client_key(ip);
        let mut open = self.open.lock();
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            key,
            first: *count == 1,
            open: self.open.clone(),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A stream whose writes fail with `TimedOut` once one has waited `limit` for the peer to read: a
/// client that stops reading cannot hold a connection (and its answer) forever.
pub(super) struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Started when a write first had to wait; cleared when one goes through.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub(super) fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            waiting: None,
        }
    }

    /// Maps a pending write to an error once the deadline has passed.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let limit = self.limit;
        let sleep = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read the answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn settle<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Pending => self.pending(cx),
            ready => {
                self.waiting = None;
                ready
            }
        }
    }
}

use std::future::Future as _;

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.settle(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.settle(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.settle(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.settle(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn a_client_address_holds_at_most_its_share() {
        let slots = AddressSlots::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let (one, two) = (slots.try_take(a).unwrap(), slots.try_take(a).unwrap());
        assert!(one.is_first() && !two.is_first());
        assert!(slots.try_take(a).is_none());
        assert!(
            slots
                .try_take("::ffff:127.0.0.2".parse().unwrap())
                .is_none(),
            "IPv4-mapped is the same address"
        );
        assert!(slots.try_take("127.0.0.3".parse().unwrap()).is_some());
        drop(one);
        assert!(slots.try_take(a).is_some());
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let (_x, _y) = (
            slots.try_take(v6("2001:db8::1")).unwrap(),
            slots.try_take(v6("2001:db8::2")).unwrap(),
        );
        assert!(slots.try_take(v6("2001:db8::ffff")).is_none(), "one /64");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_does_not_read_fails_at_its_deadline() {
        // A pipe with a small buffer, whose far end never reads.
        let (near, _far) = tokio::io::duplex(64);
        let mut stream = WriteDeadline::new(near, Duration::from_secs(10));
        let started = tokio::time::Instant::now();
        let error = stream.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
