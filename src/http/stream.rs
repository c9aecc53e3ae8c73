//! Response bodies rendered on a blocking thread and sent as they are written, chunk by chunk, so that
//! a scrape holds a few chunks rather than the whole exposition (at 90,510 series the identity text is
//! about 52 MiB, and heaptrack saw its buffer as the largest allocation of the memory soak). Compressed
//! bodies are compressed on a second blocking thread while the first renders.
//!
//! A body is complete only if the render reached its end: a body whose render stopped (a panic) ends
//! with an error, which cuts the connection instead of ending the chunked body cleanly, so a scraper
//! never takes a truncated exposition for a whole one.

use crate::shared::gzip::GzipStream;
use bytes::Bytes;
use http_body::{Body, Frame};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Text is handed on once a render has written at least this much.
pub(super) const CHUNK: usize = 256 * 1024;

/// Chunks in flight between the render, the compressor and the connection.
const IN_FLIGHT: usize = 2;

/// What a render thread sends.
#[derive(Debug)]
enum Piece {
    Data(Bytes),
    /// The render reached its end: the body is complete.
    End,
}

/// Why a body stopped early.
#[derive(Debug, thiserror::Error)]
#[error("the render stopped before the end of the body (a panic); the response is cut")]
pub(super) struct Cut;

/// The body of a streamed response.
#[derive(Debug)]
pub(super) struct Streamed {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Piece>,
    done: bool,
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let piece = std::task::ready!(self.rx.poll_recv(cx));
        Poll::Ready(match piece {
            Some(Piece::Data(bytes)) => Some(Ok(Frame::data(bytes))),
            Some(Piece::End) => {
                self.done = true;
                None
            }
            None => {
                self.done = true;
                Some(Err(Cut))
            }
        })
    }
}

/// Where a render writes: [`Chunks::take`] empties its text into the body (compressed or not) and
/// counts the bytes sent.
pub struct Chunks {
    out: Out,
    sent: u64,
}

enum Out {
    Plain(mpsc::Sender<Piece>),
    Gzip(std::sync::mpsc::SyncSender<String>),
    /// The client went away: the rest of the render is discarded.
    Gone,
}

impl Chunks {
    /// Hands `text` on and empties it.
    pub fn take(&mut self, text: &mut String) {
        if text.is_empty() {
            return;
        }
        let sent = match &self.out {
            Out::Plain(tx) => {
                let bytes = Bytes::from(std::mem::take(text).into_bytes());
                let n = bytes.len();
                tx.blocking_send(Piece::Data(bytes)).is_ok().then_some(n)
            }
            Out::Gzip(tx) => tx.send(std::mem::take(text)).is_ok().then_some(0),
            Out::Gone => None,
        };
        match sent {
            Some(n) => self.sent += n as u64,
            None => {
                self.out = Out::Gone;
                text.clear();
            }
        }
    }

    /// The render reached its end: the rest of `text`, then the end of the body. Identity bytes sent.
    fn finish(mut self, text: &mut String) -> u64 {
        self.take(text);
        if let Out::Plain(tx) = &self.out {
            let _ = tx.blocking_send(Piece::End);
        }
        // A compressed body ends when the compressor reads the end mark `start` sends after this.
        self.sent
    }
}

/// Compresses the text chunks of `rx` into one gzip stream sent to `tx`, then ends the body, unless the
/// render stopped early (its sender dropped without the end mark). Compressed bytes sent.
fn compress(rx: std::sync::mpsc::Receiver<String>, tx: mpsc::Sender<Piece>) -> u64 {
    let mut stream = GzipStream::default();
    let mut sent = 0;
    let mut send = |bytes: Vec<u8>| {
        sent += bytes.len() as u64;
        bytes.is_empty() || tx.blocking_send(Piece::Data(Bytes::from(bytes))).is_ok()
    };
    while let Ok(text) = rx.recv() {
        if text.is_empty() {
            // The render's end mark (a chunk is never empty).
            if send(stream.finish()) {
                let _ = tx.blocking_send(Piece::End);
            }
            return sent;
        }
        if !send(stream.write(text.as_bytes())) {
            break;
        }
    }
    sent
}

/// A render running on blocking threads, its body not yet answered.
pub(super) struct Rendering {
    rx: mpsc::Receiver<Piece>,
    /// Bytes sent, known once the render and the compressor are done (for `http_response_bytes`).
    pub(super) sent: tokio::task::JoinHandle<u64>,
}

