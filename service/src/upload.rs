//! The multipart body of `POST /v1/messages`: one `message` part (the `--message` JSON) and
//! `attachment` parts, each a file streamed to disk as it arrives, never held whole in memory.
//!
//! The files of one request are staged in a folder of their own inside the backend's
//! [`Backend::upload_dir`](crate::Backend::upload_dir): `<unique>/<n>/<filename>`, folders 0700
//! and files 0600 on Unix. The folder belongs to the request's [`Uploads`]: it is removed when
//! that is dropped, whichever way the request ends (answered, refused, or the client gone
//! mid-upload and the request dropped). What a crash leaves there is cleared by
//! [`clear_stale`] when the service starts.
//!
//! Every bound is the [`Config`]'s: the `message` part at most [`Config::body_limit`] bytes,
//! the files at most [`Config::upload_limit`] bytes together, at most [`Config::max_uploads`]
//! of them, each filename at most [`Config::max_filename_bytes`]; and what is no part's content
//! (boundaries, headers, text before the first part) at most [`READ_AHEAD`] plus
//! [`PART_OVERHEAD`] a part, so the parser never buffers more than a few MiB, whatever the
//! client sends or how fast.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::{ApiError, Config, json_object};

/// The bytes of boundary lines and headers taken per part, beyond its content.
pub const PART_OVERHEAD: u64 = 16 * 1024;
/// What the parser may have read ahead of the part it is in (one read of the connection).
pub const READ_AHEAD: u64 = 1024 * 1024;
/// A staging folder untouched for this long at start is a crash's leftover ([`clear_stale`]).
pub const STALE: Duration = Duration::from_secs(60 * 60);

/// One uploaded file, staged on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The staged file (its name is [`Upload::filename`]).
    pub path: PathBuf,
    /// The part's filename: its last component only (no folder a client names is ever used).
    pub filename: String,
    /// The part's Content-Type; none when it gave none or `application/octet-stream`: the type
    /// is then guessed from the filename, as for an attachment path.
    pub content_type: Option<String>,
    /// Its size in bytes.
    pub size: u64,
}

/// The files one request uploaded, in upload order. Their staging folder is removed when this
/// is dropped: a backend keeps it until it has copied the files.
#[derive(Debug, Default)]
pub struct Uploads {
    files: Vec<Upload>,
    staging: Option<Staging>,
}

impl Uploads {
    pub fn files(&self) -> &[Upload] {
        &self.files
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The request's staging folder, if it uploaded a file.
    pub fn staging_dir(&self) -> Option<&Path> {
        self.staging.as_ref().map(|s| s.0.as_path())
    }
}

/// A request's staging folder, removed with what is in it when dropped.
#[derive(Debug)]
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "cannot remove the upload staging folder {}: {e}",
                self.0.display()
            ),
        }
    }
}

/// `dir` made if missing, 0700 on Unix.
fn create_private_dir(dir: &Path, recursive: bool) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(recursive);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Removes what a crash left in `root`: every entry in it that neither it nor anything in it
/// (two levels down, as the staging layout goes) was modified in the last [`STALE`], so a
/// request in flight in another process on the same data folder is left alone. Returns how
/// many were removed.
pub fn clear_stale(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let newest = |path: &Path| -> Option<SystemTime> {
        let mut newest = std::fs::symlink_metadata(path).ok()?.modified().ok()?;
        walk_tree(path, 0, &mut |time| newest = newest.max(time));
        Some(newest)
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let stale = newest(&path)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE);
        if !stale {
            continue;
        }
        let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match gone {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
    removed
}

/// Calls `seen` with the modification time of everything under `dir`, at most two levels down.
fn walk_tree(dir: &Path, depth: usize, seen: &mut dyn FnMut(SystemTime)) {
    let Ok(children) = std::fs::read_dir(dir) else {
        return;
    };
    for child in children.flatten() {
        let path = child.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if let Ok(time) = meta.modified() {
            seen(time);
        }
        if meta.is_dir() && depth < 2 {
            walk_tree(&path, depth + 1, seen);
        }
    }
}

/// What the parser was fed and what of it was a part's content: the rest (boundaries, headers,
/// what it read ahead) is bounded, so a part whose headers never end, or text before the first
/// part, cannot make the parser buffer without end; and a fast client cannot make it read far
/// ahead of the disk (it reads all a connection has whenever it is asked for more).
#[derive(Debug, Default)]
struct Counts {
    fed: AtomicU64,
    content: AtomicU64,
    parts: AtomicU64,
    /// Set when the body was cut for going over that bound.
    over: AtomicBool,
}

impl Counts {
    fn allowance(&self) -> u64 {
        READ_AHEAD + PART_OVERHEAD * (self.parts.load(Ordering::Relaxed) + 1)
    }
}

/// The request body as the parser reads it. While more than [`Counts::allowance`] bytes it was
/// fed are not yet content taken, it gets no more (it is woken to go on with what it has); if
/// it then makes no progress, those bytes are not content at all and the body is cut.
struct Counted {
    inner: Body,
    counts: Arc<Counts>,
    /// The progress (content bytes and parts taken) when the parser was last held back.
    held: Option<u64>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let c = self.counts.clone();
        let content = c.content.load(Ordering::Relaxed);
        let progress = content + c.parts.load(Ordering::Relaxed);
        if c.fed.load(Ordering::Relaxed).saturating_sub(content) > c.allowance() {
            if self.held == Some(progress) {
                c.over.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(axum::Error::new(
                    "the multipart body's headers are over the bound",
                ))));
            }
            self.held = Some(progress);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.held = None;
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            c.fed.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }
}

