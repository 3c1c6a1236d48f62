//! Settings files for one SMTP sender, built in the product's words so a test says only what
//! differs from a good sender: `SmtpSender::new(port).ca_file(..).toml()`.
//!
//! The defaults describe a sender that works against the test server: 127.0.0.1, STARTTLS
//! (`enable_ssl = true`), user [`USER`] with the password from env [`PASSWORD_ENV`].
//! It writes only what a user could write; it never validates (the binary under test does).

use std::path::{Path, PathBuf};

use super::toml_string;

/// The user every test server knows.
pub const USER: &str = "alice";
/// Alice's password: distinctive, so a leak can't be a coincidence.
pub const PASSWORD: &str = "e2e-Pa55word-7qXv";
/// The environment variable the default sender reads its password from.
pub const PASSWORD_ENV: &str = "SMTP_PASSWORD";
/// The sender's configured From address.
pub const FROM: &str = "scanner@example.test";

#[derive(Clone, Debug)]
pub enum Password {
    Env(String),
    File(PathBuf),
    Plain(String),
}

#[derive(Clone, Debug)]
pub struct SmtpSender {
    name: String,
    port: u16,
    enable_ssl: bool,
    login: (String, Password),
    ca_file: Option<PathBuf>,
}

impl SmtpSender {
    pub fn new(port: u16) -> Self {
        SmtpSender {
            name: "relay".to_string(),
            port,
            enable_ssl: true,
            login: (USER.to_string(), Password::Env(PASSWORD_ENV.to_string())),
            ca_file: None,
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    pub fn enable_ssl(mut self, enable: bool) -> Self {
        self.enable_ssl = enable;
        self
    }

    pub fn ca_file(mut self, path: &Path) -> Self {
        self.ca_file = Some(path.to_path_buf());
        self
    }

    pub fn password(mut self, password: Password) -> Self {
        self.login = (USER.to_string(), password);
        self
    }

    pub fn toml(&self) -> String {
        let mut toml = format!(
            "[senders.{name}]\nplugin = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nenable_ssl = {ssl}\n",
            name = self.name,
            port = self.port,
            ssl = self.enable_ssl,
        );
        let (user, password) = &self.login;
        let password = match password {
            Password::Env(var) => format!("{{ env = {} }}", toml_string(var)),
            Password::File(path) => {
                format!("{{ file = {} }}", toml_string(&path.to_string_lossy()))
            }
            Password::Plain(text) => toml_string(text),
        };
        toml += &format!("username = {}\npassword = {password}\n", toml_string(user));
        toml += &format!("email_address = {}\n", toml_string(FROM));
        if let Some(ca) = &self.ca_file {
            toml += &format!("ca_file = {}\n", toml_string(&ca.to_string_lossy()));
        }
        toml
    }
}
