//! How times and addresses are written into JSON, without the formatting machinery.
//!
//! A listed VM carries two times and an address. Written through `Display` (what the types'
//! own `Serialize` does), each digit reaches the JSON writer as a separate piece to escape, and
//! that was a tenth of a page's time in a profile. These write the same text into a small buffer
//! and hand it over whole: `2026-12-01T11:25:00.123456Z` (UTC, fractional seconds in groups of
//! three digits, none when zero, exactly as chrono writes it) and `10.254.0.32`.

use std::net::Ipv4Addr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

/// Serialises a time as RFC 3339, the text chrono's own serialisation gives.
pub fn time<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0u8; 32];
    match write_time(at, &mut buffer) {
        Some(len) => serializer.serialize_str(ascii(&buffer[..len])),
        // Years outside 0-9999 and leap seconds: chrono's own writing.
        None => serde::Serialize::serialize(at, serializer),
    }
}

/// [`time`] for an optional time (`null` when absent).
pub fn opt_time<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => time(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// Serialises an IPv4 address in dotted decimal.
pub fn ipv4<S: Serializer>(address: &Ipv4Addr, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0u8; 15];
    let len = write_ipv4(address, &mut buffer);
    serializer.serialize_str(ascii(&buffer[..len]))
}

/// Writes `address` in dotted decimal into `out` and returns the length.
pub(crate) fn write_ipv4(address: &Ipv4Addr, out: &mut [u8; 15]) -> usize {
    let mut len = 0;
    for (index, octet) in address.octets().into_iter().enumerate() {
        if index > 0 {
            out[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            out[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            out[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        out[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

/// [`ipv4`] for an optional address (`null` when absent).
pub fn opt_ipv4<S: Serializer>(address: &Option<Ipv4Addr>, serializer: S) -> Result<S::Ok, S::Error> {
    match address {
        Some(address) => ipv4(address, serializer),
        None => serializer.serialize_none(),
    }
}

/// Writes `at` into `out` and returns the length, or `None` where chrono's writing is needed.
pub(crate) fn write_time(at: &DateTime<Utc>, out: &mut [u8; 32]) -> Option<usize> {
    // The date and the time of day once: each of chrono's field getters on a `DateTime` works
    // them out again from the instant.
    let naive = at.naive_utc();
    let (date, clock) = (naive.date(), naive.time());
    let year = u32::try_from(date.year()).ok().filter(|year| *year <= 9999)?;
    let nanos = clock.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let mut len = 0;
    digits(out, &mut len, year, 4);
    for (separator, value) in
        [(b'-', date.month()), (b'-', date.day()), (b'T', clock.hour()), (b':', clock.minute()), (b':', clock.second())]
    {
        out[len] = separator;
        len += 1;
        digits(out, &mut len, value, 2);
    }
    let (fraction, width) = match nanos {
        0 => (0, 0),
        _ if nanos.is_multiple_of(1_000_000) => (nanos / 1_000_000, 3),
        _ if nanos.is_multiple_of(1_000) => (nanos / 1_000, 6),
        _ => (nanos, 9),
    };
    if width > 0 {
        out[len] = b'.';
        len += 1;
        digits(out, &mut len, fraction, width);
    }
    out[len] = b'Z';
    Some(len + 1)
}

/// Writes `value` as `width` decimal digits (leading zeros) at `out[*len..]`.
fn digits(out: &mut [u8], len: &mut usize, value: u32, width: u32) {
    let mut rest = value;
    for at in (*len..*len + width as usize).rev() {
        out[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    *len += width as usize;
}

/// The buffers above hold ASCII digits and punctuation only.
pub(crate) fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn through<T>(
        value: T,
        write: fn(&T, &mut serde_json::Serializer<&mut Vec<u8>>) -> serde_json::Result<()>,
    ) -> String {
        let mut out = Vec::new();
        write(&value, &mut serde_json::Serializer::new(&mut out)).expect("written");
        String::from_utf8(out).expect("text")
    }

    fn same_as_chrono(at: DateTime<Utc>) {
        let ours = through(at, |at, s| time(at, s));
        assert_eq!(ours, serde_json::to_string(&at).expect("chrono"), "for {at:?}");
    }

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        // Every fraction width, the ends of each field, the years chrono writes differently.
        let edges = [
            Utc.with_ymd_and_hms(2026, 12, 1, 11, 25, 0).unwrap(),
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 15, 12, 30, 30).unwrap(),
        ];
        for base in edges {
            for nanos in
                [0, 1, 999_999_999, 120_000_000, 123_456_000, 123_456_789, 100, 1_000, 1_000_000, 1_500_000_000]
            {
                if let Some(at) = base.with_nanosecond(nanos) {
                    same_as_chrono(at);
                }
            }
        }
        // A spread of times over the years a deployment sees, at microsecond precision (what
        // the stores keep) and at nanoseconds.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let micros = (seed % 8_000_000_000_000_000) as i64;
            same_as_chrono(DateTime::from_timestamp_micros(micros).unwrap());
            same_as_chrono(DateTime::from_timestamp_nanos(seed as i64 >> 1));
        }
    }

    #[test]
    fn optional_times_and_addresses_are_null_when_absent() {
        assert_eq!(through(None, |at, s| opt_time(at, s)), "null");
        assert_eq!(through(None, |address, s| opt_ipv4(address, s)), "null");
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(through(Some(at), |at, s| opt_time(at, s)), "\"2026-01-02T03:04:05Z\"");
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut samples: Vec<u32> = vec![0, u32::MAX, 0x0a00_0001, 0x6464_6464, 0x0909_0909, 0xc0a8_0a0a];
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            samples.push(seed as u32);
        }
        for bits in samples {
            let address = Ipv4Addr::from(bits);
            assert_eq!(through(address, |a, s| ipv4(a, s)), format!("\"{address}\""));
            assert_eq!(through(Some(address), |a, s| opt_ipv4(a, s)), format!("\"{address}\""));
        }
    }
}
