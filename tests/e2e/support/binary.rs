//! Runs the real `scan2x-mail` binary the way a user would, each time with this test's own
//! settings file (`--config`), its own precompiled-plugin cache (`--cache-dir`, 0700) and cache
//! key (`SCAN2X_MAIL_CACHE_KEY_FILE`, in a 0700 folder beside the cache, never the user's
//! `~/.config`), in a temp directory that is also the working directory.
//!
//! Every run is checked for leaked secrets: each password registered with [`Scan2xMail::secret`]
//! or [`Scan2xMail::credentials`], and each token a stand-in issued during the run
//! ([`Scan2xMail::secrets_issued_in`]), must appear in neither stdout nor stderr, in any spelling
//! (clear, base64 at each offset and URL-safe, percent- and form-encoded, quoted, JSON-escaped).
//! A test can't forget that check: it is part of [`Scan2xMail::run`]. One run per transport goes
//! at the most verbose log filter ([`Scan2xMail::at_trace`]), and no log filter comes from the
//! environment.
//!
//! A run never inherits the user's scan2x-mail configuration from the environment, and never
//! hangs a test: it is killed after [`RUN_TIMEOUT`].

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::base64;

const BINARY: &str = env!("CARGO_BIN_EXE_scan2x-mail");
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Environment the binary would otherwise read instead of this test's files.
/// `SCAN2X_MAIL_LOG` among them: a filter in the environment could silence the very logs a
/// run's leak check reads.
const CLEARED_ENV: &[&str] = &[
    "SCAN2X_MAIL_CONFIG",
    "SCAN2X_MAIL_CACHE_DIR",
    "SCAN2X_MAIL_DATA_DIR",
    "SCAN2X_MAIL_LOG",
    "SMTP_PASSWORD",
    "RUST_LOG",
];

/// The most verbose log filter a run can have: everything at trace, except the compiler's own
/// passes (cranelift's trace of one plugin's compilation is gigabytes of register allocation,
/// and holds nothing of a message or a secret).
pub const TRACE: &str = "trace,cranelift_codegen=warn,cranelift_frontend=warn,\
    cranelift_entity=warn,regalloc2=warn,wasmtime_cranelift=warn,wasmtime_environ=warn";

pub struct Scan2xMail {
    dir: TempDir,
    env: Vec<(String, String)>,
    secrets: Vec<String>,
    /// Files whose lines are secrets a server issues while a run goes on (access tokens,
    /// upload authtokens), read after each run.
    issued: Vec<PathBuf>,
    /// `ulimit -v` for every run, in KiB.
    address_space_kib: Option<u64>,
}

/// What one run of the binary did.
pub struct Run {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Scan2xMail {
    /// A fresh temp directory holding `settings.toml` with `settings` and an empty cache that
    /// only its owner can write (the binary uses no other).
    pub fn new(settings: &str) -> Scan2xMail {
        let dir = tempfile::Builder::new()
            .prefix("scan2x-e2e-")
            .tempdir()
            .expect("create a temp dir for the run");
        fs::write(dir.path().join("settings.toml"), settings).unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&cache, fs::Permissions::from_mode(0o700)).unwrap();
        }
        Scan2xMail {
            dir,
            env: Vec::new(),
            secrets: Vec::new(),
            issued: Vec::new(),
            address_space_kib: None,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn settings_path(&self) -> PathBuf {
        self.dir().join("settings.toml")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir().join("cache")
    }

    /// The cache key every run uses (made by the first run that caches).
    pub fn cache_key_file(&self) -> PathBuf {
        self.dir().join("key").join("cache.key")
    }

    /// Write a file next to the settings (a password file, a body, an attachment).
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir().join(name);
        fs::write(&path, contents).unwrap();
        path
    }

    /// Run the binary with its address space limited (`ulimit -v`, in KiB), as some hosts do.
    pub fn address_space_kib(mut self, kib: u64) -> Self {
        self.address_space_kib = Some(kib);
        self
    }

    /// Set an environment variable for every run.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// A value that must never appear in any output, in any spelling a server or the host could
    /// give it: clear, inside base64 at each of the three offsets (standard and URL-safe),
    /// percent- and form-encoded in either case, IMAP-quoted, JSON-escaped.
    pub fn secret(mut self, value: &str) -> Self {
        self.secrets.extend(spellings(value));
        self
    }

    /// Every line of `file` is a secret once the run that makes it ends: a stand-in writes there
    /// each token it issues, and none may appear in the run's output, in any spelling.
    pub fn secrets_issued_in(mut self, file: PathBuf) -> Self {
        self.issued.push(file);
        self
    }

    /// Every run at the most verbose log filter ([`TRACE`]), the host's debug lines among it:
    /// the leak check then reads all the host can say.
    pub fn at_trace(self) -> Self {
        self.env("SCAN2X_MAIL_LOG", TRACE)
    }

    /// A username and password: the password is a secret, and so is the AUTH PLAIN blob that
    /// carries both (`base64("\0user\0password")`).
    pub fn credentials(self, username: &str, password: &str) -> Self {
        let plain_blob = base64(format!("\0{username}\0{password}").as_bytes());
        let mut this = self.secret(password);
        this.secrets.push(plain_blob);
        this
    }

