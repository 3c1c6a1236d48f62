//! The `blobs` interface and the message text the mail capabilities write. An attachment's bytes
//! are read once from its file and shared ([`Bytes`]) by every call that sends them: a plugin
//! gets a `blob` handle in the call's resource table, reads ranges when it needs the bytes
//! itself, and otherwise hands the handle back — to `smtp.send` and `imap.append` inside a
//! [`MessageText`], which this module base64-encodes piece by piece as it is written, or as an
//! `http` request body.
//!
//! So a 30 MB scan exists once in the host and never as a whole inside the plugin, nor as a
//! whole encoded message anywhere.
//!
//! Every line end of the message text is CRLF once it is a [`MessageText`], whoever composed
//! it: a bare LF or a bare CR becomes CRLF. SMTP's dot-stuffing escapes a `.` only after CRLF,
//! so a plugin's `\n.\n` would otherwise reach the wire as is, and a server that takes a bare
//! LF as a line end would see the message end there and the rest as new commands (SMTP
//! smuggling). IMAP APPEND requires CRLF too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use wasmtime::component::{Resource, ResourceTable};

use super::HostState;
use crate::wit::blobs::{Host, HostBlob};
use crate::wit::types::{MessagePart, SendError};

/// What a `blob` handle points at.
#[derive(Debug, Clone)]
pub struct BlobData(pub Bytes);

/// The most one `read` returns.
pub const MAX_READ: u32 = 16 << 20;

impl Host for HostState {}

impl HostBlob for HostState {
    fn size(&mut self, blob: Resource<BlobData>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&blob)?.0.len() as u64)
    }

    fn read(
        &mut self,
        blob: Resource<BlobData>,
        offset: u64,
        length: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        let bytes = &self.table.get(&blob)?.0;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start
            .saturating_add(length.min(MAX_READ) as usize)
            .min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    fn drop(&mut self, blob: Resource<BlobData>) -> wasmtime::Result<()> {
        self.table.delete(blob)?;
        Ok(())
    }
}

/// The bytes behind a handle the plugin passed in. A dangling handle is a host bug (the
/// component model checks handles), so it traps.
pub fn blob_bytes(table: &ResourceTable, blob: &Resource<BlobData>) -> wasmtime::Result<Bytes> {
    Ok(table.get(blob)?.0.clone())
}

/// The largest message a plugin may hand over, encoded: a 30 MB scan is about 41 MB once
/// base64-encoded; no mail server takes much more.
pub const MAX_MESSAGE_BYTES: usize = 100 << 20;

/// Input bytes per base64 line: 57 bytes make 76 characters.
const LINE_INPUT: usize = 57;
/// The most bytes in one piece written.
const PIECE_BYTES: usize = 1 << 20;

/// A message as a plugin handed it to `smtp.send` or `imap.append`: its text, and attachments
/// still in their raw bytes. Its length is known before anything is written (IMAP announces it
/// as a literal), and [`MessageText::pieces`] writes it in pieces of at most 1 MiB.
#[derive(Debug, Clone, Default)]
pub struct MessageText {
    parts: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(Vec<u8>),
    Base64(Bytes),
}

impl MessageText {
    /// Resolves the plugin's parts against this call's table, every text part with CRLF line
    /// ends.
    pub fn from_parts(table: &ResourceTable, parts: Vec<MessagePart>) -> wasmtime::Result<Self> {
        let parts = parts
            .into_iter()
            .map(|part| {
                Ok(match part {
                    MessagePart::Text(text) => Piece::Text(text),
                    MessagePart::Base64(blob) => Piece::Base64(blob_bytes(table, &blob)?),
                })
            })
            .collect::<wasmtime::Result<_>>()?;
        Ok(Self::with_crlf(parts))
    }

