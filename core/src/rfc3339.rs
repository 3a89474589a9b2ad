//! Times as text: the UTC civil calendar, and RFC 3339 read and written, for everything core
//! says about time (query bounds, cursors, expiries, log lines, SigV4's dates).
//!
//! Instants are `SystemTime`s from the clock port. A general date library's formatting and
//! parsing machinery (strftime items, RFC 2822, time zones) cost the Worker's bundle about
//! 25 KB of code for the few forms core reads and writes; these are written out here once,
//! checked against the calendar and against chrono in the tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC civil time, to the second (proleptic Gregorian calendar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    /// `t` truncated to the second. Instants before 1970 read as 1970-01-01T00:00:00Z (no clock
    /// reports one).
    pub fn from_system_time(t: SystemTime) -> Self {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let rem = secs % 86_400;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // All of these are in range by construction (day 1..=31, month 1..=12, rem < 86 400).
        let small = |v: i64| u32::try_from(v).unwrap_or_default();
        let rem = small(i64::try_from(rem).unwrap_or_default());
        Self {
            year,
            month: small(month),
            day: small(day),
            hour: rem / 3_600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// Whether this is a time of the calendar: a month's real day, `hour` to 23, `minute` to
    /// 59 and `second` to 60 (a leap second, as RFC 3339 and Postgres allow).
    pub fn is_valid(&self) -> bool {
        (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second <= 60
    }

    /// Seconds from 1970-01-01T00:00:00Z (negative before it); a leap second counts as the
    /// next second's start, as Postgres reads it.
    fn unix_seconds(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = self.year - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// `20150830`: SigV4's date (the scope's first element).
    pub fn basic_date(&self) -> String {
        let mut out = String::with_capacity(8);
        self.write(&mut out, &["", "", ""]);
        out
    }

    /// `20150830T123600Z`: SigV4's timestamp (`X-Amz-Date`).
    pub fn basic(&self) -> String {
        let mut out = String::with_capacity(16);
        self.write(&mut out, &["", "", "", "T", "", ""]);
        out.push('Z');
        out
    }

    /// `2015-08-30T12:36:00Z`: RFC 3339 to the second.
    pub fn rfc3339(&self) -> String {
        let mut out = String::with_capacity(20);
        self.write(&mut out, &EXTENDED);
        out.push('Z');
        out
    }

    /// `2015-08-30T12:36:00.123Z`: RFC 3339 to the millisecond (log lines).
    pub fn rfc3339_millis(&self, millis: u32) -> String {
        self.with_fraction(millis, 3)
    }

    /// `2015-08-30T12:36:00.123456Z`: RFC 3339 to the microsecond.
    pub fn rfc3339_micros(&self, micros: u32) -> String {
        self.with_fraction(micros, 6)
    }

    fn with_fraction(&self, fraction: u32, width: usize) -> String {
        let mut out = String::with_capacity(21 + width);
        self.write(&mut out, &EXTENDED);
        out.push('.');
        padded(&mut out, fraction, width);
        out.push('Z');
        out
    }

    /// Writes the year, month, day, hour, minute and second, as many as there are
    /// `separators`, each after its own, as zero-padded decimals (without `fmt`).
    fn write(&self, out: &mut String, separators: &[&str]) {
        let year = u32::try_from(self.year).unwrap_or_default();
        let fields = [
            (year, 4),
            (self.month, 2),
            (self.day, 2),
            (self.hour, 2),
            (self.minute, 2),
            (self.second, 2),
        ];
        for (sep, (value, width)) in separators.iter().zip(fields) {
            out.push_str(sep);
            padded(out, value, width);
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS`'s separators.
const EXTENDED: [&str; 6] = ["", "-", "-", "T", ":", ":"];

fn padded(out: &mut String, value: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `t` in RFC 3339 to the microsecond, in UTC: `2026-12-02T15:35:12.456789Z` (what a bound
/// sent to the database needs: one cut to the second would drop the rest of its second).
pub fn micros(t: SystemTime) -> String {
    let micros = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    Civil::from_system_time(t).rfc3339_micros(micros)
}

/// `t` in RFC 3339 to the millisecond, in UTC: `2026-12-03T05:00:00.123Z` (log lines).
pub fn millis(t: SystemTime) -> String {
    let millis = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    Civil::from_system_time(t).rfc3339_millis(millis)
}

/// `t` in RFC 3339 to the second, in UTC: `2026-12-02T15:35:12Z`.
pub fn seconds(t: SystemTime) -> String {
    Civil::from_system_time(t).rfc3339()
}

/// An RFC 3339 date-time (§5.6): `2026-12-01T00:00:00Z`, `2026-12-01t00:00:00.5+01:00`, with
/// `T`, `t` or a space between date and time, a fraction of any length (read to the
/// nanosecond) and `Z`, `z` or an offset. `None` for anything else, an impossible date or
/// time, or an instant before 1970 (which no clock here reports).
pub fn parse(text: &str) -> Option<SystemTime> {
    let mut s = Scanner(text.as_bytes());
    let year = s.digits(4)?;
    s.byte(b'-')?;
    let month = s.digits(2)?;
    s.byte(b'-')?;
    let day = s.digits(2)?;
    s.one_of(b"Tt ")?;
    let hour = s.digits(2)?;
    s.byte(b':')?;
    let minute = s.digits(2)?;
    s.byte(b':')?;
    let second = s.digits(2)?;
    let mut nanos = 0;
    if s.byte(b'.').is_some() {
        let fraction = s.take_while(|b| b.is_ascii_digit());
        if fraction.is_empty() {
            return None;
        }
        for i in 0..9 {
            let digit = fraction.get(i).map_or(0, |d| d - b'0');
            nanos = nanos * 10 + u32::from(digit);
        }
    }
    let offset = match s.one_of(b"Zz+-")? {
        b'Z' | b'z' => 0,
        sign => {
            let hours = s.digits(2)?;
            s.byte(b':')?;
            let minutes = s.digits(2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = i64::from(hours) * 3_600 + i64::from(minutes) * 60;
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
    };
    if !s.0.is_empty() {
        return None;
    }
    let civil = Civil {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second,
    };
    if !civil.is_valid() {
        return None;
    }
    let secs = u64::try_from(civil.unix_seconds() - offset).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// A cursor over the bytes being read.
struct Scanner<'a>(&'a [u8]);

impl Scanner<'_> {
    /// The next byte, when it is `want`.
    fn byte(&mut self, want: u8) -> Option<()> {
        self.one_of(&[want]).map(drop)
    }

    /// The next byte, when it is one of `set`.
    fn one_of(&mut self, set: &[u8]) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        set.contains(&b).then(|| {
            self.0 = rest;
            b
        })
    }

    /// Exactly `n` decimal digits, as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let digits = self.0.get(..n)?;
        let mut value = 0;
        for d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(d - b'0');
        }
        self.0 = self.0.get(n..)?;
        Some(value)
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &[u8] {
        let n = self
            .0
            .iter()
            .position(|&b| !keep(b))
            .unwrap_or(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Civil {
        Civil::from_system_time(UNIX_EPOCH + Duration::from_secs(s))
    }

    #[test]
    fn civil_time_matches_the_calendar() {
        assert_eq!(at(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_440_938_160).basic(), "20150830T123600Z");
        assert_eq!(at(1_440_938_160).basic_date(), "20150830");
        assert_eq!(at(951_782_400).rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(at(4_107_542_399).rfc3339(), "2100-02-28T23:59:59Z");
        assert_eq!(at(253_402_300_799).rfc3339(), "9999-12-31T23:59:59Z");
        // Every day of four centuries round-trips through a day count, and is a valid day.
        let mut prev = at(0);
        for day in 1..146_097u64 {
            let c = at(day * 86_400);
            assert!(
                (c.year, c.month, c.day) > (prev.year, prev.month, prev.day),
                "{c:?} after {prev:?}"
            );
            assert!(c.is_valid(), "{c:?}");
            assert_eq!(c.unix_seconds(), i64::try_from(day * 86_400).unwrap());
            prev = c;
        }
        assert_eq!(prev.rfc3339(), "2369-12-31T00:00:00Z");
    }

    #[test]
    fn times_are_written_truncated_never_rounded() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_764_689_712_456_789_999);
        assert_eq!(micros(t), "2025-12-02T15:35:12.456789Z");
        assert_eq!(millis(t), "2025-12-02T15:35:12.456Z");
        assert_eq!(seconds(t), "2025-12-02T15:35:12Z");
        assert_eq!(micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // As chrono writes them.
        for nanos in [0, 1_000, 999_999_999, 1_764_689_712_000_456_000] {
            let t = UNIX_EPOCH + Duration::from_nanos(nanos);
            let c = chrono::DateTime::<chrono::Utc>::from(t);
            assert_eq!(
                micros(t),
                c.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            );
            assert_eq!(
                millis(t),
                c.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
            assert_eq!(seconds(t), c.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
    }

    #[test]
    fn rfc3339_is_read_in_every_form_it_allows() {
        let base = UNIX_EPOCH + Duration::from_secs(1_764_633_600); // 2025-12-02T00:00:00Z
        for (text, want) in [
            ("2025-12-02T00:00:00Z", base),
            ("2025-12-02t00:00:00z", base),
            ("2025-12-02 00:00:00Z", base),
            ("2025-12-02T01:30:00+01:30", base),
            ("2025-12-01T23:00:00-01:00", base),
            ("2025-12-02T00:00:00+00:00", base),
            ("2025-12-02T00:00:00-00:00", base),
            ("2025-12-02T00:00:00.5Z", base + Duration::from_millis(500)),
            (
                "2025-12-02T00:00:00.123456789123Z",
                base + Duration::from_nanos(123_456_789),
            ),
            // A leap second is the next second's start, as Postgres reads it.
            ("2025-12-01T23:59:60Z", base),
            ("1970-01-01T00:00:00Z", UNIX_EPOCH),
            ("1970-01-01T01:00:00+01:00", UNIX_EPOCH),
        ] {
            assert_eq!(parse(text), Some(want), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            "",
            "2025-12-02",
            "2025-12-02T00:00Z",
            "2025-12-02T00:00:00",
            "2025-12-02T00:00:00.Z",
            "2025-12-02T00:00:00ZZ",
            "2025-12-02T00:00:00+0100",
            "2025-12-02T00:00:00+01",
            "2025-12-02T00:00:00+24:00",
            "2025-12-02T00:00:00+01:60",
            "2025-12-02X00:00:00Z",
            "2025-13-02T00:00:00Z",
            "2025-00-02T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-12-00T00:00:00Z",
            "2025-12-02T24:00:00Z",
            "2025-12-02T00:60:00Z",
            "2025-12-02T00:00:61Z",
            "+2025-12-02T00:00:00Z",
            "２０２５-12-02T00:00:00Z",
            " 2025-12-02T00:00:00Z",
            "2025-12-02T00:00:00Z ",
            // Before 1970.
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert!(parse("2024-02-29T00:00:00Z").is_some());
        assert!(parse("2000-02-29T00:00:00Z").is_some());
        assert!(parse("1900-02-29T00:00:00Z").is_none());
    }

    #[test]
    fn what_is_read_is_what_chrono_reads() {
        for text in [
            "2026-12-01T00:00:00Z",
            "2026-12-01T12:34:56.789+05:45",
            "2026-03-01T00:00:00-12:00",
            "9999-12-31T23:59:59.999999Z",
            "2000-02-29T23:59:59.000001-00:30",
        ] {
            let theirs = chrono::DateTime::parse_from_rfc3339(text).map(SystemTime::from);
            assert_eq!(parse(text), theirs.ok(), "{text}");
        }
    }
}
