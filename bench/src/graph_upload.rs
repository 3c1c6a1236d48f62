//! `graph-upload`: the Graph plugin's send of a large attachment (the release binary, a
//! process per send, and in process) against a raw upload of the same bytes to the same server
//! with reqwest: the same requests, the same range size.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use scan2x_mail::message::{Attachment, Email};
use scan2x_mail::runtime::{Limits, Runtime};
use scan2x_mail::senders;
use scan2x_mail::settings::{RawValue, SecretSource, SenderSettings, Settings};
use scan2x_mail::wit::types::{EventKind, Mailbox};

use crate::binary::send_scan;
use crate::measure::{Scratch, median};
use crate::message::{TO, pdf};

#[derive(clap::Args)]
pub struct Args {
    /// The release binary.
    #[arg(long, value_name = "PATH")]
    binary: String,
    /// The settings file that has the Graph sender.
    #[arg(long, value_name = "FILE")]
    config: String,
    /// The Graph sender's name (`[senders.NAME]`).
    #[arg(long, value_name = "NAME")]
    sender: String,
    /// The attachment's size in MB (10^6 bytes).
    #[arg(long, default_value_t = 30)]
    size_mb: usize,
    /// Rounds measured, after a warm-up round.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The Graph plugin's upload range (`CHUNK_BYTES` in plugins/graph/src/message.rs): 12 × 320 KiB.
const GRAPH_RANGE_BYTES: usize = 12 * 320 * 1024;

/// What the raw upload needs from the Graph sender's settings: the same origins, application
/// and mailbox as the plugin, and the same trust.
struct GraphTarget {
    authority: String,
    graph: String,
    tenant: String,
    client_id: String,
    secret: String,
    mailbox: String,
    tls: rustls::ClientConfig,
}

impl GraphTarget {
    fn new(s: &SenderSettings) -> Result<GraphTarget> {
        let value = |key: &str| -> Result<String> {
            let entry = s
                .entries
                .iter()
                .find(|e| e.key == key)
                .with_context(|| format!("[senders.{}] has no {key}", s.name))?;
            Ok(match &entry.value {
                RawValue::Text(t) => t.clone(),
                RawValue::Secret(SecretSource::Env(name)) => std::env::var(name)?,
                RawValue::Secret(SecretSource::File(path)) => {
                    std::fs::read_to_string(path)?.trim_end().to_string()
                }
                other => bail!("[senders.{}] {key}: {other:?}", s.name),
            })
        };
        // As the host: the system's roots plus the sender's CA, rustls on ring, HTTP/1.1.
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(ca) = &s.ca_file {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            for cert in CertificateDer::pem_slice_iter(&std::fs::read(ca)?) {
                roots.add(cert?)?;
            }
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(GraphTarget {
            authority: value("authority_url")?,
            graph: value("graph_url")?,
            tenant: value("tenant_id")?,
            client_id: value("client_id")?,
            secret: value("client_secret")?,
            mailbox: value("username")?,
            tls,
        })
    }
}

/// A URL path segment or form value, escaped as the Graph plugin escapes path segments.
fn escaped(text: &str) -> String {
    let mut out = String::new();
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whole milliseconds, as the host logs a request's time.
fn whole_ms(d: Duration) -> f64 {
    d.as_millis() as f64 / 1e3
}

/// The status and body of a request, failing on another status than `expected`.
async fn answer(
    request: reqwest::RequestBuilder,
    expected: u16,
    doing: &str,
) -> Result<serde_json::Value> {
    let response = request.send().await.with_context(|| doing.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    if status != expected {
        bail!(
            "{doing}: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
    Ok(serde_json::from_slice(&body).unwrap_or_default())
}

/// The Graph plugin's exchange for one large attachment, done with reqwest directly: read the
/// file, a new client (so new connections and TLS handshakes, as a new process has), a token,
/// the draft, the upload session, the ranged PUTs, `send`. The whole time and the PUTs' (each
/// from its start to its answer read, in whole ms, as the host logs them).
async fn raw_graph_send(t: &GraphTarget, scan: &Path, n: usize) -> Result<(f64, f64)> {
    use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
    let started = Instant::now();
    let content = tokio::fs::read(scan).await?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(t.tls.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .http1_only()
        .build()?;
    let form = format!(
        "client_id={}&scope={}&client_secret={}&grant_type=client_credentials",
        escaped(&t.client_id),
        escaped(&format!("{}/.default", t.graph)),
        escaped(&t.secret)
    );
    let token = answer(
        client
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                t.authority,
                escaped(&t.tenant)
            ))
            .header("Accept", "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form),
        200,
        "token",
    )
    .await?;
    let bearer = format!(
        "Bearer {}",
        token["access_token"].as_str().context("no access_token")?
    );
    let user = format!("{}/v1.0/users/{}", t.graph, escaped(&t.mailbox));
    let post = |url: String, json: &serde_json::Value| {
        client
            .post(url)
            .header(AUTHORIZATION, &bearer)
            .header(CONTENT_TYPE, "application/json")
            .body(json.to_string())
    };
    // The draft the plugin makes for `send --to … --subject … --attach …`.
    let draft = serde_json::json!({
        "subject": "A large scan",
        "body": {"contentType": "Text", "content": ""},
        "toRecipients": [{"emailAddress": {"address": TO}}],
        "ccRecipients": [],
        "bccRecipients": [],
        "replyTo": [],
        "internetMessageId": format!("<raw-{n}-{}@scan2x-mail>", std::process::id()),
    });
    let draft = answer(post(format!("{user}/messages"), &draft), 201, "draft").await?;
    let base = format!(
        "{user}/messages/{}",
        escaped(draft["id"].as_str().context("the draft has no id")?)
    );
    let item = serde_json::json!({"AttachmentItem": {
        "attachmentType": "file",
        "name": "scan.pdf",
        "size": content.len(),
        "contentType": "application/pdf",
    }});
    let session = answer(
        post(format!("{base}/attachments/createUploadSession"), &item),
        201,
        "createUploadSession",
    )
    .await?;
    let upload_url = session["uploadUrl"]
        .as_str()
        .context("no uploadUrl")?
        .to_string();
    let (total, mut start, mut puts) = (content.len(), 0, 0.0);
    while start < total {
        let end = (start + GRAPH_RANGE_BYTES).min(total);
        let put = Instant::now();
        answer(
            client
                .put(&upload_url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(
                    "Content-Range",
                    format!("bytes {start}-{}/{total}", end - 1),
                )
                .body(content[start..end].to_vec()),
            if end == total { 201 } else { 200 },
            "PUT",
        )
        .await?;
        puts += whole_ms(put.elapsed());
        start = end;
    }
    answer(
        client
            .post(format!("{base}/send"))
            .header(AUTHORIZATION, &bearer)
            .header(CONTENT_LENGTH, "0"),
        202,
        "send",
    )
    .await?;
    Ok((started.elapsed().as_secs_f64(), puts))
}

/// The Graph plugin through the release binary, as `large` runs it: the whole time and the sum
/// of the PUTs' times the host logs at `-vv`.
fn binary_graph_send(
    binary: &str,
    config: &str,
    sender: &str,
    cache: &Path,
    scan: &Path,
) -> Result<(f64, f64)> {
    let (elapsed, stderr) = send_scan(binary, config, sender, cache, scan).context("graph")?;
    // "PUT https://… -> 200 (N bytes in M ms)"
    let mut puts = 0.0;
    let mut count = 0;
    for line in stderr.lines().filter(|l| l.contains("PUT ")) {
        if let Some(ms) = line
            .split(" bytes in ")
            .nth(1)
            .and_then(|r| r.split(" ms)").next())
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            puts += ms / 1e3;
            count += 1;
        }
    }
    if count == 0 {
        bail!("no PUT request times in the binary's -vv log");
    }
    Ok((elapsed, puts))
}

/// The Graph plugin in this process: a fresh runtime and sender (so no kept token and no open
/// connection, as in a new process), the plugin from the precompiled cache; only `send` timed.
async fn in_process_graph_send(settings: &SenderSettings, cache: &Path, m: &Email) -> Result<f64> {
    let runtime = Runtime::new(Some(cache.to_path_buf()), Limits::default())?;
    let plugin = runtime
        .load(&settings.plugin, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sender =
        senders::make(&runtime, settings, Arc::new(plugin)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    runtime
        .send(&sender, m)
        .await
        .map_err(|e| anyhow::anyhow!("plugin send: {e}"))?;
    Ok(started.elapsed().as_secs_f64())
}

pub async fn run(args: &Args) -> Result<String> {
    let (binary, config, name) = (&args.binary, &args.config, &args.sender);
    let (size_mb, runs) = (args.size_mb, args.runs);
    let settings = Settings::load(Path::new(config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sender = settings
        .sender(name)
        .with_context(|| format!("no sender {name} in {config}"))?;
    let target = GraphTarget::new(sender)?;
    let dir = Scratch::new("graph-upload")?;
    let scan = dir.join("scan.pdf");
    let content = pdf(size_mb * 1_000_000);
    std::fs::write(&scan, &content)?;
    let cache = dir.join("cache");
    let message = Email {
        event: EventKind::JobOutput,
        message_id: format!("graph-upload-{}@scan2x-mail", std::process::id()),
        from: None,
        to: vec![Mailbox {
            name: None,
            address: TO.into(),
        }],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: "A large scan".into(),
        text_body: None,
        html_body: None,
        attachments: vec![Attachment {
            filename: "scan.pdf".into(),
            content_type: "application/pdf".into(),
            content: content.into(),
        }],
    };
    let (mut a, mut a_puts, mut a2, mut b, mut b_puts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Round 0 warms up: it fills the precompiled cache and starts the stand-in's threads.
    for round in 0..=runs {
        let (t, puts) = binary_graph_send(binary, config, name, &cache, &scan)?;
        let t2 = in_process_graph_send(sender, &cache, &message).await?;
        let (raw, raw_puts) = raw_graph_send(&target, &scan, round).await?;
        if round > 0 {
            a.push(t);
            a_puts.push(puts);
            a2.push(t2);
            b.push(raw);
            b_puts.push(raw_puts);
        }
    }
    let mb = size_mb as f64;
    let (a, a_puts, a2, b, b_puts) = (
        median(a),
        median(a_puts),
        median(a2),
        median(b),
        median(b_puts),
    );
    let ranges = (size_mb * 1_000_000).div_ceil(GRAPH_RANGE_BYTES);
    let plural = if runs == 1 { "" } else { "s" };
    Ok(format!(
        "\n### 4. Graph: the plugin's upload against a raw upload of the same bytes (the stand-in, HTTPS)\n\n\
         | {size_mb} MB attachment | whole send | MB/s | plugin / raw | the {ranges} PUTs alone | MB/s | plugin / raw |\n\
         |---|---|---|---|---|---|---|\n\
         | (a) Graph plugin, release binary (one process per send) | {a:.3} s | {:.0} | **{:.2}** | {a_puts:.3} s | {:.0} | **{:.2}** |\n\
         | (a′) Graph plugin in process (`Runtime::send`) | {a2:.3} s | {:.0} | **{:.2}** | — | — | — |\n\
         | (b) raw: reqwest, the same requests | {b:.3} s | {:.0} | — | {b_puts:.3} s | {:.0} | — |\n\n\
         Median of {runs} round{plural} after a warm-up round, the three sides alternating. Every side does the \
         plugin's exchange for a large attachment on new connections: a token, the draft, \
         `createUploadSession`, {ranges} ranged PUTs of at most {} bytes, `send`. (a) is the \
         whole process (start-up, the precompiled plugin, reading the file); (a′) a fresh runtime \
         and sender in the harness, only `send` timed; (b) reads the file, makes a reqwest client \
         (rustls on ring, HTTP/1.1, as the host's) and does the requests. The PUTs' time is the sum \
         of each PUT's, from its start to its answer read, in whole ms: the host's own log line at \
         `-vv` for (a), the same measure for (b).\n",
        mb / a,
        a / b,
        mb / a_puts,
        a_puts / b_puts,
        mb / a2,
        a2 / b,
        mb / b,
        mb / b_puts,
        GRAPH_RANGE_BYTES,
    ))
}
