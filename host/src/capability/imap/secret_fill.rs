//! The stream under async-imap that fills in the password at the last moment.
//!
//! async-imap writes every command through a `trace`-level log line, LOGIN and AUTHENTICATE
//! included: handed the password, it would log it whenever someone turns tracing up. So it is
//! never handed the password. It gets a random token instead, and [`SecretFill`] replaces that
//! token by the real bytes in the one write that carries it, below async-imap and above TLS. The
//! replacement is armed for one command and disarmed after it; the secret is never logged and
//! never in this type's `Debug`.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that replaces one armed token by a secret in what is written.
pub struct SecretFill<S> {
    inner: S,
    armed: Option<(Vec<u8>, Vec<u8>)>,
    /// Bytes accepted from the caller (with the secret filled in) not yet written to `inner`.
    pending: Vec<u8>,
    written: usize,
}

impl<S> SecretFill<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            armed: None,
            pending: Vec::new(),
            written: 0,
        }
    }

    /// Replace `token` by `secret` in the next write that holds it.
    pub fn arm(&mut self, token: &str, secret: Vec<u8>) {
        self.armed = Some((token.as_bytes().to_vec(), secret));
    }

    /// Forget an armed replacement that was never used.
    pub fn disarm(&mut self) {
        self.armed = None;
    }
}

impl<S> fmt::Debug for SecretFill<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFill")
            .field("armed", &self.armed.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncWrite + Unpin> SecretFill<S> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        // The filled-in command is out: don't keep the secret around.
        self.pending.clear();
        self.pending.shrink_to_fit();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SecretFill<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let at = this
            .armed
            .as_ref()
            .and_then(|(token, _)| find(buf, token).map(|at| (at, token.len())));
        if let Some((at, len)) = at {
            let (_, secret) = this.armed.take().expect("armed");
            this.pending.reserve(buf.len() - len + secret.len());
            this.pending.extend_from_slice(&buf[..at]);
            this.pending.extend_from_slice(&secret);
            this.pending.extend_from_slice(&buf[at + len..]);
            // The whole buffer is accepted; what the socket doesn't take now goes out before
            // the next write or on flush.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SecretFill<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn armed_token_is_replaced_once_and_other_writes_pass_unchanged() {
        let mut fill = SecretFill::new(Vec::new());
        fill.arm("TOKEN123", b"s3cr\"et".to_vec());
        fill.write_all(b"A1 LOGIN \"bob\" \"TOKEN123\"")
            .await
            .unwrap();
        fill.write_all(b"\r\n").await.unwrap();
        fill.write_all(b"A2 NOOP TOKEN123\r\n").await.unwrap();
        fill.flush().await.unwrap();
        assert_eq!(
            String::from_utf8(fill.inner.clone()).unwrap(),
            "A1 LOGIN \"bob\" \"s3cr\"et\"\r\nA2 NOOP TOKEN123\r\n"
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let mut fill = SecretFill::new(());
        fill.arm("T", b"hunter22".to_vec());
        let shown = format!("{fill:?}");
        assert!(!shown.contains("hunter22"), "{shown}");
    }
}
