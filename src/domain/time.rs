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
    fn times_are_kept_to_the_microsecond_and_shown_as_rfc3339_utc() {
        let at = now();
        assert_eq!(at.and_utc().timestamp_subsec_nanos() % 1_000, 0);
        assert_eq!(
            rfc3339(from_unix(1_700_000_000).unwrap()),
            "2023-11-14T22:13:20Z"
        );
    }
}
