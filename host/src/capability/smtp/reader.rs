//! The byte cap between the SMTP client and the connection: every reply the server sends is
//! counted here, on the decrypted stream and before anything buffers it, so a server (or
//! anything on the path before TLS) that never ends a line or a reply costs the host a fixed
//! few KiB, not memory without bound.
//!
//! | limit | bytes | why |
//! |---|---|---|
//! | one reply line, without its LF | [`MAX_LINE_BYTES`] (4 KiB) | RFC 5321 §4.5.3.1.5 allows 512 octets; real servers exceed that a little (long 5xx texts with URLs), and lettre refuses a line over 1000 bytes once read, so 4 KiB never refuses a reply lettre would take |
//! | one whole reply, every line | [`MAX_REPLY_BYTES`] (64 KiB) | the largest real reply is an EHLO list of well under 1 KiB |
//!
//! Over a limit, the read fails with [`ReplyTooLong`] and the guard stays broken: every later
//! read and write fails too, so nothing more is sent on that connection. It never inspects or
//! changes what the client writes (the message, credentials), and never logs what it reads.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes of one reply line before its LF.
pub const MAX_LINE_BYTES: usize = 4 << 10;
/// The most bytes of one reply, all its lines and line ends.
pub const MAX_REPLY_BYTES: usize = 64 << 10;

/// Which limit a server's reply went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyTooLong {
    Line,
    Reply,
}

impl std::fmt::Display for ReplyTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyTooLong::Line => write!(
                f,
                "the server's reply line exceeded {MAX_LINE_BYTES} bytes; the connection was dropped"
            ),
            ReplyTooLong::Reply => write!(
                f,
                "the server's reply exceeded {MAX_REPLY_BYTES} bytes; the connection was dropped"
            ),
        }
    }
}

impl std::error::Error for ReplyTooLong {}

impl ReplyTooLong {
    fn io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The overrun behind an error, wherever in its chain of causes (lettre wraps the I/O
    /// error the guard returned).
    pub fn find(e: &(dyn std::error::Error + 'static)) -> Option<ReplyTooLong> {
        let mut next = Some(e);
        while let Some(e) = next {
            if let Some(overrun) = e.downcast_ref::<ReplyTooLong>() {
                return Some(*overrun);
            }
            if let Some(inner) = e
                .downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<ReplyTooLong>())
            {
                return Some(*inner);
            }
            next = e.source();
        }
        None
    }
}

/// Counts reply bytes as they arrive: the current line's length and first bytes, and the
/// current reply's length. A reply ends with a line whose 4th byte is not `-` (`250 ok`, or a
/// malformed short line, which the parser above refuses).
#[derive(Debug, Default, Clone)]
struct Tally {
    line: usize,
    /// Whether the current line's 4th byte is `-` (a continuation line).
    continued: bool,
    reply: usize,
}

impl Tally {
    fn count(&mut self, bytes: &[u8]) -> Result<(), ReplyTooLong> {
        for &byte in bytes {
            self.reply += 1;
            if byte == b'\n' {
                if !self.continued {
                    self.reply = 0;
                }
                self.line = 0;
                self.continued = false;
                continue;
            }
            if self.line == 3 {
                self.continued = byte == b'-';
            }
            self.line += 1;
            if self.line > MAX_LINE_BYTES {
                return Err(ReplyTooLong::Line);
            }
            if self.reply > MAX_REPLY_BYTES {
                return Err(ReplyTooLong::Reply);
            }
        }
        Ok(())
    }
}

/// A connection (TCP, or TLS over TCP) whose reads are capped per reply line and per reply.
/// It may first replay a few bytes of its own: the greeting lettre expects before its EHLO,
/// after a STARTTLS the host ran itself.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    peer: SocketAddr,
    replay: &'static [u8],
    tally: Tally,
    broken: Option<ReplyTooLong>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, peer: SocketAddr) -> Self {
        Self {
            inner,
            peer,
            replay: b"",
            tally: Tally::default(),
            broken: None,
        }
    }

    /// The same, reading `replay` before the first byte from the connection.
    pub fn replaying(inner: S, peer: SocketAddr, replay: &'static [u8]) -> Self {
        Self {
            replay,
            ..Self::new(inner, peer)
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(overrun) = this.broken {
            return Poll::Ready(Err(overrun.io()));
        }
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay = &this.replay[n..];
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Err(overrun) = this.tally.count(&buf.filled()[before..]) {
            this.broken = Some(overrun);
            return Poll::Ready(Err(overrun.io()));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(overrun) = this.broken {
            return Poll::Ready(Err(overrun.io()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(overrun) = this.broken {
            return Poll::Ready(Err(overrun.io()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing is allowed even when broken: it sends nothing the server could act on.
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S> lettre::transport::smtp::client::AsyncTokioStream for Guarded<S>
where
    S: AsyncRead + AsyncWrite + Send + Sync + Unpin + std::fmt::Debug,
{
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_without_an_end_is_cut_at_the_line_cap() {
        let mut tally = Tally::default();
        assert_eq!(tally.count(&[b'x'; MAX_LINE_BYTES]), Ok(()));
        assert_eq!(tally.count(b"x"), Err(ReplyTooLong::Line));
    }

    #[test]
    fn line_ends_reset_the_line_cap_and_reply_ends_reset_the_reply_cap() {
        let mut tally = Tally::default();
        let mut line = b"250 ".to_vec();
        line.extend(vec![b'x'; MAX_LINE_BYTES - 5]);
        line.extend_from_slice(b"\r\n");
        // Many whole replies, each near the line cap: never over.
        for _ in 0..100 {
            assert_eq!(tally.count(&line), Ok(()));
        }
    }

    #[test]
    fn continuation_lines_count_toward_one_reply() {
        let mut tally = Tally::default();
        let line = b"250-a continuation line of a reply that never ends\r\n";
        let fits = MAX_REPLY_BYTES / line.len();
        for _ in 0..fits {
            assert_eq!(tally.count(line), Ok(()));
        }
        assert_eq!(tally.count(line), Err(ReplyTooLong::Reply));
        // A last line ends the reply: the next one starts from nothing.
        let mut tally = Tally::default();
        for _ in 0..fits - 1 {
            tally.count(line).unwrap();
        }
        tally.count(b"250 last\r\n").unwrap();
        for _ in 0..fits {
            assert_eq!(tally.count(line), Ok(()));
        }
    }

    #[tokio::test]
    async fn the_guard_stays_broken_for_reads_and_writes() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut server, client) = tokio::io::duplex(1 << 20);
        let peer: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let mut guarded = Guarded::replaying(client, peer, b"220 hi\r\n");
        server
            .write_all(&vec![b'x'; 2 * MAX_LINE_BYTES])
            .await
            .unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let n = guarded.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"220 hi\r\n");
        let e = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(ReplyTooLong::find(&e), Some(ReplyTooLong::Line));
        assert!(e.to_string().contains("exceeded 4096 bytes"), "{e}");
        guarded.write_all(b"QUIT\r\n").await.unwrap_err();
        guarded.read(&mut buf).await.unwrap_err();
    }
}