    /// Run `scan2x-mail --config settings.toml --cache-dir cache ARGS…`, wait at most
    /// [`RUN_TIMEOUT`], and check that no secret leaked into its output.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let mut command = match self.address_space_kib {
            None => Command::new(BINARY),
            Some(kib) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", "ulimit -v \"$0\" && exec \"$@\""])
                    .arg(kib.to_string())
                    .arg(BINARY);
                sh
            }
        };
        self.prepare(&mut command, &args);
        let shown = format!(
            "scan2x-mail {}",
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );

        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {BINARY}: {e}"));
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
                panic!("`{shown}` did not finish within {RUN_TIMEOUT:?}; stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let run = Run {
            command: shown,
            code: status
                .code()
                .unwrap_or_else(|| panic!("scan2x-mail was killed by a signal: {status}")),
            stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
        };
        let issued: Vec<String> = self
            .issued
            .iter()
            .filter_map(|file| fs::read_to_string(file).ok())
            .flat_map(|text| text.lines().map(str::to_owned).collect::<Vec<_>>())
            .flat_map(|token| spellings(&token))
            .collect();
        for (i, secret) in self.secrets.iter().chain(&issued).enumerate() {
            assert!(
                !run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()),
                "secret #{i} ({secret:?}) leaked into the output of {run}"
            );
        }
        run
    }
}

impl Scan2xMail {
    /// `command` given the arguments, folder, pipes and environment every run has: the settings
    /// and cache flags, then `args`; the cleared variables, the test's key file and its `env`.
    fn prepare<I, S>(&self, command: &mut Command, args: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        command
            .arg("--config")
            .arg(self.settings_path())
            .arg("--cache-dir")
            .arg(self.cache_dir())
            .args(args)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in CLEARED_ENV {
            command.env_remove(key);
        }
        command.env("SCAN2X_MAIL_CACHE_KEY_FILE", self.cache_key_file());
        for (key, value) in &self.env {
            command.env(key, value);
        }
    }

    /// Start `scan2x-mail --config settings.toml --cache-dir cache ARGS…` in the background, as
    /// [`Scan2xMail::run`] would run it (the same environment), stdout and stderr piped: for a
    /// long-running command (`serve`). The caller stops it and checks its output with
    /// [`Scan2xMail::assert_no_secret_in`].
    pub fn spawn<I, S>(&self, args: I) -> std::process::Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(BINARY);
        self.prepare(&mut command, args);
        command
            .spawn()
            .unwrap_or_else(|e| panic!("start {BINARY}: {e}"))
    }

    /// The leak check of [`Scan2xMail::run`] over a spawned run's output.
    #[track_caller]
    pub fn assert_no_secret_in(&self, output: &str) {
        for (i, secret) in self.secrets.iter().enumerate() {
            assert!(
                !output.contains(secret.as_str()),
                "secret #{i} ({secret:?}) leaked into the output: {output}"
            );
        }
    }
}

impl Run {
    /// Assert the run logged at the host's most verbose levels (see [`Scan2xMail::at_trace`]):
    /// its debug lines are there, so a leak check over them read something.
    #[track_caller]
    pub fn assert_traced(&self) -> &Self {
        assert!(
            self.stderr.lines().any(|l| l.contains("DEBUG")),
            "no debug line in a run at trace: {self}"
        );
        self
    }

    /// Assert the exit code, showing the whole run when it differs.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(self.code, expected, "unexpected exit code from {self}");
        self
    }

    /// The host's peak resident memory, from the `peak resident memory: N MiB` line it logs at
    /// `-vv`.
    #[track_caller]
    pub fn peak_resident_mib(&self) -> u64 {
        self.stderr
            .lines()
            .find_map(|line| {
                let (_, rest) = line.split_once("peak resident memory: ")?;
                rest.trim().strip_suffix(" MiB")?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no peak resident memory in the output of {self}"))
    }

    /// stdout parsed as one JSON value.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}) in {self}"))
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (exit {})\n--- stdout\n{}\n--- stderr\n{}\n---",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// Every spelling of `value` that [`Scan2xMail::secret`] looks for (written here apart from the
/// host's own redactor, so a mistake there is not repeated here).
fn spellings(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    for offset in 0..3 {
        let mut padded = vec![b'\0'; offset];
        padded.extend_from_slice(value.as_bytes());
        let encoded = base64(&padded);
        // The characters that hold only `value`'s bits.
        let first = (8 * offset).div_ceil(6);
        let end = 8 * padded.len() / 6;
        let fragment = encoded[first..end].to_string();
        out.push(fragment.replace('+', "-").replace('/', "_"));
        out.push(fragment);
    }
    for upper in [true, false] {
        for form in [false, true] {
            let mut text = String::new();
            for b in value.bytes() {
                if b.is_ascii_alphanumeric()
                    || (!form && b"-._~".contains(&b))
                    || (form && b"*-._".contains(&b))
                {
                    text.push(b as char);
                } else if form && b == b' ' {
                    text.push('+');
                } else if upper {
                    text.push_str(&format!("%{b:02X}"));
                } else {
                    text.push_str(&format!("%{b:02x}"));
                }
            }
            out.push(text);
        }
    }
    out.push(value.replace('\\', "\\\\").replace('"', "\\\""));
    let json = serde_json::to_string(value).unwrap();
    out.push(json[1..json.len() - 1].to_string());
    out.retain(|s| s.len() >= 4);
    out.sort();
    out.dedup();
    out
}
