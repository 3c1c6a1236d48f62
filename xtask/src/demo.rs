//! `cargo xtask demo`: the main job, end to end, with nothing installed by hand — a scanned
//! PDF goes out through the built-in SMTP plugin to a real (loopback) mail server over
//! STARTTLS, and the demo shows what arrived.
//!
//! Steps: wasm target and test Python → `cargo build -p scan2x-mail` → a throw-away CA and
//! server certificate → the project's SMTP test server → a settings file (STARTTLS, the demo
//! CA, password from the environment) → `plugins`, `check`, `test`, `send` → what the server
//! received.
//!
//! Everything lives in one temp folder that is kept for inspection. The demo never talks to
//! anything but 127.0.0.1 and always stops its server, also when a step fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::smtp_server::SmtpServer;
use crate::{certs, process, python, toolchain};

const USER: &str = "scanner";
const PASSWORD: &str = "demo-password";
const PASSWORD_ENV: &str = "SMTP_PASSWORD";

pub fn run() -> Result<()> {
    step("Prepare: wasm32-wasip2 target and the test Python (aiosmtpd)");
    toolchain::ensure_wasm_target()?;
    let python = python::ensure_test_python()?;

    step("Build scan2x-mail (its build script builds and embeds the SMTP plugin)");
    process::run(process::cargo().args(["build", "-p", "scan2x-mail"]))?;
    let binary = process::target_dir()
        .join("debug")
        .join(format!("scan2x-mail{}", std::env::consts::EXE_SUFFIX));

    let dir = std::env::temp_dir().join(format!("scan2x-mail-demo-{}", std::process::id()));
    fs::create_dir_all(&dir)?;

    step("Start a mail server on 127.0.0.1 (STARTTLS required, AUTH required)");
    let certs = certs::write(&dir.join("tls"))?;
    let server = SmtpServer::start(&python, &dir.join("server"), &certs, USER, PASSWORD)?;
    println!(
        "listening on 127.0.0.1:{}, trusting {}",
        server.starttls_port,
        certs.ca.display()
    );

    let settings = dir.join("scan2x-mail.toml");
    fs::write(
        &settings,
        format!(
            "# The demo's one sender: the built-in SMTP plugin, STARTTLS, a private CA.\n\
             [senders.office]\n\
             plugin = \"smtp\"\n\
             host = \"127.0.0.1\"\n\
             port = {port}\n\
             enable_ssl = true\n\
             username = \"{USER}\"\n\
             password = {{ env = \"{PASSWORD_ENV}\" }}\n\
             email_address = \"scanner@example.test\"\n\
             ca_file = {ca}\n",
            port = server.starttls_port,
            ca = toml_string(&certs.ca.display().to_string()),
        ),
    )?;
    step(&format!("Settings file {}", settings.display()));
    print!("{}", fs::read_to_string(&settings)?);

    let scan = dir.join("scan.pdf");
    fs::write(&scan, demo_pdf())?;

    let mail = Scan2xMail {
        binary,
        settings,
        cache_dir: dir.join("cache"),
    };
    step(&format!(
        "Run scan2x-mail ({PASSWORD_ENV} is set in its environment)"
    ));
    mail.run(&["plugins"])?;
    mail.run(&["check"])?;
    mail.run(&["test"])?;
    let scan = scan.display().to_string();
    mail.run(&[
        "send",
        "--event",
        "job-output",
        "--to",
        "Front Desk <desk@example.test>",
        "--subject",
        "Your scan is ready",
        "--text",
        "Your scanned document is attached.",
        "--attach",
        &scan,
        "--json",
    ])?;

    step("What the mail server received");
    show_received(&python, &server.dir)?;
    drop(server);
    println!("\nDemo files are kept in {}", dir.display());
    Ok(())
}

struct Scan2xMail {
    binary: PathBuf,
    settings: PathBuf,
    cache_dir: PathBuf,
}

impl Scan2xMail {
    fn run(&self, args: &[&str]) -> Result<()> {
        println!();
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(&self.settings)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(args)
            .env(PASSWORD_ENV, PASSWORD);
        let code = process::run_status(&mut command)?;
        if code != 0 {
            bail!("scan2x-mail {} failed with exit code {code}", args[0]);
        }
        Ok(())
    }
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    let escaped: String = value
        .chars()
        .map(|c| match c {
            '"' => "\\\"".to_string(),
            '\\' => "\\\\".to_string(),
            c if c.is_control() => format!("\\u{:04X}", c as u32),
            c => c.to_string(),
        })
        .collect();
    format!("\"{escaped}\"")
}

fn step(title: &str) {
    println!("\n=== {title}");
}

/// Python's `email` package decodes MIME (encoded words, RFC 2231 file names) in a few lines,
/// and the demo already has a Python: it summarizes what the server stored.
const SHOW_RECEIVED: &str = r#"
import email, email.policy, json, pathlib, sys
folder = pathlib.Path(sys.argv[1])
for meta_path in sorted((folder / "received").glob("*.json")):
    meta = json.loads(meta_path.read_text())
    raw = meta_path.with_suffix(".eml").read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    print(f"message {meta_path.stem} ({len(raw)} bytes) on port {meta['port']}, logged in as {meta['auth_user']}")
    print(f"  envelope: MAIL FROM:<{meta['mail_from']}>  RCPT TO:" + ", ".join(f"<{r}>" for r in meta["rcpt_tos"]))
    print("  headers:")
    for name, value in msg.items():
        print(f"    {name}: {value}")
    body = msg.get_body(("plain",))
    if body is not None:
        print("  text: " + body.get_content().strip().replace("\n", "\n        "))
    for part in msg.iter_attachments():
        print(f"  attachment: {part.get_filename()} ({part.get_content_type()}, {len(part.get_payload(decode=True))} bytes)")
print("what the server heard (AUTH data hidden):")
for line in (folder / "commands.log").read_text().splitlines():
    c = json.loads(line)
    print(f"  conn {c['conn']} {'tls  ' if c['tls'] else 'clear'} {c['line']}")
"#;

fn show_received(python: &Path, server_dir: &Path) -> Result<()> {
    let status = Command::new(python)
        .args(["-c", SHOW_RECEIVED])
        .arg(server_dir)
        .status()?;
    if !status.success() {
        bail!("could not read what the server received ({status})");
    }
    Ok(())
}

/// A small valid one-page PDF: the "scan".
fn demo_pdf() -> Vec<u8> {
    let content = "BT /F1 24 Tf 72 720 Td (scan2x-mail demo scan) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    // Each cross-reference entry is exactly 20 bytes, as the format requires.
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

#[cfg(test)]
mod tests {
    use super::demo_pdf;

    #[test]
    fn demo_pdf_cross_references_point_at_their_objects() {
        let pdf = demo_pdf();
        let text = String::from_utf8(pdf.clone()).unwrap();
        let xref_at: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(text[xref_at..].starts_with("xref\n"));
        let entries: Vec<&str> = text[xref_at..].lines().skip(3).take(5).collect();
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.len() + 1, 20, "entry {entry:?}");
            let offset: usize = entry[..10].parse().unwrap();
            assert!(text[offset..].starts_with(&format!("{} 0 obj", i + 1)));
        }
    }
}
