//! Edits to the settings file's senders, written back keeping everything else as it was.
//!
//! The settings page sends a list of [`Edit`]s (JSON, one object per edit, `op` naming it).
//! [`apply`] makes them on the file's text with `toml_edit`, so comments, key order and
//! whitespace of every part not edited stay byte for byte, then checks the result with
//! [`Settings::parse`], the parser `check` uses. Any problem, in an edit or in the result, is
//! returned with its dotted key and nothing is written.
//!
//! What is checked here is what [`Settings::parse`] checks: valid TOML, the top-level and
//! `[service]` keys, the host's keys of each sender (`plugin`, `preferred`, the limits, …),
//! at most one preferred sender, at least one sender. A plugin's own keys (an SMTP sender's
//! `port`, say) are not checked against its schema here: no plugin is loaded. That happens when
//! senders are made from the file (`check`, the start of `serve` and its reload), which refuses
//! an unknown or mistyped plugin key with its line.
//!
//! A secret typed in the page never enters the TOML: [`Edit::SetSecret`] writes it to a file of
//! its own, `<secrets folder>/<sender>.<key>` (created 0600, in a folder created 0700; by
//! default the `secrets` folder beside the settings file), and the key becomes
//! `{ file = "secrets/<sender>.<key>" }`, which the settings parser reads relative to the
//! settings file's folder. A key left [`Edit::KeepSecret`] keeps its value exactly as written,
//! an `{ env = … }` or `{ file = … }` reference included.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml_edit::{DocumentMut, InlineTable, Item, Key, Table, TableLike, Value};

use crate::settings::{Settings, SettingsError, SettingsErrors};

/// The most characters of a sender's name, or of a key a secret is written for.
pub const MAX_NAME_LEN: usize = 64;

/// The folder secrets are written to when [`apply`] is given none: beside the settings file.
pub const SECRETS_FOLDER: &str = "secrets";

/// A plain value for a key: text, a whole number or true/false.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Plain {
    Text(String),
    Integer(i64),
    Bool(bool),
}

/// One change to the settings file's senders.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Edit {
    /// Sets `key` of sender `sender` to a plain value; refused on a key holding a secret
    /// reference (use [`Edit::SetSecret`]).
    Set {
        sender: String,
        key: String,
        value: Plain,
    },
    /// Removes `key` from sender `sender`; refused when the key is not there.
    Remove { sender: String, key: String },
    /// Gives the secret `key` of `sender` a new value: written to its own file, referenced from
    /// the TOML as `{ file = "…" }`.
    SetSecret {
        sender: String,
        key: String,
        value: String,
    },
    /// Leaves the secret `key` of `sender` as it is written; only the sender must exist.
    KeepSecret { sender: String, key: String },
    /// Adds a `[senders.NAME]` table holding `plugin = "…"`.
    AddSender { sender: String, plugin: String },
    /// Removes a sender's table, with the comments above it.
    RemoveSender { sender: String },
    /// Renames a sender, keeping its table's comments and key order.
    RenameSender { sender: String, to: String },
}

/// Why one edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError {
    /// The edit's place in the list, from 0.
    pub index: usize,
    /// The dotted key, e.g. `senders.relay.port`.
    pub key: String,
    pub message: String,
}

