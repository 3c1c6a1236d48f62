//! The bare lettre program `per-process` compares one `scan2x-mail send` process with: what a
//! minimal tokio + lettre program that sends one email does, and nothing else. It parses its
//! arguments, composes the email with lettre's builder, builds an `AsyncSmtpTransport` (STARTTLS
//! required when `--ca` is given: lettre's default root store, which reads the system's roots,
//! plus that CA, as a sender's `ca_file` adds it), sends over a new connection (EHLO, STARTTLS,
//! EHLO, MAIL, RCPT, DATA, QUIT), prints one line and exits.

use anyhow::Result;
use clap::Parser;
use lettre::message::header::ContentType;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Send one text email over SMTP with lettre.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
    /// Require STARTTLS, trusting this CA (PEM) beside the system's roots.
    #[arg(long, value_name = "FILE")]
    ca: Option<String>,
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    #[arg(long)]
    subject: String,
    #[arg(long)]
    text: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let email = Message::builder()
        .from(args.from.parse()?)
        .to(args.to.parse()?)
        .subject(args.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(args.text)?;
    let mut transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&args.host).port(args.port);
    if let Some(ca) = &args.ca {
        let tls = TlsParameters::builder(args.host.clone())
            .add_root_certificate(Certificate::from_pem(&std::fs::read(ca)?)?)
            .build_rustls()?;
        transport = transport.tls(Tls::Required(tls));
    }
    let response = transport.build().send(email).await?;
    println!("sent: {}", response.code());
    Ok(())
}
