//! Where "Connect with Stripe" sends the browser: Stripe Connect's authorise page, or a Stripe
//! App's install link, each carrying the `state` and the callback address.

use crate::stripe::Mode;

/// The callback Stripe sends the browser back to; registered with Stripe as the redirect URI.
pub fn redirect_uri(public_url: &str) -> String {
    format!(
        "{}/connections/oauth/callback",
        public_url.trim_end_matches('/')
    )
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `{base}/oauth/authorize?response_type=code&client_id=…&scope=read_only&state=…&redirect_uri=…`
pub fn connect_authorize(base: &str, client_id: &str, state: &str, redirect_uri: &str) -> String {
    format!(
        "{}/oauth/authorize?response_type=code&client_id={}&scope=read_only&state={}&redirect_uri={}",
        base.trim_end_matches('/'),
        encode(client_id),
        encode(state),
        encode(redirect_uri)
    )
}

/// The install link with `state` (and `redirect_uri`, when the link does not name one already).
pub fn app_install(link: &str, state: &str, redirect_uri: &str) -> String {
    let (base, fragment) = match link.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (link, None),
    };
    let query = base.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let names_redirect = form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "redirect_uri");
    let mut url = base.to_owned();
    url.push(if base.contains('?') { '&' } else { '?' });
    url.push_str(&format!("state={}", encode(state)));
    if !names_redirect {
        url.push_str(&format!("&redirect_uri={}", encode(redirect_uri)));
    }
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

/// Whether Stripe's answer is of the mode that was asked for.
pub fn mode_matches(asked: Mode, livemode: bool) -> bool {
    (asked == Mode::Live) == livemode
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_url_asks_for_read_only_with_every_parameter_encoded() {
        let url = connect_authorize(
            "https://connect.stripe.com/",
            "ca_123",
            "ab/+c",
            "https://bm.example.com/connections/oauth/callback",
        );
        assert_eq!(
            url,
            "https://connect.stripe.com/oauth/authorize?response_type=code&client_id=ca_123\
             &scope=read_only&state=ab%2F%2Bc\
             &redirect_uri=https%3A%2F%2Fbm.example.com%2Fconnections%2Foauth%2Fcallback"
        );
    }

    #[test]
    fn an_install_link_gets_the_state_and_a_redirect_only_when_it_has_none() {
        assert_eq!(
            app_install("https://marketplace.stripe.com/oauth/v2/chnlink_1/authorize?client_id=ca_1", "s1", "https://b/cb"),
            "https://marketplace.stripe.com/oauth/v2/chnlink_1/authorize?client_id=ca_1&state=s1&redirect_uri=https%3A%2F%2Fb%2Fcb"
        );
        assert_eq!(
            app_install(
                "https://m/x/authorize?redirect_uri=https%3A%2F%2Fb%2Fcb",
                "s1",
                "https://b/cb"
            ),
            "https://m/x/authorize?redirect_uri=https%3A%2F%2Fb%2Fcb&state=s1"
        );
        assert_eq!(
            app_install("https://m/x", "s", "r"),
            "https://m/x?state=s&redirect_uri=r"
        );
    }

    #[test]
    fn the_callback_is_under_the_public_url() {
        assert_eq!(
            redirect_uri("https://bm.example.com/"),
            "https://bm.example.com/connections/oauth/callback"
        );
        assert!(mode_matches(Mode::Live, true));
        assert!(!mode_matches(Mode::Live, false));
        assert!(mode_matches(Mode::Test, false));
    }
}