/// Why nothing was written.
#[derive(Debug)]
pub enum ApplyError {
    /// Edits that could not be made, each with its key.
    Edits(Vec<EditError>),
    /// The file the edits would make is refused by the settings parser (or the original text
    /// is not valid TOML); each error has its key and line.
    Invalid(SettingsErrors),
    /// Writing a secret or the settings file failed.
    Write { path: PathBuf, message: String },
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Edits(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "edit {}: {}: {}", e.index, e.key, e.message)?;
                }
                Ok(())
            }
            ApplyError::Invalid(errors) => write!(f, "{errors}"),
            ApplyError::Write { path, message } => {
                write!(f, "cannot write {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ApplyError {}

/// The edits made, ready to write: the new text, what it parses to, and the secrets to write.
#[derive(Debug)]
pub struct Plan {
    pub path: PathBuf,
    pub text: String,
    pub settings: Settings,
    /// Each new secret's file and value, in edit order.
    secrets: Vec<(PathBuf, String)>,
}

/// What [`apply`] wrote.
#[derive(Debug)]
pub struct Applied {
    /// The settings file's new text.
    pub text: String,
    /// What it parses to.
    pub settings: Settings,
    /// The secret files written.
    pub secrets: Vec<PathBuf>,
}

/// Makes `edits` on `text` (the settings file at `path`), checks the result, then writes the new
/// secrets and replaces the file atomically. `secrets_dir` is where new secrets go; by default
/// the [`SECRETS_FOLDER`] beside the settings file. On any error nothing is written.
pub fn apply(
    path: &Path,
    text: &str,
    edits: &[Edit],
    secrets_dir: Option<&Path>,
) -> Result<Applied, ApplyError> {
    plan(path, text, edits, secrets_dir)?.write()
}

/// Makes `edits` on `text` and checks the result, writing nothing.
pub fn plan(
    path: &Path,
    text: &str,
    edits: &[Edit],
    secrets_dir: Option<&Path>,
) -> Result<Plan, ApplyError> {
    let mut doc: DocumentMut = match text.parse() {
        Ok(doc) => doc,
        Err(e) => {
            return Err(ApplyError::Invalid(match Settings::parse(path, text) {
                Err(errors) => errors,
                Ok(_) => SettingsErrors(vec![SettingsError {
                    file: path.to_path_buf(),
                    line: None,
                    key: String::new(),
                    message: format!("not valid TOML: {e}"),
                }]),
            }));
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let secrets_dir = secrets_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| base.join(SECRETS_FOLDER));
    let mut errors = Vec::new();
    let mut secrets = Vec::new();
    for (index, edit) in edits.iter().enumerate() {
        if let Err((key, message)) = one(&mut doc, edit, &base, &secrets_dir, &mut secrets) {
            errors.push(EditError {
                index,
                key,
                message,
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApplyError::Edits(errors));
    }
    let text = doc.to_string();
    let settings = Settings::parse(path, &text).map_err(ApplyError::Invalid)?;
    Ok(Plan {
        path: path.to_path_buf(),
        text,
        settings,
        secrets,
    })
}

impl Plan {
    /// Writes the new secrets (each 0600, its folder created 0700), then replaces the settings
    /// file atomically.
    pub fn write(self) -> Result<Applied, ApplyError> {
        let mut written = Vec::new();
        for (file, value) in &self.secrets {
            write_secret(file, value).map_err(|e| ApplyError::Write {
                path: file.clone(),
                message: e.to_string(),
            })?;
            written.push(file.clone());
        }
        write_atomically(&self.path, &self.text).map_err(|e| ApplyError::Write {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        Ok(Applied {
            text: self.text,
            settings: self.settings,
            secrets: written,
        })
    }
}

type Refused = (String, String);

/// Makes one edit; on refusal, the dotted key and why.
fn one(
    doc: &mut DocumentMut,
    edit: &Edit,
    base: &Path,
    secrets_dir: &Path,
    secrets: &mut Vec<(PathBuf, String)>,
) -> Result<(), Refused> {
    match edit {
        Edit::Set { sender, key, value } => {
            let dotted = format!("senders.{sender}.{key}");
            let table = sender_mut(doc, sender)?;
            let new = match value {
                Plain::Text(t) => Value::from(t.as_str()),
                Plain::Integer(i) => Value::from(*i),
                Plain::Bool(b) => Value::from(*b),
            };
            match table.get_mut(key) {
                Some(Item::Value(old)) => {
                    if is_secret_ref(old) {
                        return Err((
                            dotted,
                            "holds a secret reference; give it a new secret value or keep it unchanged"
                                .to_string(),
                        ));
                    }
                    let decor = old.decor().clone();
                    *old = new;
                    *old.decor_mut() = decor;
                }
                Some(_) => {
                    return Err((dotted, "is a table, not a value".to_string()));
                }
                None => {
                    table.insert(key, Item::Value(new));
                }
            }
            Ok(())
        }
        Edit::Remove { sender, key } => {
            let dotted = format!("senders.{sender}.{key}");
            let table = sender_mut(doc, sender)?;
            match table.remove(key) {
                Some(_) => Ok(()),
                None => Err((dotted, format!("sender {sender:?} has no key {key:?}"))),
            }
        }
        Edit::SetSecret { sender, key, value } => {
            let dotted = format!("senders.{sender}.{key}");
            if value.is_empty() {
                return Err((dotted, "a secret may not be empty".to_string()));
            }
            if value.contains(['\r', '\n']) {
                return Err((dotted, "a secret is one line: no line breaks".to_string()));
            }
            for (what, name) in [("sender name", sender), ("key", key)] {
                if let Err(message) = file_name_part(name) {
                    return Err((
                        dotted,
                        format!("cannot name a secret file after this {what}: {message}"),
                    ));
                }
            }
            let file = secrets_dir.join(format!("{sender}.{key}"));
            let written = match file.strip_prefix(base) {
                Ok(relative) if !base.as_os_str().is_empty() => relative.to_path_buf(),
                _ => file.clone(),
            };
            let Some(written) = written.to_str().map(|s| s.replace('\\', "/")) else {
                return Err((
                    dotted,
                    format!("the secrets folder {} is not UTF-8", secrets_dir.display()),
                ));
            };
            let table = sender_mut(doc, sender)?;
            let mut reference = InlineTable::new();
            reference.insert("file", Value::from(written));
            let new = Value::InlineTable(reference);
            match table.get_mut(key) {
                Some(Item::Value(old)) => {
                    let decor = old.decor().clone();
                    *old = new;
                    *old.decor_mut() = decor;
                }
                Some(_) => return Err((dotted, "is a table, not a value".to_string())),
                None => {
                    table.insert(key, Item::Value(new));
                }
            }
            secrets.retain(|(f, _)| f != &file);
            secrets.push((file, value.clone()));
            Ok(())
        }
        Edit::KeepSecret { sender, .. } => sender_mut(doc, sender).map(|_| ()),
        Edit::AddSender { sender, plugin } => {
            let dotted = format!("senders.{sender}");
            if let Err(message) = file_name_part(sender) {
                return Err((dotted, message));
            }
            let senders = senders_mut(doc).map_err(|m| (dotted.clone(), m))?;
            if senders.contains_key(sender) {
                return Err((dotted, format!("a sender named {sender:?} exists already")));
            }
            let mut table = Table::new();
            table.insert("plugin", Item::Value(Value::from(plugin.as_str())));
            senders.insert(sender, Item::Table(table));
            Ok(())
        }
        Edit::RemoveSender { sender } => {
            let dotted = format!("senders.{sender}");
            let senders = senders_mut(doc).map_err(|m| (dotted.clone(), m))?;
            match senders.remove(sender) {
                Some(_) => Ok(()),
                None => Err((dotted, format!("no sender named {sender:?}"))),
            }
        }
        Edit::RenameSender { sender, to } => {
            let dotted = format!("senders.{to}");
            if let Err(message) = file_name_part(to) {
                return Err((dotted, message));
            }
            let senders = senders_mut(doc).map_err(|m| (dotted.clone(), m))?;
            if senders.contains_key(to) {
                return Err((dotted, format!("a sender named {to:?} exists already")));
            }
            if !senders.contains_key(sender) {
                return Err((
                    format!("senders.{sender}"),
                    format!("no sender named {sender:?}"),
                ));
            }
            // Taken out and put back in order, the renamed one in its place: a table's place in
            // the map decides where a new table without a position is written, and the order
            // the parser sees.
            let names: Vec<String> = senders.iter().map(|(k, _)| k.to_string()).collect();
            let mut entries = Vec::new();
            for name in &names {
                if let (Some(key), Some(item)) = (senders.key(name).cloned(), senders.remove(name))
                {
                    entries.push((key, item));
                }
            }
            for (key, item) in entries {
                let key = if key.get() == sender {
                    Key::new(to.as_str())
                        .with_leaf_decor(key.leaf_decor().clone())
                        .with_dotted_decor(key.dotted_decor().clone())
                } else {
                    key
                };
                senders.entry_format(&key).or_insert(item);
            }
            Ok(())
        }
    }
}

/// The `senders` table, made when the file has none.
fn senders_mut(doc: &mut DocumentMut) -> Result<&mut dyn TableLike, String> {
    let item = doc.entry("senders").or_insert_with(|| {
        let mut table = Table::new();
        table.set_implicit(true);
        Item::Table(table)
    });
    item.as_table_like_mut()
        .ok_or_else(|| "`senders` is not a table".to_string())
}

/// Sender `name`'s table.
fn sender_mut<'a>(doc: &'a mut DocumentMut, name: &str) -> Result<&'a mut dyn TableLike, Refused> {
    let dotted = format!("senders.{name}");
    let senders = senders_mut(doc).map_err(|m| (dotted.clone(), m))?;
    match senders.get_mut(name) {
        Some(item) => item
            .as_table_like_mut()
            .ok_or_else(|| (dotted, "is not a table".to_string())),
        None => Err((dotted, format!("no sender named {name:?}"))),
    }
}

/// `{ env = "…" }` or `{ file = "…" }`, as the settings parser reads a secret reference.
fn is_secret_ref(value: &Value) -> bool {
    let Some(table) = value.as_inline_table() else {
        return false;
    };
    let pairs: Vec<(&str, bool)> = table.iter().map(|(k, v)| (k, v.is_str())).collect();
    matches!(pairs.as_slice(), [("env" | "file", true)])
}

/// A sender name (or a secret's key) that is safe as part of a file name: 1 to
/// [`MAX_NAME_LEN`] letters, digits, `_` or `-`.
fn file_name_part(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(format!("must be 1 to {MAX_NAME_LEN} characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("may hold only letters, digits, `_` and `-`".to_string());
    }
    Ok(())
}

/// Writes a secret to `file` alone, 0600, creating its folder 0700 when missing.
fn write_secret(file: &Path, value: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    replace(file, value.as_bytes(), Some(0o600))
}

/// Replaces the file at `path` with `text`: a temporary file in the same folder, synced, renamed
/// over it, the folder synced. The file keeps its permissions; a new one is made 0600.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    replace(path, text.as_bytes(), None)
}

/// [`write_atomically`], with `mode` forced when given.
fn replace(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let kept = std::fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        match (mode, kept) {
            #[cfg(unix)]
            (Some(mode), _) => {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            (None, Some(permissions)) => file.set_permissions(permissions)?,
            _ => {}
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const FILE: &str = "\
# scan2x mail settings
failover = true   # try the next sender

# the office relay
[senders.relay]
plugin = \"smtp\"          # built in
host = \"smtp.example.com\"
port = 587               # submission
password = { env = \"SMTP_PASSWORD\" }
max_concurrent = 2
token = { file = \"relay.token\" }   # beside this file

[senders.backup]
plugin = \"smtp\"
host = \"backup.example.com\"
";

    fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scan2x-mail.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn set(sender: &str, key: &str, value: Plain) -> Edit {
        Edit::Set {
            sender: sender.into(),
            key: key.into(),
            value,
        }
    }

    #[test]
    fn untouched_parts_are_kept_byte_for_byte() {
        let (_dir, path) = setup(FILE);
        let applied = apply(
            &path,
            FILE,
            &[set("relay", "port", Plain::Integer(465))],
            None,
        )
        .unwrap();
        let expected = FILE.replace("port = 587 ", "port = 465 ");
        assert_eq!(applied.text, expected);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
    }

    #[test]
    fn a_new_key_goes_at_the_end_of_its_table() {
        let (_dir, path) = setup(FILE);
        let applied = apply(
            &path,
            FILE,
            &[set("relay", "preferred", Plain::Bool(true))],
            None,
        )
        .unwrap();
        assert_eq!(
            applied.text,
            FILE.replace(
                "# beside this file\n",
                "# beside this file\npreferred = true\n"
            )
        );
        assert!(applied.settings.sender("relay").unwrap().preferred);
    }

    #[test]
    fn a_refused_host_value_names_its_key_and_writes_nothing() {
        let (_dir, path) = setup(FILE);
        let err = apply(
            &path,
            FILE,
            &[set("relay", "max_concurrent", Plain::Text("x".into()))],
            None,
        )
        .unwrap_err();
        let ApplyError::Invalid(errors) = err else {
            panic!("expected the parser's errors, got {err:?}");
        };
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].key, "senders.relay.max_concurrent");
        assert_eq!(errors.0[0].line, Some(10));
        assert!(errors.0[0].message.contains("from 1 to 64"), "{errors}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), FILE);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_second_preferred_sender_is_refused() {
        let (_dir, path) = setup(FILE);
        let err = apply(
            &path,
            FILE,
            &[
                set("relay", "preferred", Plain::Bool(true)),
                set("backup", "preferred", Plain::Bool(true)),
            ],
            None,
        )
        .unwrap_err();
        let ApplyError::Invalid(errors) = err else {
            panic!("{err:?}");
        };
        assert_eq!(errors.0[0].key, "senders.backup.preferred");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), FILE);
    }

    #[test]
    fn edits_that_cannot_be_made_are_each_named() {
        let (_dir, path) = setup(FILE);
        let err = apply(
            &path,
            FILE,
            &[
                set("nowhere", "port", Plain::Integer(1)),
                Edit::Remove {
                    sender: "relay".into(),
                    key: "missing".into(),
                },
                set("relay", "password", Plain::Text("hunter2".into())),
                Edit::AddSender {
                    sender: "backup".into(),
                    plugin: "smtp".into(),
                },
                Edit::RenameSender {
                    sender: "relay".into(),
                    to: "../etc".into(),
                },
            ],
            None,
        )
        .unwrap_err();
        let ApplyError::Edits(errors) = err else {
            panic!("{err:?}");
        };
        let keys: Vec<(usize, &str)> = errors.iter().map(|e| (e.index, e.key.as_str())).collect();
        assert_eq!(
            keys,
            [
                (0, "senders.nowhere"),
                (1, "senders.relay.missing"),
                (2, "senders.relay.password"),
                (3, "senders.backup"),
                (4, "senders.../etc"),
            ]
        );
        assert!(errors[2].message.contains("secret reference"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), FILE);
    }

    #[test]
    fn a_name_longer_than_the_bound_is_refused() {
        let (_dir, path) = setup(FILE);
        let add = |n: usize| Edit::AddSender {
            sender: "a".repeat(n),
            plugin: "smtp".into(),
        };
        assert!(plan(&path, FILE, &[add(MAX_NAME_LEN)], None).is_ok());
        let err = plan(&path, FILE, &[add(MAX_NAME_LEN + 1)], None).unwrap_err();
        assert!(matches!(err, ApplyError::Edits(_)), "{err:?}");
    }

    #[test]
    fn a_new_secret_goes_to_its_own_file_and_only_its_reference_into_the_toml() {
        let (dir, path) = setup(FILE);
        let password = "s3cr3t-Pa55word!";
        let applied = apply(
            &path,
            FILE,
            &[Edit::SetSecret {
                sender: "backup".into(),
                key: "password".into(),
                value: password.into(),
            }],
            None,
        )
        .unwrap();
        let secret = dir.path().join("secrets/backup.password");
        assert_eq!(applied.secrets, std::slice::from_ref(&secret));
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), password);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&secret), 0o600);
            assert_eq!(mode(secret.parent().unwrap()), 0o700);
        }
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.ends_with(
            "host = \"backup.example.com\"\npassword = { file = \"secrets/backup.password\" }\n"
        ));
        let b64 = base64::engine::general_purpose::STANDARD.encode(password);
        for needle in [password, b64.as_str(), b64.trim_end_matches('=')] {
            assert!(!written.contains(needle), "{needle} is in the TOML");
        }
        // The parser reads the reference against the settings file's folder.
        let entry = applied
            .settings
            .sender("backup")
            .unwrap()
            .entries
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            entry.value,
            crate::settings::RawValue::Secret(crate::settings::SecretSource::File(secret))
        );
    }

    #[test]
    fn a_secret_with_a_line_break_or_empty_is_refused() {
        let (_dir, path) = setup(FILE);
        for value in ["", "two\nlines"] {
            let err = apply(
                &path,
                FILE,
                &[Edit::SetSecret {
                    sender: "relay".into(),
                    key: "password".into(),
                    value: value.into(),
                }],
                None,
            )
            .unwrap_err();
            assert!(matches!(err, ApplyError::Edits(_)), "{err:?}");
        }
        assert!(!path.parent().unwrap().join("secrets").exists());
    }

    #[test]
    fn a_kept_secret_reference_stays_as_written() {
        let (_dir, path) = setup(FILE);
        let applied = apply(
            &path,
            FILE,
            &[
                Edit::KeepSecret {
                    sender: "relay".into(),
                    key: "password".into(),
                },
                Edit::KeepSecret {
                    sender: "relay".into(),
                    key: "token".into(),
                },
                set("relay", "host", Plain::Text("mail.example.com".into())),
            ],
            None,
        )
        .unwrap();
        assert!(
            applied
                .text
                .contains("\npassword = { env = \"SMTP_PASSWORD\" }\n")
        );
        assert!(
            applied
                .text
                .contains("\ntoken = { file = \"relay.token\" }   # beside this file\n")
        );
        assert_eq!(
            applied.text,
            FILE.replace("smtp.example.com", "mail.example.com")
        );
    }

    #[test]
    fn senders_are_added_removed_and_renamed() {
        let (_dir, path) = setup(FILE);
        let applied = apply(
            &path,
            FILE,
            &[
                Edit::RemoveSender {
                    sender: "backup".into(),
                },
                Edit::AddSender {
                    sender: "graph".into(),
                    plugin: "graph".into(),
                },
                Edit::RenameSender {
                    sender: "relay".into(),
                    to: "office".into(),
                },
            ],
            None,
        )
        .unwrap();
        let names: Vec<&str> = applied
            .settings
            .senders
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["office", "graph"]);
        let expected_relay = FILE
            .split("[senders.backup]")
            .next()
            .unwrap()
            .replace("[senders.relay]", "[senders.office]");
        assert_eq!(
            applied.text,
            format!("{expected_relay}[senders.graph]\nplugin = \"graph\"\n")
        );
    }

    #[test]
    fn removing_the_last_sender_is_refused() {
        let (_dir, path) = setup(FILE);
        let remove = |s: &str| Edit::RemoveSender { sender: s.into() };
        let err = apply(&path, FILE, &[remove("relay"), remove("backup")], None).unwrap_err();
        let ApplyError::Invalid(errors) = err else {
            panic!("{err:?}");
        };
        assert_eq!(errors.0[0].key, "senders");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), FILE);
    }

    #[test]
    fn edits_arrive_as_json_and_unknown_fields_are_refused() {
        let edits: Vec<Edit> = serde_json::from_str(
            r#"[{"op":"set","sender":"relay","key":"port","value":465},
                {"op":"set","sender":"relay","key":"tls","value":true},
                {"op":"set","sender":"relay","key":"host","value":"mx"},
                {"op":"set_secret","sender":"relay","key":"password","value":"p"},
                {"op":"keep_secret","sender":"relay","key":"password"},
                {"op":"rename_sender","sender":"relay","to":"office"}]"#,
        )
        .unwrap();
        assert_eq!(edits[0], set("relay", "port", Plain::Integer(465)));
        assert_eq!(edits[1], set("relay", "tls", Plain::Bool(true)));
        assert_eq!(edits[2], set("relay", "host", Plain::Text("mx".into())));
        let unknown = serde_json::from_str::<Edit>(
            r#"{"op":"remove","sender":"relay","key":"port","extra":1}"#,
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_keeps_its_mode() {
        let (dir, path) = setup(FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        write_atomically(&path, "failover = false\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "failover = false\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640);
        }
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