fn usage(message: String, field: &str) -> ApiError {
    ApiError::new("usage", message).with_field(field)
}

fn too_large(message: String, field: &str) -> ApiError {
    ApiError::new("too-large", message).with_field(field)
}

/// The parser's error as the API's: the body cut by a bound is `too-large`, a body that does
/// not parse (or ends early: the client gone) is `usage`.
fn parse_error(e: multer::Error, counts: &Counts, config: &Config) -> ApiError {
    if counts.over.load(Ordering::Relaxed) {
        return ApiError::new(
            "too-large",
            format!(
                "more than {} bytes of the multipart body are no part's content: a part's \
                 headers (at most {PART_OVERHEAD} bytes a part) or the text before the first \
                 part run on",
                counts.allowance()
            ),
        );
    }
    match e {
        multer::Error::StreamSizeExceeded { limit } => ApiError::new(
            "too-large",
            format!(
                "the multipart body is over {limit} bytes: the files may be {} bytes together",
                config.upload_limit
            ),
        ),
        multer::Error::StreamReadFailed(e) => {
            ApiError::new("usage", format!("the request body cannot be read: {e}"))
        }
        e => ApiError::new("usage", format!("the multipart body is malformed: {e}")),
    }
}

/// An `attachment` part's filename: its last component (after any `/` or `\`), which must be a
/// file name — not empty, `.` or `..`, no control characters — of at most `max` bytes.
pub fn filename_of(given: Option<&str>, max: usize) -> Result<String, ApiError> {
    let given = given.ok_or_else(|| {
        usage(
            "an `attachment` part has no filename: give one in its Content-Disposition \
             (`curl -F attachment=@FILE` does)"
                .into(),
            "attachment",
        )
    })?;
    let name = given.rsplit(['/', '\\']).next().unwrap_or_default();
    if name.is_empty() || name == "." || name == ".." {
        return Err(usage(
            format!("the attachment filename {given:?} names no file: give the file's own name"),
            "attachment",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(usage(
            format!("the attachment filename {given:?} has a control character"),
            "attachment",
        ));
    }
    if name.len() > max {
        return Err(usage(
            format!(
                "the attachment filename {:?}… is {} bytes long: at most {max}",
                name.chars().take(40).collect::<String>(),
                name.len()
            ),
            "attachment",
        ));
    }
    Ok(name.to_string())
}

/// The staging folder of one request, made inside `root` (made too if missing).
fn new_staging(root: &Path) -> Result<Staging, ApiError> {
    let cannot = |what: &Path, e: std::io::Error| {
        ApiError::new(
            "internal",
            format!("cannot make the upload folder {}: {e}", what.display()),
        )
    };
    create_private_dir(root, true).map_err(|e| cannot(root, e))?;
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::new("internal", format!("no random name: {e}")))?;
    let dir = root.join(hex::encode(bytes));
    create_private_dir(&dir, false).map_err(|e| cannot(&dir, e))?;
    Ok(Staging(dir))
}

/// Reads a multipart body: the `message` part's JSON object and every `attachment` part
/// streamed into a staging folder in `root`. Any refusal drops what was staged.
pub(crate) async fn read(
    config: &Config,
    root: &Path,
    body: Body,
    boundary: String,
) -> Result<(Value, Uploads), ApiError> {
    let counts = Arc::new(Counts::default());
    let whole = config.upload_limit
        + config.body_limit as u64
        + PART_OVERHEAD * (config.max_uploads as u64 + 1)
        + READ_AHEAD;
    let stream = Body::new(Counted {
        inner: body,
        counts: counts.clone(),
        held: None,
    })
    .into_data_stream();
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(whole));
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
    let bad = |e| parse_error(e, &counts, config);

    let mut message: Option<Value> = None;
    let mut uploads = Uploads::default();
    let mut total = 0u64;
    while let Some(mut part) = multipart.next_field().await.map_err(bad)? {
        counts.parts.fetch_add(1, Ordering::Relaxed);
        match part.name() {
            Some("message") => {
                if message.is_some() {
                    return Err(usage(
                        "the multipart body has two `message` parts: send the email's JSON once"
                            .into(),
                        "message",
                    ));
                }
                let mut json = Vec::new();
                while let Some(chunk) = part.chunk().await.map_err(bad)? {
                    counts
                        .content
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if json.len() + chunk.len() > config.body_limit {
                        return Err(too_large(
                            format!("the `message` part is over {} bytes", config.body_limit),
                            "message",
                        ));
                    }
                    json.extend_from_slice(&chunk);
                }
                let value = json_object(&json).map_err(|e| {
                    usage(
                        e.message.replacen("the body", "the `message` part", 1),
                        "message",
                    )
                })?;
                message = Some(value);
            }
            Some("attachment") => {
                if uploads.files.len() == config.max_uploads {
                    return Err(too_large(
                        format!(
                            "the multipart body has more than {} `attachment` parts",
                            config.max_uploads
                        ),
                        "attachment",
                    ));
                }
                let filename = filename_of(part.file_name(), config.max_filename_bytes)?;
                let content_type = part
                    .content_type()
                    .filter(|t| t.essence_str() != "application/octet-stream")
                    .map(|t| t.to_string());
                let staging = match &uploads.staging {
                    Some(staging) => &staging.0,
                    None => &uploads.staging.insert(new_staging(root)?).0,
                };
                let n = uploads.files.len();
                let dir = staging.join(n.to_string());
                let path = dir.join(&filename);
                let cannot = |e: std::io::Error| {
                    ApiError::new(
                        "internal",
                        format!("cannot stage the upload {}: {e}", path.display()),
                    )
                };
                create_private_dir(&dir, false).map_err(cannot)?;
                let mut options = tokio::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                options.mode(0o600);
                let mut file = options.open(&path).await.map_err(cannot)?;
                let mut size = 0u64;
                while let Some(chunk) = part.chunk().await.map_err(bad)? {
                    counts
                        .content
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    total += chunk.len() as u64;
                    if total > config.upload_limit {
                        return Err(too_large(
                            format!(
                                "the uploaded files are over {} bytes together",
                                config.upload_limit
                            ),
                            "attachment",
                        ));
                    }
                    size += chunk.len() as u64;
                    file.write_all(&chunk).await.map_err(cannot)?;
                }
                file.flush().await.map_err(cannot)?;
                drop(file);
                uploads.files.push(Upload {
                    path,
                    filename,
                    content_type,
                    size,
                });
            }
            Some(other) => {
                return Err(usage(
                    format!(
                        "unknown part `{other}`: the multipart body takes one `message` part \
                         (the email's JSON) and `attachment` parts (files)"
                    ),
                    other,
                ));
            }
            None => {
                return Err(usage(
                    "a part has no name: the multipart body takes one `message` part and \
                     `attachment` parts"
                        .into(),
                    "message",
                ));
            }
        }
    }
    let message = message.ok_or_else(|| {
        usage(
            "the multipart body has no `message` part: give the email's JSON as one (`curl -F \
             message=@email.json`)"
                .into(),
            "message",
        )
    })?;
    Ok((message, uploads))
}
