//! Secret values (passwords, client secrets) in the host.
//!
//! A [`Secret`] never prints itself: `Debug` shows `<secret>`, there is no `Display`, and the only
//! way to the text is [`Secret::expose`], called where a protocol needs the bytes. [`Redactor`]
//! is the second line of defence: everything the CLI prints passes through it, so a secret that
//! a server or plugin echoed back in an error still never reaches the terminal.

use std::fmt;
use std::sync::Arc;

/// A secret value, cheap to clone, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Replaces every known secret value in a text by `<secret>`.
#[derive(Clone, Default, Debug)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    pub fn add(&mut self, secret: &Secret) {
        // Very short values would redact ordinary words; they are also no secret worth the name.
        if secret.expose().len() >= 4 && !self.secrets.contains(secret) {
            self.secrets.push(secret.clone());
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.expose()) {
                out = out.replace(secret.expose(), "<secret>");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_value() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s:?}"), "<secret>");
        assert!(!format!("{:?}", Some(s)).contains("hunter22"));
    }

    #[test]
    fn redactor_replaces_every_occurrence() {
        let mut r = Redactor::default();
        r.add(&Secret::new("hunter22"));
        assert_eq!(
            r.redact("535 bad password hunter22 (hunter22)"),
            "535 bad password <secret> (<secret>)"
        );
    }
}
