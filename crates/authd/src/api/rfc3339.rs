//! A direct RFC 3339 writer for `DateTime<Utc>` on the wire: the exact bytes chrono's own
//! `Serialize` writes (`to_rfc3339_opts(SecondsFormat::AutoSi, true)`: `Z`, fractional
//! digits only when non-zero, in groups of 3), written as digits into a stack buffer
//! instead of through `core::fmt` and `collect_str`. Deserialization stays chrono's.
//!
//! Years outside 0..=9999 (which chrono writes with a sign) are left to chrono.

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use serde::{Serialize as _, Serializer};

/// The longest output: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 30;

/// `#[serde(serialize_with = "rfc3339::serialize")]` for a `DateTime<Utc>` field.
pub(crate) fn serialize<S: Serializer>(
    dt: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    match write(dt, &mut buf).and_then(|len| std::str::from_utf8(buf.get(..len)?).ok()) {
        Some(s) => serializer.serialize_str(s),
        None => dt.serialize(serializer),
    }
}

/// Appends `dt` as a JSON string (quotes included): what [`serialize`] writes through
/// serde_json.
pub(crate) fn push_json(dt: &DateTime<Utc>, out: &mut String) {
    let mut buf = [0u8; MAX_LEN];
    match write(dt, &mut buf).and_then(|len| std::str::from_utf8(buf.get(..len)?).ok()) {
        Some(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        // Signed years: chrono's own text, which holds nothing JSON escapes.
        None => {
            out.push('"');
            out.push_str(&dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            out.push('"');
        }
    }
}

/// Writes two decimal digits of `n` (< 100) at `at`.
fn two(buf: &mut [u8; MAX_LEN], at: usize, n: u32) {
    buf[at] = b'0' + (n / 10) as u8;
    buf[at + 1] = b'0' + (n % 10) as u8;
}

/// Writes `dt` into `buf` and returns the length, or `None` for a year chrono writes
/// with a sign.
fn write(dt: &DateTime<Utc>, buf: &mut [u8; MAX_LEN]) -> Option<usize> {
    let naive = dt.naive_utc();
    let year = u32::try_from(naive.year()).ok().filter(|y| *y <= 9999)?;
    let mut sec = naive.second();
    let mut nano = naive.nanosecond();
    // A leap second is carried as nanoseconds past 1e9; chrono writes it as second 60.
    if nano >= 1_000_000_000 {
        sec += 1;
        nano -= 1_000_000_000;
    }
    two(buf, 0, year / 100);
    two(buf, 2, year % 100);
    buf[4] = b'-';
    two(buf, 5, naive.month());
    buf[7] = b'-';
    two(buf, 8, naive.day());
    buf[10] = b'T';
    two(buf, 11, naive.hour());
    buf[13] = b':';
    two(buf, 14, naive.minute());
    buf[16] = b':';
    two(buf, 17, sec);
    let mut len = 19;
    let (digits, mut frac) = if nano == 0 {
        (0, 0)
    } else if nano.is_multiple_of(1_000_000) {
        (3, nano / 1_000_000)
    } else if nano.is_multiple_of(1_000) {
        (6, nano / 1_000)
    } else {
        (9, nano)
    };
    if digits > 0 {
        buf[len] = b'.';
        for i in (0..digits).rev() {
            buf[len + 1 + i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        len += 1 + digits;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone as _};
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    fn check(dt: DateTime<Utc>) {
        let chrono = serde_json::to_string(&dt).unwrap();
        let ours = serde_json::to_string(&Ours(dt)).unwrap();
        assert_eq!(ours, chrono, "{dt:?}");
    }

    fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, nanos).unwrap()
    }

    #[test]
    fn same_bytes_as_chrono_at_fixed_instants() {
        for nanos in [
            0,
            1,
            7,
            10,
            999,
            1_000,
            1_001,
            10_000,
            120_000,
            999_999,
            1_000_000,
            1_500_000,
            10_000_000,
            100_000_000,
            123_000_000,
            123_456_000,
            123_456_789,
            999_000_000,
            999_999_000,
            999_999_999,
        ] {
            for secs in [
                0,               // 1970-01-01T00:00:00
                -1,              // 1969-12-31T23:59:59
                951_782_400,     // 2000-02-29 (leap day)
                1_709_164_800,   // 2024-02-29 (leap day)
                1_700_000_000,   // 2023-11-14T22:13:20
                4_107_542_399,   // 2100-02-28T23:59:59 (not a leap year)
                253_402_300_799, // 9999-12-31T23:59:59
                -62_167_219_200, // 0000-01-01T00:00:00
            ] {
                check(at(secs, nanos));
            }
        }
    }

    #[test]
    fn same_bytes_as_chrono_over_many_instants() {
        // A deterministic walk over years 0..=9999 and every precision.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let span = 253_402_300_799_i64 + 62_167_219_200;
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % span as u64) as i64 - 62_167_219_200;
            let raw = (x >> 20) as u32 % 1_000_000_000;
            let nanos = match i % 4 {
                0 => 0,
                1 => raw / 1_000_000 * 1_000_000,
                2 => raw / 1_000 * 1_000,
                _ => raw,
            };
            check(at(secs, nanos));
        }
    }

    #[test]
    fn leap_second_and_out_of_range_years_match_chrono() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap();
        check(Utc.from_utc_datetime(&leap));
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_000_000_000)
            .unwrap();
        check(Utc.from_utc_datetime(&leap));
        // Signed years: chrono's own output.
        check(at(253_402_300_800, 0));
        check(at(-62_167_219_201, 5_000_000));
        check(DateTime::<Utc>::MAX_UTC);
        check(DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn known_output() {
        let ours = serde_json::to_string(&Ours(at(1_700_000_000, 120_000))).unwrap();
        assert_eq!(ours, "\"2023-11-14T22:13:20.000120Z\"");
        let ours = serde_json::to_string(&Ours(at(0, 0))).unwrap();
        assert_eq!(ours, "\"1970-01-01T00:00:00Z\"");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Any instant chrono can hold, leap seconds (nanoseconds past 1e9 at second
        /// 59) included.
        fn instant() -> impl Strategy<Value = DateTime<Utc>> {
            let (min, max) =
                (DateTime::<Utc>::MIN_UTC.timestamp(), DateTime::<Utc>::MAX_UTC.timestamp());
            let nanos = prop_oneof![
                Just(0u32),
                (0u32..1000).prop_map(|ms| ms * 1_000_000),
                (0u32..1_000_000).prop_map(|us| us * 1_000),
                0u32..1_000_000_000,
                1_000_000_000u32..2_000_000_000,
            ];
            (min..=max, nanos).prop_filter_map("in chrono's range", |(secs, nanos)| {
                // A leap second only exists at the 59th second of a minute.
                let secs =
                    if nanos >= 1_000_000_000 { secs - secs.rem_euclid(60) + 59 } else { secs };
                DateTime::from_timestamp(secs, nanos)
            })
        }

        proptest! {
            #[test]
            fn same_bytes_as_chrono(dt in instant()) {
                let chrono = serde_json::to_string(&dt).unwrap();
                prop_assert_eq!(serde_json::to_string(&Ours(dt)).unwrap(), chrono.clone());
                let mut pushed = String::new();
                push_json(&dt, &mut pushed);
                prop_assert_eq!(pushed, chrono);
            }
        }
    }
}
