//! What hyper refuses before the router sees a request, answered with LXD's envelope.
//!
//! hyper answers a head it cannot parse (400), one too large (431) or a URI too long (414)
//! itself, with an empty body, and closes a connection whose head does not arrive within
//! the header timeout without a word. [`Wire`] wraps a connection's stream: it swallows
//! hyper's bodiless automatic reply (keeping its status) and never closes the stream, so
//! that once hyper is done [`Wire::finish`] writes the envelope (or, for a head cut off
//! by the timeout, a 408) and closes it. The router's own replies always carry a body and
//! pass through untouched.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How long [`Wire::finish`] may take to write the envelope and close the stream.
const FINISH_WITHIN: Duration = Duration::from_secs(5);

struct State<I> {
    io: I,
    /// Bytes arrived since the last reply began: a request head may be half sent.
    partial: bool,
    /// The status of hyper's automatic reply, swallowed.
    refused: Option<u16>,
}

/// A connection's stream as hyper sees it; see the module's doc.
pub struct Wire<I>(Arc<Mutex<State<I>>>);

/// The other end of a [`Wire`], kept by the connection's task.
pub struct Finish<I>(Arc<Mutex<State<I>>>);

impl<I> Wire<I> {
    /// Wrap `io`; the [`Finish`] closes it once hyper has dropped the [`Wire`].
    pub fn new(io: I) -> (Wire<I>, Finish<I>) {
        let s = Arc::new(Mutex::new(State {
            io,
            partial: false,
            refused: None,
        }));
        (Wire(s.clone()), Finish(s))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<I>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The status of hyper's automatic reply when `buf` is one: a 4xx head with
/// `content-length: 0` and nothing after it.
fn automatic_reply(buf: &[u8]) -> Option<u16> {
    let code: u16 = std::str::from_utf8(buf.strip_prefix(b"HTTP/1.1 ")?.get(..3)?)
        .ok()?
        .parse()
        .ok()?;
    if !(400..500).contains(&code) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = buf[..end].to_ascii_lowercase();
    (end == buf.len() && head.windows(21).any(|w| w == b"\r\ncontent-length: 0\r\n"))
        .then_some(code)
}

/// What the client is told for `status`.
fn message(status: u16, header_timeout: Duration) -> String {
    match status {
        400 => "Malformed request: the request line or a header cannot be parsed".into(),
        408 => format!(
            "Request head not received within {} s",
            header_timeout.as_secs()
        ),
        414 => "Request URI too long".into(),
        431 => "Request header fields too large".into(),
        s => StatusCode::from_u16(s)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Request refused")
            .into(),
    }
}

impl<I: AsyncWrite + Unpin> Finish<I> {
    /// Once hyper has ended (`result`) and dropped its [`Wire`]: the envelope for what it
    /// refused, or a 408 for a head the timeout cut off, then the stream closed.
    pub async fn finish(self, result: Result<(), hyper::Error>, header_timeout: Duration) {
        let Ok(state) = Arc::try_unwrap(self.0) else {
            return; // (hyper still holds it: it was dropped mid-way, the stream goes too.)
        };
        let mut s = state.into_inner().unwrap_or_else(PoisonError::into_inner);
        let timed_out = result.as_ref().err().is_some_and(hyper::Error::is_timeout);
        let status = s.refused.or((s.partial && timed_out).then_some(408));
        let io = &mut s.io;
        let _ = tokio::time::timeout(FINISH_WITHIN, async move {
            if let Some(code) = status {
                let body = super::response::error_body(code, &message(code, header_timeout));
                let reason = StatusCode::from_u16(code)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                let head = format!(
                    "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = io.write_all(head.as_bytes()).await;
                let _ = io.write_all(&body).await;
            }
            let _ = io.shutdown().await;
        })
        .await;
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Wire<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.state();
        let before = buf.filled().len();
        let r = Pin::new(&mut s.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            s.partial = true;
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Wire<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.state();
        if s.refused.is_some() {
            return Poll::Ready(Ok(buf.len()));
        }
        if buf.starts_with(b"HTTP/1.") {
            s.partial = false;
            if let Some(code) = automatic_reply(buf) {
                s.refused = Some(code);
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut s.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.state().io).poll_flush(cx)
    }

    /// Flushes only: [`Finish::finish`] closes the stream, after any envelope.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.state().io).poll_flush(cx)
    }

    // Not vectored: hyper then writes each reply's head and body as one buffer, which is
    // what `automatic_reply` looks at.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::automatic_reply;

    #[test]
    fn only_hypers_bodiless_refusals_are_taken_for_automatic_replies() {
        let hyper = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_reply(hyper), Some(400));
        let big = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_reply(big), Some(431));
        let router = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n{\"type\":\"\"}";
        assert_eq!(automatic_reply(router), None);
        let head_only = b"HTTP/1.1 404 Not Found\r\ncontent-length: 90\r\n\r\n";
        assert_eq!(automatic_reply(head_only), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_reply(ok), None);
    }
}
