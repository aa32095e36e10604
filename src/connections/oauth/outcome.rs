//! How a "Connect with Stripe" ended, as the callback tells the Connections page: a fixed code in
//! the URL (never text from Stripe or the browser), and the sentence the page shows for it.

/// Why connecting failed; `code()` is what `/connections?oauth_error=` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    AccessDenied,
    InvalidGrant,
    InvalidClient,
    ModeMismatch,
    Unreachable,
    State,
    /// The account is already connected with pasted keys.
    AlreadyConnected,
}

impl Failure {
    pub const ALL: [Failure; 7] = [
        Failure::AccessDenied,
        Failure::InvalidGrant,
        Failure::InvalidClient,
        Failure::ModeMismatch,
        Failure::Unreachable,
        Failure::State,
        Failure::AlreadyConnected,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Failure::AccessDenied => "access_denied",
            Failure::InvalidGrant => "invalid_grant",
            Failure::InvalidClient => "invalid_client",
            Failure::ModeMismatch => "mode_mismatch",
            Failure::Unreachable => "unreachable",
            Failure::State => "state",
            Failure::AlreadyConnected => "already_connected",
        }
    }

    pub fn parse(code: &str) -> Option<Failure> {
        Failure::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The sentence on the Connections page.
    pub fn sentence(self) -> &'static str {
        match self {
            Failure::AccessDenied => {
                "Stripe was not connected: access was denied on Stripe's page. Click Connect with \
                 Stripe again and choose Authorize to connect."
            }
            Failure::InvalidGrant => {
                "Stripe was not connected: the authorisation code had expired or was already \
                 used. Click Connect with Stripe again."
            }
            Failure::InvalidClient => {
                "Stripe was not connected: Stripe did not recognise billmirror's client id or \
                 platform key. An administrator should check STRIPE_CONNECT_CLIENT_ID and \
                 STRIPE_PLATFORM_SECRET_KEY."
            }
            Failure::ModeMismatch => {
                "Stripe was not connected: the authorisation was for the other mode (test data \
                 on a live button, or live on a test one). Use the button of the mode you \
                 authorised in."
            }
            Failure::Unreachable => {
                "Stripe was not connected: Stripe could not be reached to complete the \
                 authorisation. Nothing was saved; try again in a moment."
            }
            Failure::State => {
                "Stripe was not connected: the sign-in link was not started by you in this \
                 session, was used already, or is more than ten minutes old. Click Connect with \
                 Stripe again."
            }
            Failure::AlreadyConnected => {
                "Stripe was not connected: this account is already connected with pasted keys. \
                 Disconnect that connection first to connect it with Stripe instead."
            }
        }
    }
}

/// The Connections page after the callback.
pub fn connected_location(connection_id: &str) -> String {
    format!(
        "/connections?oauth=connected&connection={}",
        form_urlencoded::byte_serialize(connection_id.as_bytes()).collect::<String>()
    )
}

pub fn failed_location(failure: Failure) -> String {
    format!("/connections?oauth_error={}", failure.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_and_has_its_own_sentence() {
        for failure in Failure::ALL {
            assert_eq!(Failure::parse(failure.code()), Some(failure));
            assert!(failed_location(failure).ends_with(failure.code()));
        }
        let sentences: std::collections::HashSet<_> =
            Failure::ALL.iter().map(|f| f.sentence()).collect();
        assert_eq!(sentences.len(), Failure::ALL.len());
        assert_eq!(Failure::parse("<script>"), None);
        assert_eq!(
            connected_location("conn_1"),
            "/connections?oauth=connected&connection=conn_1"
        );
    }
}
