//! The servers `cargo xtask bench` sends to, each in a temp folder on loopback, stopped by pid
//! (or `postfix stop`) when dropped:
//!
//! | server | for | how |
//! |---|---|---|
//! | Postfix | throughput, the large SMTP send, the relay of the service part | smtpd on a plain port and a STARTTLS port, no AUTH, everything delivered to `discard:` (accepted and dropped), so the client's cost shows |
//! | Postfix as a local queue | the service part's other side | smtpd on a plain port, every email relayed to the discard Postfix's plain port, Postfix's defaults otherwise |
//! | Dovecot | the large IMAP append | its own config, a passwd-file user, Maildir storage |
//! | Graph stand-in | the large Graph send, and the raw upload of the same bytes it is compared with | `tests/servers/graph_server.py` |
//!
//! Postfix needs root (it drops to its own user) and Debian's package (`apt-get install -y
//! postfix`, "No configuration"). Its traps: it logs only to syslog unless `maillog_file` is
//! set, and it waits while a config file is under about 2 s old, so fresh files are backdated.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::certs::CertFiles;
use crate::process;

pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn sbin(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/local/sbin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    PathBuf::from(name)
}

/// Wait until 127.0.0.1:`port` greets with a line starting `prefix`.
fn wait_greeting(port: u16, prefix: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with(prefix) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{what} did not greet on 127.0.0.1:{port} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn backdate(paths: &[PathBuf]) -> Result<()> {
    process::run(Command::new("touch").args(["-d", "-1 minute"]).args(paths))
}

/// A Postfix that accepts everything from loopback and discards it.
pub struct Postfix {
    config: PathBuf,
    pub plain_port: u16,
    pub starttls_port: u16,
}

impl Postfix {
    /// Why Postfix can't be used here, if it can't.
    pub fn unavailable() -> Option<String> {
        if !process::succeeds(Command::new(sbin("postconf")).arg("-d").arg("mail_version")) {
            return Some(
                "Postfix is not installed; install it with \
                 `echo \"postfix postfix/main_mailer_type select No configuration\" | debconf-set-selections && apt-get install -y postfix`"
                    .into(),
            );
        }
        if !is_root() {
            return Some("Postfix needs root to start (it drops to its own user)".into());
        }
        None
    }

    pub fn start(dir: &Path, certs: &CertFiles) -> Result<Postfix> {
        let (plain_port, starttls_port) = (free_port()?, free_port()?);
        let main = format!(
            "# A throw-away Postfix for scan2x-mail's benchmark: accepts from loopback, discards.\n\
             myhostname = localhost\n\
             default_transport = discard:benchmark\n\
             relay_transport = discard:benchmark\n\
             smtpd_tls_cert_file = {cert}\n\
             smtpd_tls_key_file = {key}\n\
             smtpd_tls_session_cache_database =\n\
             default_process_limit = 200\n",
            cert = certs.cert.display(),
            key = certs.key.display(),
        );
        let listeners = format!(
            "127.0.0.1:{plain_port} inet n - n - - smtpd\n\
             127.0.0.1:{starttls_port} inet n - n - - smtpd\n  -o smtpd_tls_security_level=encrypt\n"
        );
        let config = start_instance(&dir.join("postfix"), &main, &listeners, plain_port)?;
        Ok(Postfix {
            config,
            plain_port,
            starttls_port,
        })
    }
}

/// A Postfix used as a local queue, as a product would hand its email to one: smtpd on one
/// plain port, every email relayed over SMTP to `relayhost` (the discard [`Postfix`]'s plain
/// port), no TLS. Everything else is Postfix's default, its queue files synced before it
/// answers 250 included. Its own config, queue, data folders and log (`log`).
pub struct PostfixQueue {
    config: PathBuf,
    pub port: u16,
    pub log: PathBuf,
}

impl PostfixQueue {
    pub fn start(dir: &Path, relay_port: u16) -> Result<PostfixQueue> {
        let port = free_port()?;
        // Another myhostname than the relay's, or Postfix refuses the relay as itself ("mail
        // loops back to myself").
        let main = format!(
            "# A throw-away Postfix for scan2x-mail's benchmark: a local queue relaying to the\n\
             # discard Postfix.\n\
             myhostname = queue.localhost\n\
             relayhost = [127.0.0.1]:{relay_port}\n\
             smtp_tls_security_level = none\n"
        );
        let listeners = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
        let home = dir.join("postfix-queue");
        let config = start_instance(&home, &main, &listeners, port)?;
        Ok(PostfixQueue {
            config,
            port,
            log: home.join("postfix.log"),
        })
    }

    /// Its config folder (for `postqueue -c`).
    pub fn config(&self) -> &Path {
        &self.config
    }
}

impl Drop for PostfixQueue {
    fn drop(&mut self) {
        stop_instance(&self.config);
    }
}

/// Writes a Postfix instance's config under `home` (`config/`, `spool/`, `data/`, its log
/// `postfix.log`): the settings every instance here shares, then `main` and `listeners` (the
/// `master.cf` lines of its smtpd ports); starts it and waits for its greeting on `port`.
/// Returns its config folder.
fn start_instance(home: &Path, main: &str, listeners: &str, port: u16) -> Result<PathBuf> {
    let config = home.join("config");
    let queue = home.join("spool");
    let data = home.join("data");
    for d in [&config, &queue, &data] {
        fs::create_dir_all(d)?;
    }
    process::run(Command::new("chown").arg("postfix").arg(&data))?;
    let h = home.display();
    let shared = format!(
        "compatibility_level = 3.6\n\
         queue_directory = {q}\n\
         data_directory = {data}\n\
         maillog_file = {h}/postfix.log\n\
         maillog_file_prefixes = /var, /dev/stdout, {h}\n\
         mydestination =\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         mynetworks = 127.0.0.0/8\n\
         alias_maps =\n\
         alias_database =\n\
         smtpd_relay_restrictions = permit_mynetworks, reject\n\
         smtpd_recipient_restrictions = permit_mynetworks, reject\n\
         smtpd_error_sleep_time = 0\n\
         message_size_limit = 104857600\n",
        q = queue.display(),
        data = data.display(),
    );
    fs::write(config.join("main.cf"), format!("{main}{shared}"))?;
    let master = format!(
        "{listeners}\
         pickup    unix  n - n 60 1 pickup\n\
         cleanup   unix  n - n - 0 cleanup\n\
         qmgr      unix  n - n 300 1 qmgr\n\
         tlsmgr    unix  - - n 1000? 1 tlsmgr\n\
         rewrite   unix  - - n - - trivial-rewrite\n\
         bounce    unix  - - n - 0 bounce\n\
         defer     unix  - - n - 0 bounce\n\
         trace     unix  - - n - 0 bounce\n\
         verify    unix  - - n - 1 verify\n\
         flush     unix  n - n 1000? 0 flush\n\
         proxymap  unix  - - n - - proxymap\n\
         proxywrite unix - - n - 1 proxymap\n\
         smtp      unix  - - n - - smtp\n\
         relay     unix  - - n - - smtp\n\
         showq     unix  n - n - - showq\n\
         error     unix  - - n - - error\n\
         retry     unix  - - n - - error\n\
         discard   unix  - - n - - discard\n\
         anvil     unix  - - n - 1 anvil\n\
         scache    unix  - - n - 1 scache\n\
         postlog   unix-dgram n - n - 1 postlogd\n"
    );
    fs::write(config.join("master.cf"), master)?;
    backdate(&[config.join("main.cf"), config.join("master.cf")])?;
    process::run(
        Command::new(sbin("postfix"))
            .arg("-c")
            .arg(&config)
            .arg("check"),
    )?;
    process::run(
        Command::new(sbin("postfix"))
            .arg("-c")
            .arg(&config)
            .arg("start"),
    )?;
    if let Err(e) = wait_greeting(port, "220", "postfix") {
        stop_instance(&config);
        return Err(e).with_context(|| {
            format!(
                "see its log: {}",
                fs::read_to_string(home.join("postfix.log")).unwrap_or_default()
            )
        });
    }
    Ok(config)
}

fn stop_instance(config: &Path) {
    let _ = Command::new(sbin("postfix"))
        .arg("-c")
        .arg(config)
        .arg("stop")
        .stdout(Stdio::null())
        .status();
}

impl Drop for Postfix {
    fn drop(&mut self) {
        stop_instance(&self.config);
    }
}

/// A child process (a Python server), killed by pid when dropped.
pub struct ChildServer {
    child: Child,
    pub ports: Vec<u16>,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn, then read stdout until a line starting with `ready` (its words after it are ports).
fn spawn_ready(mut command: Command, ready: &str) -> Result<ChildServer> {
    println!("$ {}", process::shown(&command));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("start the server")?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut server = ChildServer {
        child,
        ports: Vec::new(),
    };
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .context("the server did not get ready within 20 s")?;
        if let Some(rest) = line.trim().strip_prefix(ready) {
            server.ports = rest
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            return Ok(server);
        }
    }
}

/// The Graph stand-in with the tenant, application and mailbox the bench's sender uses.
pub const GRAPH_TENANT: &str = "5f3c9a1e-8b2d-4c7e-9f10-2a4b6c8d0e1f";
pub const GRAPH_CLIENT: &str = "0b7b1a2c-3d4e-4f50-8a6b-7c8d9e0f1a2b";
pub const GRAPH_SECRET: &str = "bench~GraphS3cret";
pub const GRAPH_MAILBOX: &str = "scanner@contoso.example";

pub fn graph(python: &Path, dir: &Path, certs: &CertFiles) -> Result<ChildServer> {
    let config = dir.join("graph-config.json");
    fs::write(
        &config,
        format!(
            r#"{{"tenants": {{"{GRAPH_TENANT}": {{"domains": ["contoso.example"], "apps": {{"{GRAPH_CLIENT}": {{"secret": "{GRAPH_SECRET}", "roles": ["Mail.Send", "Mail.ReadWrite", "User.Read.All"]}}}}}}}},
 "users": {{"{GRAPH_MAILBOX}": {{"id": "3f1e2d4c-5b6a-4789-9abc-def012345678", "displayName": "Scanner", "mail": "{GRAPH_MAILBOX}", "mailbox": true}}}},
 "token_lifetime": 3599}}"#
        ),
    )?;
    let graph_dir = dir.join("graph");
    fs::create_dir_all(&graph_dir)?;
    let mut command = Command::new(python);
    command
        .arg(process::root().join("tests/servers/graph_server.py"))
        .arg("--dir")
        .arg(&graph_dir)
        .arg("--cert")
        .arg(&certs.cert)
        .arg("--key")
        .arg(&certs.key)
        .arg("--config")
        .arg(&config);
    spawn_ready(command, "READY ")
}

