//! The `secrets` interface: secret handles live in the call's resource table; the plugin holds
//! only the handle. Capabilities read the value with [`secret_value`] where a protocol needs it,
//! and only where the plugin declared it goes ([`SecretUses`]).
//!
//! **Where a secret may be filled in.** A plugin declares, among its network needs, each place a
//! secret setting may go:
//!
//! | declaration | the secret may be |
//! |---|---|
//! | `secret KEY login` | the password of an SMTP or IMAP login, to the sender's granted endpoints |
//! | `secret KEY header NAME URL` | (part of) the value of header `NAME` of a request to the `https` origin `URL` |
//! | `secret KEY form NAME URL` | (part of) the value of form field `NAME` of a request to the `https` origin `URL` |
//!
//! `URL` is a template over the sender's settings, as a network need is (`{authority_url}`). A
//! secret setting with no declaration may be used as a login password only, as before
//! declarations existed. Every other use is refused as `denied` before anything is sent: a
//! secret in another header, another field, to another origin, or over plain `http`. What a
//! server answers is scrubbed of every spelling of every secret before the plugin sees it (see
//! `secret::redact`), so an origin that reflects a request hands the plugin `<secret>`.

use std::collections::BTreeMap;

use wasmtime::component::Resource;

use super::HostState;
use crate::gate::Gate;
use crate::secret::Secret;
use crate::settings::{ResolvedSetting, ResolvedValue};
use crate::wit::secrets::{Host, HostSecret};

/// What a `secret` handle points at.
#[derive(Debug)]
pub struct SecretValue(pub Secret);

impl Host for HostState {}

impl HostSecret for HostState {
    fn drop(&mut self, rep: Resource<SecretValue>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

/// The secret behind a handle the plugin passed in. A dangling handle is a host bug (the
/// component model checks handles), so it traps.
pub fn secret_value(state: &HostState, handle: &Resource<SecretValue>) -> wasmtime::Result<Secret> {
    Ok(state.table.get(handle)?.0.clone())
}

/// Where a secret goes in an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Header,
    Form,
}

impl Field {
    fn word(self) -> &'static str {
        match self {
            Field::Header => "header",
            Field::Form => "form",
        }
    }
}

/// One declared place for a secret.
#[derive(Debug, Clone)]
enum Use {
    Login,
    Http {
        field: Field,
        /// Lower case for headers (their names are case-insensitive); as written for forms.
        name: String,
        /// The one origin, as a gate of its own: made at load, checked per request.
        origin: Gate,
    },
}

/// The declared places of a sender's secret settings, made when the sender loads.
#[derive(Debug, Default, Clone)]
pub struct SecretUses {
    /// Setting key → its value and its declared uses (none declared: login only).
    by_key: BTreeMap<String, (Secret, Vec<Use>)>,
}

/// Whether a network need is a secret declaration rather than a destination.
pub fn is_declaration(need: &str) -> bool {
    need.starts_with("secret ")
}

