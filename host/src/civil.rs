//! The host's one date arithmetic: seconds since the Unix epoch as a UTC calendar date and time
//! (Howard Hinnant's `civil_from_days`). IMAP's APPEND dates and the outbox's reports use it.

/// A UTC date and time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1..=12
    pub month: i64,
    /// 1..=31
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

impl Civil {
    /// `unix_secs` seconds since 1970-01-01T00:00:00Z.
    pub fn from_unix(unix_secs: i64) -> Self {
        let (days, rest) = (unix_secs.div_euclid(86_400), unix_secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Self {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rest / 3600,
            minute: rest % 3600 / 60,
            second: rest % 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_leap_days_and_times_before_1970() {
        let at = |y, mo, d, h, mi, s| Civil {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
        };
        assert_eq!(Civil::from_unix(0), at(1970, 1, 1, 0, 0, 0));
        // 2024-02-29 12:34:56Z, a leap day.
        assert_eq!(Civil::from_unix(1_709_210_096), at(2024, 2, 29, 12, 34, 56));
        // 2000-03-01, after a leap day of a century divisible by 400.
        assert_eq!(Civil::from_unix(951_868_800), at(2000, 3, 1, 0, 0, 0));
        // One second before the epoch.
        assert_eq!(Civil::from_unix(-1), at(1969, 12, 31, 23, 59, 59));
    }
}
