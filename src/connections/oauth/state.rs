//! The rules of the OAuth `state`: random, stored only as a hash, bound to the person and the
//! session that started the flow, usable once, for ten minutes.

use chrono::{Duration, NaiveDateTime};
use sha2::{Digest, Sha256};

use crate::domain::ids;
use crate::storage::oauth_states::{OauthStateRow, Taken};

/// How long a started "Connect with Stripe" may take.
pub const LIFETIME: Duration = Duration::minutes(10);

/// A fresh state: 32 random bytes as hex (it travels in URLs).
pub fn new_state() -> String {
    hex::encode(ids::random_bytes::<32>())
}

pub fn hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// Why a callback's state is refused; each is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The callback carries no state at all.
    Missing,
    Unknown,
    Reused,
    Expired,
    /// Started by another person.
    OtherUser,
    /// Started by this person in another session (another browser, or before signing out).
    OtherSession,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Unknown => "unknown",
            Refusal::Reused => "reused",
            Refusal::Expired => "expired",
            Refusal::OtherUser => "other_user",
            Refusal::OtherSession => "other_session",
        }
    }
}

/// Judges a state taken from storage for the person (`user_id`) in the session (`session_hash`)
/// who came back with it at `now`; the accepted row says which flow and mode were started.
pub fn judge(
    taken: Taken,
    user_id: &str,
    session_hash: &str,
    now: NaiveDateTime,
) -> Result<OauthStateRow, Refusal> {
    let row = match taken {
        Taken::Unknown => return Err(Refusal::Unknown),
        Taken::Reused(_) => return Err(Refusal::Reused),
        Taken::Fresh(row) => row,
    };
    if row.user_id != user_id {
        Err(Refusal::OtherUser)
    } else if row.session_hash != session_hash {
        Err(Refusal::OtherSession)
    } else if now >= row.expires_at {
        Err(Refusal::Expired)
    } else {
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(now: NaiveDateTime) -> OauthStateRow {
        OauthStateRow {
            state_hash: hash("s"),
            user_id: "usr_1".into(),
            session_hash: "sess_1".into(),
            flow: "connect".into(),
            mode: "test".into(),
            created_at: now,
            expires_at: now + LIFETIME,
            used_at: None,
        }
    }

    #[test]
    fn only_a_fresh_state_of_this_person_and_session_within_ten_minutes_passes() {
        let now = crate::domain::time::now();
        assert!(judge(
            Taken::Fresh(row(now)),
            "usr_1",
            "sess_1",
            now + Duration::minutes(9)
        )
        .is_ok());
        assert_eq!(
            judge(Taken::Fresh(row(now)), "usr_1", "sess_1", now + LIFETIME).unwrap_err(),
            Refusal::Expired
        );
        assert_eq!(
            judge(Taken::Fresh(row(now)), "usr_2", "sess_1", now).unwrap_err(),
            Refusal::OtherUser
        );
        assert_eq!(
            judge(Taken::Fresh(row(now)), "usr_1", "sess_2", now).unwrap_err(),
            Refusal::OtherSession
        );
        assert_eq!(
            judge(Taken::Reused(row(now)), "usr_1", "sess_1", now).unwrap_err(),
            Refusal::Reused
        );
        assert_eq!(
            judge(Taken::Unknown, "usr_1", "sess_1", now).unwrap_err(),
            Refusal::Unknown
        );
    }

    #[test]
    fn states_are_random_and_stored_only_as_a_hash() {
        let (a, b) = (new_state(), new_state());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(hash(&a), hash(&a));
        assert!(!hash(&a).contains(&a));
    }
}
