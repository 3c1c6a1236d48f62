//! A plugin's network needs are URL templates over its sender's settings
//! (`smtp://{host}:{port}`, `{graph_url}`): filled in here, then parsed into the [`Grant`]s the
//! gate checks. The gate itself knows nothing of settings.

use crate::gate::Grant;
use crate::settings::{ResolvedSetting, ResolvedValue};

/// Fills `{key}` placeholders of `template` from the sender's settings, then parses the result.
pub fn grant_from_template(template: &str, settings: &[ResolvedSetting]) -> Result<Grant, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("network need {template:?}: unclosed `{{`"))?
            + start;
        let key = &rest[start + 1..end];
        let value = settings.iter().find(|s| s.key == key).map(|s| &s.value);
        match value {
            Some(ResolvedValue::Text(t)) => out.push_str(t),
            Some(ResolvedValue::Integer(i)) => out.push_str(&i.to_string()),
            Some(_) => {
                return Err(format!(
                    "network need {template:?}: setting `{key}` is not text or a number"
                ));
            }
            None => {
                return Err(format!(
                    "network need {template:?}: setting `{key}` is not set"
                ));
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Grant::parse(&out).map_err(|e| format!("network need {template:?} gives {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(key: &str, value: &str) -> ResolvedSetting {
        ResolvedSetting {
            key: key.into(),
            value: ResolvedValue::Text(value.into()),
        }
    }

    fn int(key: &str, value: i64) -> ResolvedSetting {
        ResolvedSetting {
            key: key.into(),
            value: ResolvedValue::Integer(value),
        }
    }

    #[test]
    fn template_is_filled_from_settings() {
        let g = grant_from_template(
            "smtp://{host}:{port}",
            &[text("host", "Mail.Example.COM."), int("port", 587)],
        )
        .unwrap();
        assert_eq!(g.to_string(), "smtp://mail.example.com:587");
    }

    #[test]
    fn url_settings_fill_whole_origins() {
        let g = grant_from_template(
            "{graph_url}",
            &[text("graph_url", "https://graph.example.test/v1.0")],
        )
        .unwrap();
        assert_eq!(g.to_string(), "https://graph.example.test:443");
    }

    #[test]
    fn a_missing_setting_or_an_open_brace_is_an_error_naming_the_need() {
        let e = grant_from_template("smtp://{host}:{port}", &[text("host", "mx")]).unwrap_err();
        assert!(e.contains("setting `port` is not set"), "{e}");
        let e = grant_from_template("smtp://{host", &[text("host", "mx")]).unwrap_err();
        assert!(e.contains("unclosed"), "{e}");
    }
}