impl SecretUses {
    /// The declarations among a plugin's network needs, filled in from the sender's settings.
    /// Errors name the declaration.
    pub fn new(needs: &[String], settings: &[ResolvedSetting]) -> Result<Self, Vec<String>> {
        let mut by_key: BTreeMap<String, (Secret, Vec<Use>)> = settings
            .iter()
            .filter_map(|s| match &s.value {
                ResolvedValue::Secret(secret) => {
                    Some((s.key.clone(), (secret.clone(), Vec::new())))
                }
                _ => None,
            })
            .collect();
        let secret_keys: Vec<String> = settings.iter().map(|s| s.key.clone()).collect();
        let mut errors = Vec::new();
        for need in needs.iter().filter(|n| is_declaration(n)) {
            match parse(need, settings) {
                Ok((key, declared)) => match by_key.get_mut(&key) {
                    Some((_, uses)) => uses.push(declared),
                    // A declared secret the administrator did not set: nothing to fill in.
                    None if secret_keys.contains(&key) => {
                        errors.push(format!("{need:?}: setting {key} is not a secret"))
                    }
                    None => {}
                },
                Err(e) => errors.push(format!("{need:?}: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(Self { by_key })
        } else {
            Err(errors)
        }
    }

    /// The keys of the settings holding `secret`.
    fn holding<'a>(
        &'a self,
        secret: &'a Secret,
    ) -> impl Iterator<Item = (&'a String, &'a Vec<Use>)> {
        self.by_key
            .iter()
            .filter(move |(_, (value, _))| value == secret)
            .map(|(key, (_, uses))| (key, uses))
    }

    /// Whether `secret` may be the password of an SMTP or IMAP login.
    pub fn check_login(&self, secret: &Secret) -> Result<(), String> {
        let keys: Vec<(&String, &Vec<Use>)> = self.holding(secret).collect();
        if keys.is_empty() {
            return Err("the password handle is no secret setting of this sender".into());
        }
        if keys
            .iter()
            .any(|(_, uses)| uses.is_empty() || uses.iter().any(|u| matches!(u, Use::Login)))
        {
            return Ok(());
        }
        let names: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
        Err(format!(
            "secret setting {} may not be used as a login password: its plugin declares it only \
             for HTTP requests",
            names.join(", ")
        ))
    }

    /// Whether `secret` may be filled into `field` `name` of a request to `url`.
    pub fn check_http(
        &self,
        secret: &Secret,
        field: Field,
        name: &str,
        url: &reqwest::Url,
    ) -> Result<(), String> {
        let wanted = match field {
            Field::Header => name.to_ascii_lowercase(),
            Field::Form => name.to_string(),
        };
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(0);
        let mut keys = Vec::new();
        for (key, uses) in self.holding(secret) {
            if url.scheme() == "https"
                && uses.iter().any(|u| match u {
                    Use::Http {
                        field: f,
                        name,
                        origin,
                    } => {
                        *f == field && *name == wanted && origin.check("https", host, port).is_ok()
                    }
                    Use::Login => false,
                })
            {
                return Ok(());
            }
            keys.push(key.as_str());
        }
        let place = format!(
            "{} {name} of a request to {}://{host}:{port}",
            field.word(),
            url.scheme()
        );
        Err(match keys.as_slice() {
            [] => format!(
                "a secret handle that is no secret setting of this sender may not go into {place}"
            ),
            keys => format!(
                "secret setting {} may not go into {place}: its plugin does not declare that place \
                 (secrets go only over https, into the headers and form fields it declares)",
                keys.join(", ")
            ),
        })
    }
}

/// `secret KEY login` | `secret KEY header|form NAME URL-TEMPLATE`.
fn parse(need: &str, settings: &[ResolvedSetting]) -> Result<(String, Use), String> {
    let words: Vec<&str> = need.split_whitespace().collect();
    match words.as_slice() {
        ["secret", key, "login"] => Ok(((*key).to_string(), Use::Login)),
        ["secret", key, kind @ ("header" | "form"), name, template] => {
            let origin = crate::template::grant_from_template(template, settings)?;
            if origin.scheme != "https" {
                return Err(format!(
                    "a secret goes only to https origins, not {}",
                    origin
                ));
            }
            let field = if *kind == "header" {
                Field::Header
            } else {
                Field::Form
            };
            let name = match field {
                Field::Header => name.to_ascii_lowercase(),
                Field::Form => (*name).to_string(),
            };
            Ok((
                (*key).to_string(),
                Use::Http {
                    field,
                    name,
                    origin: Gate::new("", vec![origin]),
                },
            ))
        }
        _ => Err(
            "a secret declaration is `secret KEY login` or `secret KEY header|form NAME URL`"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: &Secret) -> Vec<ResolvedSetting> {
        vec![
            ResolvedSetting {
                key: "client_secret".into(),
                value: ResolvedValue::Secret(secret.clone()),
            },
            ResolvedSetting {
                key: "authority_url".into(),
                value: ResolvedValue::Text("https://login.example.com".into()),
            },
        ]
    }

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).unwrap()
    }

    #[test]
    fn a_declared_form_field_to_its_origin_is_allowed_and_nothing_else() {
        let secret = Secret::new("declared-secret-1");
        let uses = SecretUses::new(
            &["secret client_secret form client_secret {authority_url}".into()],
            &settings(&secret),
        )
        .unwrap();
        let token = url("https://login.example.com/t/oauth2/v2.0/token");
        assert!(
            uses.check_http(&secret, Field::Form, "client_secret", &token)
                .is_ok()
        );
        for (field, name, to) in [
            (Field::Form, "other", "https://login.example.com/"),
            (Field::Header, "client_secret", "https://login.example.com/"),
            (Field::Form, "client_secret", "https://graph.example.com/"),
            (Field::Form, "client_secret", "http://login.example.com/"),
            (
                Field::Form,
                "client_secret",
                "https://login.example.com:8443/",
            ),
        ] {
            let refused = uses.check_http(&secret, field, name, &url(to));
            assert!(refused.is_err(), "{field:?} {name} {to}");
        }
        let refused = uses.check_login(&secret).unwrap_err();
        assert!(refused.contains("client_secret"), "{refused}");
    }

    #[test]
    fn an_undeclared_secret_may_only_log_in() {
        let secret = Secret::new("undeclared-secret-2");
        let uses = SecretUses::new(&["smtp://{host}:{port}".into()], &settings(&secret)).unwrap();
        assert!(uses.check_login(&secret).is_ok());
        let refused = uses
            .check_http(
                &secret,
                Field::Header,
                "Authorization",
                &url("https://login.example.com/"),
            )
            .unwrap_err();
        assert!(refused.contains("does not declare"), "{refused}");
    }

    #[test]
    fn header_names_match_in_any_case() {
        let secret = Secret::new("header-secret-3");
        let uses = SecretUses::new(
            &["secret client_secret header Authorization {authority_url}".into()],
            &settings(&secret),
        )
        .unwrap();
        let to = url("https://login.example.com/v3/mail/send");
        assert!(
            uses.check_http(&secret, Field::Header, "authorization", &to)
                .is_ok()
        );
    }

    #[test]
    fn declarations_to_plain_http_or_of_unknown_shape_are_settings_errors() {
        let secret = Secret::new("bad-decl-secret-4");
        let mut s = settings(&secret);
        s[1].value = ResolvedValue::Text("http://login.example.com".into());
        let errors = SecretUses::new(
            &[
                "secret client_secret form client_secret {authority_url}".into(),
                "secret client_secret anywhere".into(),
            ],
            &s,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("only to https"), "{errors:?}");
    }
}