    /// `parts` with every text line end CRLF. A text part that ends with a CR and a text part
    /// right after it that starts with a LF make one CRLF, as they would in one part.
    fn with_crlf(parts: Vec<Piece>) -> Self {
        let mut after_cr = false;
        let parts = parts
            .into_iter()
            .map(|part| match part {
                Piece::Text(text) => {
                    let (text, ends_with_cr) = crlf(text, after_cr);
                    after_cr = ends_with_cr;
                    Piece::Text(text)
                }
                Piece::Base64(bytes) => {
                    after_cr = false;
                    Piece::Base64(bytes)
                }
            })
            .collect();
        Self { parts }
    }

    /// The exact number of bytes [`MessageText::pieces`] yields.
    pub fn len(&self) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Piece::Text(text) => text.len(),
                Piece::Base64(bytes) => encoded_len(bytes.len()),
            })
            .fold(0, usize::saturating_add)
    }

    /// The size, encoded, against [`MAX_MESSAGE_BYTES`].
    pub fn check_size(&self) -> Result<(), SendError> {
        let len = self.len();
        if len > MAX_MESSAGE_BYTES {
            return Err(SendError::InvalidMessage(format!(
                "the message is {} MiB; at most {} MiB can be sent",
                len >> 20,
                MAX_MESSAGE_BYTES >> 20
            )));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every byte is ASCII (an encoded attachment always is).
    pub fn is_ascii(&self) -> bool {
        self.parts.iter().all(|part| match part {
            Piece::Text(text) => text.is_ascii(),
            Piece::Base64(_) => true,
        })
    }

    /// The message, in order, in pieces of at most 1 MiB: parts are packed together (a piece per
    /// part would mean small writes, and on a connection without `TCP_NODELAY` a small write
    /// waits for the peer's delayed ACK), and attachments are encoded as they are reached.
    pub fn pieces(&self) -> Pieces<'_> {
        Pieces {
            parts: &self.parts,
            part: 0,
            at: 0,
        }
    }
}

/// The iterator of [`MessageText::pieces`].
#[derive(Debug)]
pub struct Pieces<'a> {
    parts: &'a [Piece],
    /// The part being written, and how many of its (raw) bytes are written.
    part: usize,
    at: usize,
}

impl Iterator for Pieces<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(part) = self.parts.get(self.part) {
            let room = PIECE_BYTES - out.len();
            let len = match part {
                Piece::Text(text) => {
                    let take = room.min(text.len() - self.at);
                    out.extend_from_slice(&text[self.at..self.at + take]);
                    self.at += take;
                    text.len()
                }
                Piece::Base64(bytes) => {
                    // Whole lines only, each at most 78 bytes with its line end.
                    let take = (room / 78 * LINE_INPUT).min(bytes.len() - self.at);
                    let last = self.at + take == bytes.len();
                    out.extend(encode_lines(&bytes[self.at..self.at + take], last));
                    self.at += take;
                    bytes.len()
                }
            };
            if self.at < len {
                break;
            }
            self.part += 1;
            self.at = 0;
        }
        (!out.is_empty()).then_some(out)
    }
}

/// `text` with every line end CRLF (a bare LF or a bare CR becomes CRLF), and whether it ends
/// with a CR. `after_cr`: the text before ended with a CR, already made CRLF here, so a LF first
/// in this one is that CRLF's second half and is dropped. Text that is already CRLF is handed
/// back as is, without a copy; other text is copied once.
fn crlf(text: Vec<u8>, after_cr: bool) -> (Vec<u8>, bool) {
    if text.is_empty() {
        return (text, after_cr);
    }
    let ends_with_cr = text.last() == Some(&b'\r');
    let skip = usize::from(after_cr && text[0] == b'\n');
    if skip == 0 && is_crlf(&text) {
        return (text, ends_with_cr);
    }
    let mut out = Vec::with_capacity(text.len() + text.len() / 16 + 2);
    let mut rest = &text[skip..];
    while let Some(at) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"\r\n");
        let crlf_pair = rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n');
        rest = &rest[at + 1 + usize::from(crlf_pair)..];
    }
    out.extend_from_slice(rest);
    (out, ends_with_cr)
}

