//! A discard SMTP listener in the harness: plaintext on 127.0.0.1, it greets, answers EHLO/HELO,
//! MAIL, RCPT, RSET, NOOP with 2xx, DATA with 354, reads the message until the final `.` and
//! drops it, answers 250, and closes after QUIT's 221. No TLS, no AUTH, no checks.
//!
//! It is what `overhead` sends to, from the plugin path and from bare lettre alike, so that both
//! sides pay the same loopback SMTP dialogue and the difference between them is the plugin
//! design's. It runs on its own thread and tokio runtime, so its work does not queue behind the
//! measured sends' tasks; every reply is one write and `TCP_NODELAY` is set, so no reply waits
//! for a delayed ACK (see the `tcp` subcommand).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use aho_corasick::AhoCorasick;
use anyhow::{Context, Result};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The end of the message: `CRLF . CRLF` (RFC 5321 §4.1.1.4).
const END_OF_DATA: &[u8] = b"\r\n.\r\n";

/// What the sink has taken in.
#[derive(Default)]
struct Counts {
    /// The size of the last message, as it came over the wire (dot-stuffed, without the final
    /// `.` line).
    last_message_bytes: AtomicU64,
}

/// The running sink; stopped (and its thread joined) when dropped.
pub struct Sink {
    port: u16,
    counts: Arc<Counts>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Listen on 127.0.0.1 on a free port.
    pub fn start() -> Result<Sink> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("bind the sink to 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let finder = Arc::new(AhoCorasick::new([END_OF_DATA])?);
        let thread = std::thread::Builder::new()
            .name("smtp-sink".into())
            .spawn({
                let counts = counts.clone();
                move || runtime.block_on(serve(listener, counts, finder, stopped))
            })?;
        Ok(Sink {
            port,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The size of the last message taken in, as sent.
    pub fn last_message_bytes(&self) -> u64 {
        self.counts.last_message_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    counts: Arc<Counts>,
    finder: Arc<AhoCorasick>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("sink: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (counts, finder) = (counts.clone(), finder.clone());
                    tokio::spawn(async move {
                        if let Err(e) = session(stream, &counts, &finder).await {
                            eprintln!("sink: {peer}: {e}");
                        }
                    });
                }
                Err(e) => eprintln!("sink: accept: {e}"),
            },
        }
    }
}

/// One SMTP session, until QUIT or the client closes.
async fn session(stream: TcpStream, counts: &Counts, finder: &AhoCorasick) -> Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(256 * 1024, read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .split(|b| b.is_ascii_whitespace())
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_slice() {
            b"EHLO" => b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            b"HELO" => b"250 sink\r\n",
            b"MAIL" => b"250 2.1.0 Ok\r\n",
            b"RCPT" => b"250 2.1.5 Ok\r\n",
            b"RSET" | b"NOOP" => b"250 2.0.0 Ok\r\n",
            b"DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let bytes = discard_data(&mut read, finder).await?;
                counts
                    .last_message_bytes
                    .store(bytes as u64, Ordering::Relaxed);
                b"250 2.0.0 Ok: discarded\r\n"
            }
            b"QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// Read and drop the message after DATA's 354, through its final `.` line; the message's
/// bytes (its last CRLF included, the `.` line not). The CRLF that ended the DATA line counts as the terminator's
/// first two bytes, so an empty message (a `.` line at once) ends it too.
async fn discard_data<R: AsyncBufRead + Unpin>(
    read: &mut R,
    finder: &AhoCorasick,
) -> Result<usize> {
    // The last (at most 4) bytes seen: a terminator may span two reads.
    let mut carry: Vec<u8> = b"\r\n".to_vec();
    let mut taken = 0;
    loop {
        let buf = read.fill_buf().await?;
        if buf.is_empty() {
            anyhow::bail!("the client closed the connection inside DATA");
        }
        // A terminator that starts in `carry` ends in the first 4 bytes of `buf`.
        let mut joined = carry.clone();
        joined.extend_from_slice(&buf[..buf.len().min(END_OF_DATA.len() - 1)]);
        let end = match finder.find(&joined) {
            Some(m) => Some(m.end() - carry.len()),
            None => finder.find(buf).map(|m| m.end()),
        };
        if let Some(end) = end {
            read.consume(end);
            // The first two bytes of `carry` were never the message's.
            return Ok((taken + end).saturating_sub(END_OF_DATA.len() - 2));
        }
        let n = buf.len();
        carry = if n >= END_OF_DATA.len() - 1 {
            buf[n - (END_OF_DATA.len() - 1)..].to_vec()
        } else {
            let mut c = carry.clone();
            c.extend_from_slice(buf);
            c[c.len().saturating_sub(END_OF_DATA.len() - 1)..].to_vec()
        };
        read.consume(n);
        taken += n;
    }
}
