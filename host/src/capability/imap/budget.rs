//! The stream under async-imap that bounds what a server may send in answer to one command.
//!
//! async-imap buffers a response whole before parsing it (up to 512 MiB), and the host gathers
//! a command's untagged data, so a server answering LIST with millions of lines, or one line
//! without end, would grow the host as far as it liked. [`Budgeted`] allows the server
//! [`MAX_ANSWER_BYTES`] of reading after each thing the host writes; past that the read fails,
//! the command fails, and the session is broken. It sits right on the TCP stream, so the budget
//! counts bytes as they arrive (TLS's framing adds a few percent), before any buffering.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a server may send in answer to one command (or between two writes of the host).
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// A stream that allows at most [`MAX_ANSWER_BYTES`] of reading after each write.
#[derive(Debug)]
pub struct Budgeted<S> {
    inner: S,
    remaining: usize,
}

impl<S> Budgeted<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            remaining: MAX_ANSWER_BYTES,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.remaining == 0 {
            return Poll::Ready(Err(over_budget()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        if read > self.remaining {
            self.remaining = 0;
            return Poll::Ready(Err(over_budget()));
        }
        self.remaining -= read;
        Poll::Ready(Ok(()))
    }
}

fn over_budget() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the server sent more than {} MiB in answer to one command",
            MAX_ANSWER_BYTES >> 20
        ),
    )
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        if written > 0 {
            self.remaining = MAX_ANSWER_BYTES;
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reading_stops_at_the_budget_and_a_write_renews_it() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut client = Budgeted::new(client);
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 1 << 16];
            for _ in 0..(MAX_ANSWER_BYTES >> 16) + 4 {
                if server.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            server
        });
        let mut sink = vec![0u8; 1 << 16];
        let mut total = 0usize;
        let error = loop {
            match client.read(&mut sink).await {
                Ok(n) => total += n,
                Err(e) => break e,
            }
        };
        assert!(total <= MAX_ANSWER_BYTES, "{total} bytes read");
        assert!(error.to_string().contains("MiB in answer to one command"));
        client.write_all(b"a NOOP\r\n").await.unwrap();
        assert!(
            client.read(&mut sink).await.is_ok(),
            "a write renews the budget"
        );
        drop(writer);
    }
}