/// Starts `render` on a blocking thread, writing into [`Chunks`] (gzip-compressed on a second thread if
/// `compress`). `render` gets a buffer to write into and the chunks to hand it to.
pub(super) fn start<F>(render: F, compress_it: bool) -> Rendering
where
    F: FnOnce(&mut String, &mut Chunks) + Send + 'static,
{
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let sent = if compress_it {
        let (text_tx, text_rx) = std::sync::mpsc::sync_channel::<String>(IN_FLIGHT);
        let compressor = tokio::task::spawn_blocking(move || compress(text_rx, tx));
        let renderer = tokio::task::spawn_blocking(move || {
            run(render, Out::Gzip(text_tx.clone()));
            // The end mark, sent only once the render returned (a panic drops the sender unsent).
            let _ = text_tx.send(String::new());
        });
        tokio::spawn(async move {
            let _ = renderer.await;
            compressor.await.unwrap_or(0)
        })
    } else {
        tokio::task::spawn_blocking(move || run(render, Out::Plain(tx)))
    };
    Rendering { rx, sent }
}

fn run<F: FnOnce(&mut String, &mut Chunks)>(render: F, out: Out) -> u64 {
    let mut chunks = Chunks { out, sent: 0 };
    let mut text = String::with_capacity(CHUNK + CHUNK / 4);
    render(&mut text, &mut chunks);
    chunks.finish(&mut text)
}

impl Rendering {
    /// The body, once its first piece is there; `None` if the render stopped before writing anything
    /// (answered 500: a 200 with an empty body would make a scraper take every series as gone).
    pub(super) async fn body(mut self) -> Option<(Streamed, tokio::task::JoinHandle<u64>)> {
        let (first, done) = match self.rx.recv().await? {
            Piece::Data(bytes) => (Some(bytes), false),
            Piece::End => (None, true),
        };
        let body = Streamed {
            first,
            rx: self.rx,
            done,
        };
        Some((body, self.sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn collect(rendering: Rendering) -> Option<Result<Vec<u8>, Cut>> {
        let (body, _) = rendering.body().await?;
        Some(body.collect().await.map(|c| c.to_bytes().to_vec()))
    }

    fn lines(n: usize) -> impl FnOnce(&mut String, &mut Chunks) + Send {
        move |text, chunks| {
            for i in 0..n {
                text.push_str(&format!("up{{i=\"{i}\"}} 1\n"));
                if text.len() >= CHUNK {
                    chunks.take(text);
                }
            }
        }
    }

    fn expected(n: usize) -> String {
        (0..n).map(|i| format!("up{{i=\"{i}\"}} 1\n")).collect()
    }

    #[tokio::test]
    async fn a_body_is_the_whole_render_in_either_encoding() {
        let n = 200_000; // about 3 MiB: many chunks
        let plain = collect(start(lines(n), false)).await.unwrap().unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), expected(n));
        let packed = collect(start(lines(n), true)).await.unwrap().unwrap();
        let mut unpacked = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(&packed[..]),
            &mut unpacked,
        )
        .unwrap();
        assert_eq!(unpacked, expected(n));
        assert!(packed.len() * 5 < unpacked.len(), "{}", packed.len());
    }

    #[tokio::test]
    async fn a_render_that_panics_gives_no_body_or_a_cut_one() {
        for compress in [false, true] {
            let before = start(|_, _| panic!("a bug in rendering"), compress);
            assert!(collect(before).await.is_none(), "compress {compress}");
            let midway = start(
                |text, chunks| {
                    lines(50_000)(text, chunks);
                    panic!("a bug in rendering");
                },
                compress,
            );
            let cut = collect(midway).await.unwrap();
            assert!(
                cut.is_err(),
                "compress {compress}: the body must not end cleanly"
            );
        }
    }

    #[tokio::test]
    async fn the_bytes_sent_are_counted_in_the_encoding_sent() {
        let rendering = start(lines(1_000), false);
        let (body, sent) = rendering.body().await.unwrap();
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(sent.await.unwrap(), bytes.len() as u64);
        let rendering = start(lines(1_000), true);
        let (body, sent) = rendering.body().await.unwrap();
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(sent.await.unwrap(), bytes.len() as u64);
    }
}