/// A Dovecot with one user (`bench`/`bench-pw`), IMAP with STARTTLS, Maildir storage.
pub struct Dovecot {
    pid: u32,
    pub port: u16,
}

pub const IMAP_USER: &str = "bench";
pub const IMAP_PASSWORD: &str = "bench-pw";

impl Dovecot {
    pub fn unavailable() -> Option<String> {
        if !process::succeeds(Command::new(sbin("dovecot")).arg("--version")) {
            return Some(
                "Dovecot is not installed; install it with `apt-get install -y dovecot-imapd`"
                    .into(),
            );
        }
        if !is_root() {
            return Some("the bench starts Dovecot only as root".into());
        }
        None
    }

    pub fn start(dir: &Path, certs: &CertFiles) -> Result<Dovecot> {
        let d = dir.join("dovecot");
        let (run, state, mail) = (d.join("run"), d.join("state"), d.join("mail"));
        for folder in [&run, &state, &mail] {
            fs::create_dir_all(folder)?;
        }
        // Dovecot's own users must reach these files; mail is stored as nobody (never as root).
        process::run(Command::new("chmod").args(["755"]).arg(dir).arg(&d))?;
        process::run(Command::new("chown").arg("nobody:nogroup").arg(&mail))?;
        fs::write(
            d.join("users"),
            format!("{IMAP_USER}:{{PLAIN}}{IMAP_PASSWORD}\n"),
        )?;
        let port = free_port()?;
        let conf = d.join("dovecot.conf");
        fs::write(
            &conf,
            format!(
                "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {run}\nstate_dir = {state}\n\
                 instance_name = scan2x-bench-{port}\nlog_path = {d}/dovecot.log\n\
                 ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n\
                 auth_mechanisms = plain login\nauth_failure_delay = 0\n\
                 mail_location = maildir:~/Maildir\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/users\n}}\n\
                 userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={mail}/%n\n}}\n\
                 namespace inbox {{\n  inbox = yes\n  separator = /\n  mailbox Sent {{\n    special_use = \\Sent\n    auto = subscribe\n  }}\n}}\n\
                 service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n\
                 service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n",
                run = run.display(),
                state = state.display(),
                d = d.display(),
                mail = mail.display(),
                cert = certs.cert.display(),
                key = certs.key.display(),
            ),
        )?;
        let log = fs::File::create(d.join("start.log"))?;
        let status = Command::new(sbin("dovecot"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        if !status.success() {
            let mut text = String::new();
            let _ = fs::File::open(d.join("start.log")).map(|mut f| f.read_to_string(&mut text));
            bail!("dovecot failed to start: {text}");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = loop {
            if let Some(pid) = fs::read_to_string(run.join("master.pid"))
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break pid;
            }
            if Instant::now() > deadline {
                bail!("dovecot wrote no master.pid");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let dovecot = Dovecot { pid, port };
        wait_greeting(port, "* OK", "dovecot")?;
        Ok(dovecot)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
    }
}

/// Append `text` to `path`.
pub fn append(path: &Path, text: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
