//! The project's SMTP test server (`tests/servers/smtp_server.py`) for the demo: started on
//! 127.0.0.1 with a STARTTLS port (a free one, or one given to start it again where it was),
//! waited for until it prints `READY`, and killed by pid when the handle is dropped — also when
//! the demo fails halfway.
//!
//! Never binds anything but loopback (the script itself binds 127.0.0.1 only), and never prints
//! the password (the command it shows has `<password>` in its place).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::certs::CertFiles;
use crate::process;

pub struct SmtpServer {
    child: Child,
    pub starttls_port: u16,
    pub dir: PathBuf,
}

impl SmtpServer {
    /// Start with one STARTTLS port (a free one) and one user; wait up to 20 s for `READY`.
    pub fn start(
        python: &Path,
        dir: &Path,
        certs: &CertFiles,
        user: &str,
        password: &str,
    ) -> Result<SmtpServer> {
        Self::start_on(python, dir, certs, user, password, free_port()?)
    }

    /// [`SmtpServer::start`] on a STARTTLS port given: the port of a server stopped earlier,
    /// to start it again where its clients expect it.
    pub fn start_on(
        python: &Path,
        dir: &Path,
        certs: &CertFiles,
        user: &str,
        password: &str,
        starttls_port: u16,
    ) -> Result<SmtpServer> {
        std::fs::create_dir_all(dir)?;
        let script = process::root().join("tests/servers/smtp_server.py");
        let mut command = Command::new(python);
        command
            .arg(&script)
            .arg("--dir")
            .arg(dir)
            .arg("--cert")
            .arg(&certs.cert)
            .arg("--key")
            .arg(&certs.key)
            .arg("--users")
            .arg(format!("{user}:{password}"))
            .arg("--starttls-port")
            .arg(starttls_port.to_string());
        // The command as it ran, but for the password.
        println!(
            "$ {}",
            process::shown(&command)
                .replace(&format!("{user}:{password}"), &format!("{user}:<password>"))
        );
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", script.display()))?;

        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let server = SmtpServer {
            child,
            starttls_port,
            dir: dir.to_path_buf(),
        };
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.trim() == "READY" => return Ok(server),
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("the SMTP test server did not print READY within 20 s")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("the SMTP test server exited before it was ready (see its errors above)")
                }
            }
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // This one process, by pid; wait() reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        println!("(SMTP test server stopped)");
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
