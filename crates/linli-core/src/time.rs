//! Times are stored as microseconds since the Unix epoch (a BIGINT both SQLite
//! and PostgreSQL sort and compare natively) and travel as protobuf Timestamps.
use chrono::{DateTime, Datelike, TimeZone, Utc};
use prost_types::Timestamp;

use crate::{Error, Result};

pub type Micros = i64;

pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

pub fn to_timestamp(micros: Micros) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

pub fn opt_timestamp(micros: Option<Micros>) -> Option<Timestamp> {
    micros.map(to_timestamp)
}

/// A timestamp this suite made (a stored record's), in microseconds. Request
/// timestamps go through [`from_timestamp`], which checks them.
pub fn micros(ts: &Timestamp) -> Micros {
    ts.seconds * 1_000_000 + i64::from(ts.nanos / 1000)
}

/// Reads a request timestamp, naming `field` if it is out of range.
pub fn from_timestamp(field: &str, ts: &Timestamp) -> Result<Micros> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(Error::invalid(
            field,
            "nanos must be between 0 and 999,999,999",
        ));
    }
    // Years 1900..=9999 cover every real record and keep arithmetic far from overflow.
    if !(-2_208_988_800..=253_402_300_799).contains(&ts.seconds) {
        return Err(Error::invalid(field, "is out of range"));
    }
    Ok(ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000)
}

/// An optional request time, naming `field` if it is out of range.
pub fn optional(field: &str, ts: Option<&Timestamp>) -> Result<Option<Micros>> {
    ts.map(|t| from_timestamp(field, t)).transpose()
}

/// An optional request time that may not lie in the future (beyond a minute of clock skew).
pub fn past_or_now(field: &str, ts: Option<&Timestamp>) -> Result<Micros> {
    let now = now_micros();
    match ts {
        None => Ok(now),
        Some(ts) => {
            let at = from_timestamp(field, ts)?;
            if at > now + 60_000_000 {
                return Err(Error::invalid(field, "is in the future"));
            }
            Ok(at)
        }
    }
}

pub fn to_datetime(micros: Micros) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// China Standard Time (+08:00), the default local zone.
pub fn china_standard_time() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset")
}

/// A moment as people in the zone read it, with the offset: `2026-11-24 16:00 +08:00`.
pub fn local(at: Micros, offset: chrono::FixedOffset) -> String {
    to_datetime(at)
        .with_timezone(&offset)
        .format("%Y-%m-%d %H:%M %:z")
        .to_string()
}

/// The week (Monday 00:00 to the next Monday 00:00, local time) containing `at`.
pub fn week_bounds(at: Micros, offset: chrono::FixedOffset) -> (Micros, Micros) {
    let local = to_datetime(at).with_timezone(&offset);
    let monday = local.date_naive()
        - chrono::Duration::days(i64::from(local.weekday().num_days_from_monday()));
    let start = offset
        .from_local_datetime(&monday.and_hms_opt(0, 0, 0).unwrap_or_default())
        .single()
        .map(|d| d.with_timezone(&Utc).timestamp_micros())
        .unwrap_or(at);
    (start, start + 7 * 86_400_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_the_epoch() {
        for m in [0, 1, 1_606_262_400_123_456, -1_500_000] {
            assert_eq!(from_timestamp("at", &to_timestamp(m)).unwrap(), m);
        }
    }

    #[test]
    fn rejects_bad_timestamps_naming_the_field() {
        let err = from_timestamp(
            "visit.at",
            &Timestamp {
                seconds: 0,
                nanos: -1,
            },
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("visit.at:"), "{err}");
        let future = to_timestamp(now_micros() + 3_600_000_000);
        assert!(past_or_now("at", Some(&future)).is_err());
    }
}