/// Whether every CR in `text` is followed by a LF and every LF follows a CR.
fn is_crlf(text: &[u8]) -> bool {
    let mut rest = text;
    while let Some(at) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        if rest[at] == b'\n' || rest.get(at + 1) != Some(&b'\n') {
            return false;
        }
        rest = &rest[at + 2..];
    }
    true
}

/// The length of `n` bytes in base64 lines of 76 characters joined by CRLF.
fn encoded_len(n: usize) -> usize {
    let lines = n.div_ceil(LINE_INPUT);
    n.div_ceil(3) * 4 + lines.saturating_sub(1) * 2
}

/// Encodes whole lines (the chunk is a multiple of 57 bytes unless it is the last), with CRLF
/// after every line but the message's very last. Lines are encoded 64 at a time and then cut:
/// encoding each 57-byte line alone keeps the base64 engine on its slow path for short inputs.
fn encode_lines(chunk: &[u8], last: bool) -> Vec<u8> {
    const BLOCK_LINES: usize = 64;
    let mut out =
        Vec::with_capacity(chunk.len().div_ceil(3) * 4 + chunk.len().div_ceil(LINE_INPUT) * 2);
    let mut buf = [0u8; BLOCK_LINES * 76];
    let mut blocks = chunk.chunks(BLOCK_LINES * LINE_INPUT).peekable();
    while let Some(block) = blocks.next() {
        let n = STANDARD
            .encode_slice(block, &mut buf)
            .expect("the buffer holds the base64 of a block");
        let final_block = last && blocks.peek().is_none();
        let mut lines = buf[..n].chunks(76).peekable();
        while let Some(line) = lines.next() {
            out.extend_from_slice(line);
            if !final_block || lines.peek().is_some() {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: what lettre (through email-encoding) writes for an attachment's body.
    fn reference(bytes: &[u8]) -> Vec<u8> {
        let line_chunks: Vec<String> = bytes
            .chunks(LINE_INPUT)
            .map(|c| STANDARD.encode(c))
            .collect();
        line_chunks.join("\r\n").into_bytes()
    }

    /// Input bytes of the lines that fill one piece.
    const PIECE_LINES: usize = PIECE_BYTES / 78;

    #[test]
    fn base64_parts_match_mime_line_rules_at_every_boundary() {
        let sizes = [
            0,
            1,
            56,
            57,
            58,
            114,
            LINE_INPUT * PIECE_LINES - 1,
            LINE_INPUT * PIECE_LINES,
            LINE_INPUT * PIECE_LINES + 1,
            2 * LINE_INPUT * PIECE_LINES + 5,
        ];
        for size in sizes {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
            let text = MessageText {
                parts: vec![
                    Piece::Text(b"head\r\n\r\n".to_vec()),
                    Piece::Base64(Bytes::from(bytes.clone())),
                    Piece::Text(b"\r\n--b--\r\n".to_vec()),
                ],
            };
            let written: Vec<u8> = text.pieces().flatten().collect();
            let mut expected = b"head\r\n\r\n".to_vec();
            expected.extend(reference(&bytes));
            expected.extend_from_slice(b"\r\n--b--\r\n");
            assert_eq!(written, expected, "size {size}");
            assert_eq!(text.len(), expected.len(), "len for size {size}");
            let pieces: Vec<usize> = text.pieces().map(|p| p.len()).collect();
            assert!(
                pieces.iter().all(|&p| p <= 1 << 20),
                "size {size}: {pieces:?}"
            );
            // Packed: every piece but the last is full to within a line.
            let short = pieces.iter().filter(|&&p| p + 78 < 1 << 20).count();
            assert!(short <= 1, "size {size}: {pieces:?}");
        }
    }

    #[test]
    fn a_small_message_is_one_write_whatever_its_parts() {
        let mut parts = Vec::new();
        for i in 0..5u8 {
            parts.push(Piece::Text(format!("--b\r\npart {i}\r\n\r\n").into_bytes()));
            parts.push(Piece::Base64(Bytes::from(vec![i; 1000])));
        }
        parts.push(Piece::Text(b"\r\n--b--\r\n".to_vec()));
        let text = MessageText { parts };
        let pieces: Vec<Vec<u8>> = text.pieces().collect();
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].len(), text.len());
    }

    #[test]
    fn ascii_is_judged_on_the_text_only() {
        let mut text = MessageText {
            parts: vec![Piece::Text(b"Subject: hi\r\n".to_vec())],
        };
        text.parts
            .push(Piece::Base64(Bytes::from_static(&[0xff, 0xfe])));
        assert!(text.is_ascii());
        text.parts.push(Piece::Text("é".as_bytes().to_vec()));
        assert!(!text.is_ascii());
    }

    fn written(parts: Vec<Piece>) -> Vec<u8> {
        MessageText::with_crlf(parts).pieces().flatten().collect()
    }

    fn text(t: &[u8]) -> Piece {
        Piece::Text(t.to_vec())
    }

    #[test]
    fn bare_line_ends_become_crlf_so_no_dot_line_hides_behind_them() {
        let cases: [(&[u8], &[u8]); 8] = [
            (b"a\n.\nb", b"a\r\n.\r\nb"),
            (b"a\r.\rb", b"a\r\n.\r\nb"),
            (b"a\r\n.\r\nb", b"a\r\n.\r\nb"),
            (b"\n\n", b"\r\n\r\n"),
            (b"\r\r\n\n", b"\r\n\r\n\r\n"),
            (b"\n\r", b"\r\n\r\n"),
            (b"no line end", b"no line end"),
            (b"", b""),
        ];
        for (input, expected) in cases {
            assert_eq!(
                written(vec![text(input)]),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn a_cr_ending_one_text_part_and_a_lf_starting_the_next_are_one_crlf() {
        assert_eq!(written(vec![text(b"a\r"), text(b"\nb")]), b"a\r\nb");
        assert_eq!(written(vec![text(b"a\r"), text(b"\n\nb")]), b"a\r\n\r\nb");
        // Across an empty part too.
        assert_eq!(
            written(vec![text(b"a\r"), text(b""), text(b"\nb")]),
            b"a\r\nb"
        );
        // A CR then a LF-led part after an attachment are two line ends: the attachment's
        // last line has no line end, so the LF is bare.
        let parts = vec![
            text(b"a\r"),
            Piece::Base64(Bytes::from_static(b"xyz")),
            text(b"\nb\r"),
        ];
        assert_eq!(written(parts), b"a\r\neHl6\r\nb\r\n");
    }

    #[test]
    fn the_length_is_that_of_the_normalised_text() {
        let message = MessageText::with_crlf(vec![text(b"a\nb\r"), text(b"\nc\n")]);
        assert_eq!(message.len(), b"a\r\nb\r\nc\r\n".len());
        assert_eq!(message.pieces().flatten().count(), message.len());
    }

    #[test]
    fn crlf_text_is_kept_without_a_copy() {
        let original = b"Subject: hi\r\n\r\n.line\r\n".repeat(1000);
        let address = original.as_ptr();
        let (kept, ends_with_cr) = crlf(original, false);
        assert_eq!(kept.as_ptr(), address);
        assert!(!ends_with_cr);
    }

    #[test]
    fn reads_stop_at_the_end_and_at_16_mib() {
        let mut state = HostState::new(std::sync::Arc::default(), 64 << 20);
        let bytes = Bytes::from(vec![7u8; (MAX_READ as usize) + 10]);
        let handle = state.table.push(BlobData(bytes)).unwrap();
        let blob = || Resource::<BlobData>::new_borrow(handle.rep());
        assert_eq!(state.size(blob()).unwrap(), u64::from(MAX_READ) + 10);
        let mut len = |offset, length| state.read(blob(), offset, length).unwrap().len();
        assert_eq!(len(0, u32::MAX), MAX_READ as usize);
        assert_eq!(len(u64::from(MAX_READ), 100), 10);
        assert_eq!(len(u64::from(MAX_READ) + 10, 100), 0);
        assert_eq!(len(u64::MAX, 100), 0);
        HostBlob::drop(&mut state, handle).unwrap();
        assert!(state.table.is_empty());
    }
}
