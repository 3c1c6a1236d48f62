//! How long each SMTP step may wait on the server: RFC 5321 §4.5.3.2's time-outs where it gives
//! one, shorter where the module doc of [`super`] says why, all of them shortened alike by
//! `SCAN2X_MAIL_SMTP_TIMEOUT_SCALE`. It only holds numbers: nothing here waits, connects or
//! decides what a time-out means.

use std::time::Duration;

/// The environment variable that scales every bound (a factor from [`MIN_SCALE`] to 1).
pub const SCALE_ENV: &str = "SCAN2X_MAIL_SMTP_TIMEOUT_SCALE";
/// The smallest scale taken: below it, a bound would be shorter than a loopback round trip.
const MIN_SCALE: f64 = 0.001;

/// The bound of each step of one SMTP session (see the table in [`super`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect, TLS from the first byte, greeting, EHLO and STARTTLS's clear part, together.
    pub connect: Duration,
    /// The STARTTLS handshake and the EHLO inside TLS.
    pub tls: Duration,
    pub auth: Duration,
    pub mail: Duration,
    /// Each RCPT TO.
    pub rcpt: Duration,
    /// DATA, until its `354`.
    pub data: Duration,
    /// Each piece of the message written.
    pub data_block: Duration,
    /// The answer to the final `.`.
    pub data_end: Duration,
    /// QUIT's answer, after which the connection is dropped anyway.
    pub quit: Duration,
}

const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

impl Timeouts {
    /// RFC 5321's bounds, and this module's shorter ones for the steps before MAIL.
    pub const RFC_5321: Timeouts = Timeouts {
        connect: Duration::from_secs(30),
        tls: Duration::from_secs(60),
        auth: Duration::from_secs(60),
        mail: minutes(5),
        rcpt: minutes(5),
        data: minutes(2),
        data_block: minutes(3),
        data_end: minutes(10),
        quit: Duration::from_secs(5),
    };

    /// Every bound times `factor`, to the millisecond.
    fn scaled(self, factor: f64) -> Timeouts {
        let scale = |d: Duration| {
            Duration::from_millis(((d.as_millis() as f64) * factor).round().max(1.0) as u64)
        };
        Timeouts {
            connect: scale(self.connect),
            tls: scale(self.tls),
            auth: scale(self.auth),
            mail: scale(self.mail),
            rcpt: scale(self.rcpt),
            data: scale(self.data),
            data_block: scale(self.data_block),
            data_end: scale(self.data_end),
            quit: scale(self.quit),
        }
    }

    /// The bounds for a scale as `SCAN2X_MAIL_SMTP_TIMEOUT_SCALE` spells it; a value that is
    /// not a number from [`MIN_SCALE`] to 1 is an error, and the RFC's bounds apply.
    fn for_scale(text: &str) -> Result<Timeouts, String> {
        match text.trim().parse::<f64>() {
            Ok(factor) if (MIN_SCALE..=1.0).contains(&factor) => Ok(Self::RFC_5321.scaled(factor)),
            _ => Err(format!(
                "{SCALE_ENV}={text:?} is not a factor from {MIN_SCALE} to 1; RFC 5321's time-outs apply"
            )),
        }
    }

    /// The bounds this process uses: RFC 5321's, scaled by `SCAN2X_MAIL_SMTP_TIMEOUT_SCALE`
    /// when it is set.
    pub fn from_env() -> Timeouts {
        let Some(text) = std::env::var_os(SCALE_ENV) else {
            return Self::RFC_5321;
        };
        Self::for_scale(&text.to_string_lossy()).unwrap_or_else(|e| {
            tracing::warn!("{e}");
            Self::RFC_5321
        })
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::from_env()
    }
}

/// A bound as the error texts say it: "300 s", or "0.3 s" below a whole second.
pub(super) fn seconds(bound: Duration) -> String {
    if bound.subsec_millis() == 0 {
        format!("{} s", bound.as_secs())
    } else {
        format!("{:.1} s", bound.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_rfc_5321s_for_every_step_from_mail_on() {
        let t = Timeouts::RFC_5321;
        assert_eq!(
            [t.mail, t.rcpt, t.data, t.data_block, t.data_end],
            [minutes(5), minutes(5), minutes(2), minutes(3), minutes(10)]
        );
        assert_eq!(t.quit, Duration::from_secs(5));
    }

    #[test]
    fn a_scale_shortens_every_bound_alike_and_a_bad_one_is_refused() {
        let t = Timeouts::for_scale("0.01").unwrap();
        assert_eq!(t.mail, Duration::from_secs(3));
        assert_eq!(t.data_end, Duration::from_secs(6));
        assert_eq!(t.quit, Duration::from_millis(50));
        for bad in ["0", "2", "-1", "fast", "NaN"] {
            assert!(Timeouts::for_scale(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_are_said_in_seconds() {
        assert_eq!(seconds(minutes(5)), "300 s");
        assert_eq!(seconds(Duration::from_millis(300)), "0.3 s");
    }
}
