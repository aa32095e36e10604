use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

/// The current UTC time at the precision both backends keep: PostgreSQL stores microseconds and
/// SQLite whatever it is given, so a value must not change on its way through either.
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// Formats a stored time as RFC 3339 UTC, the form the API promises.
pub fn rfc3339(at: NaiveDateTime) -> String {
    DateTime::<Utc>::from_naive_utc_and_offset(at, Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Converts a Stripe Unix timestamp to a stored time; `None` for values chrono cannot hold.
pub fn from_unix(seconds: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(seconds, 0).map(|t| t.naive_utc())
}

/// Reads a duration written with units (`90s`, `30m`, `1h`, `3d`, `1h 30m`; humantime's forms),
/// or bare seconds (`45`). Zero is refused: callers that allow "never" spell it `off`.
pub fn parse_duration(value: &str) -> Result<std::time::Duration, String> {
    let value = value.trim();
    let parsed = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value
            .parse()
            .map(std::time::Duration::from_secs)
            .map_err(|_| format!("`{value}` is out of range"))
    } else {
        humantime::parse_duration(value).map_err(|e| {
            format!("`{value}` is not a duration ({e}): write it as 90s, 30m, 1h or 3d")
        })
    }?;
    if parsed.is_zero() {
        return Err(format!("`{value}` is zero; give a positive duration"));
    }
    Ok(parsed)
}

/// Serialises `NaiveDateTime` fields as RFC 3339 UTC strings in API answers.
pub mod serde_rfc3339 {
    use chrono::NaiveDateTime;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(at: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*at))
    }

    pub mod option {
        use chrono::NaiveDateTime;
        use serde::Serializer;

        pub fn serialize<S: Serializer>(
            at: &Option<NaiveDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => s.serialize_str(&super::super::rfc3339(*at)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("3d").unwrap().as_secs(), 259_200);
        assert_eq!(parse_duration("45").unwrap().as_secs(), 45);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("1d").unwrap().as_secs(), 86_400);
        assert_eq!(parse_duration("1h 30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("1w").unwrap().as_secs(), 604_800);
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5x").unwrap_err().contains("90s, 30m"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("0").is_err());
    }

    #[test]
    fn times_are_kept_to_the_microsecond_and_shown_as_rfc3339_utc() {
        let at = now();
        assert_eq!(at.and_utc().timestamp_subsec_nanos() % 1_000, 0);
        assert_eq!(
            rfc3339(from_unix(1_700_000_000).unwrap()),
            "2023-11-14T22:13:20Z"
        );
    }
}
