//! What templates show, prepared in Rust: the navigation a role may use, times as
//! `<time datetime>` (the browser shows them in local time), money by `amount_display` rules.

use chrono::NaiveDateTime;

use crate::domain::{money, time, Role};
use crate::people::sessions::Staff;

/// A link in the navigation, shown only to roles that may open it.
pub struct Link {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The pages and the role each needs: the navigation and the handlers' checks read one table.
/// Only pages that exist are listed (invoices, events and the audit log are not
/// built yet; their work is done through `/api` meanwhile).
pub const PAGES: &[(&str, &str, Role)] = &[
    ("/", "Home", Role::Support),
    ("/customers", "Customers", Role::Support),
    ("/connections", "Connections", Role::Ops),
    ("/users", "Users and tokens", Role::Admin),
];

/// The role a page needs, from [`PAGES`].
pub fn role_for(href: &str) -> Role {
    PAGES
        .iter()
        .find(|(h, _, _)| *h == href)
        .map_or(Role::Admin, |(_, _, role)| *role)
}

/// The header of every signed-in page: who is signed in, the links their role may use, and the
/// CSRF token the page's forms post.
pub struct Nav {
    pub email: String,
    pub role: Role,
    pub csrf: String,
    pub links: Vec<Link>,
}

impl Nav {
    pub fn new(staff: &Staff, current: &str) -> Nav {
        Nav {
            email: staff.email.clone(),
            role: staff.role,
            csrf: staff.csrf_token.clone(),
            links: PAGES
                .iter()
                .filter(|(_, _, role)| staff.may(*role))
                .map(|(href, label, _)| Link {
                    href,
                    label,
                    current: *href == current,
                })
                .collect(),
        }
    }

    pub fn may(&self, role: &Role) -> bool {
        self.role.allows(*role)
    }
}

/// A moment, for `<time datetime="{{ iso }}">{{ text }}</time>`: the text is UTC until the page's
/// script rewrites it in the viewer's time zone.
#[derive(Debug)]
pub struct When {
    pub iso: String,
    pub text: String,
}

impl When {
    pub fn new(at: NaiveDateTime) -> When {
        When {
            iso: time::rfc3339(at),
            text: at.format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }

    /// From an RFC 3339 string, as the JSON answers carry times.
    pub fn parse(iso: &str) -> Option<When> {
        chrono::DateTime::parse_from_rfc3339(iso)
            .ok()
            .map(|at| When::new(at.naive_utc()))
    }

    pub fn opt(at: Option<NaiveDateTime>) -> Option<When> {
        at.map(When::new)
    }
}

pub fn amount(minor: i64, currency: &str) -> String {
    money::display(minor, currency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_navigation_shows_only_what_the_role_may_open() {
        let staff = |role| Staff {
            user_id: "u".into(),
            email: "e@x.com".into(),
            role,
            csrf_token: "t".into(),
            session: "s".into(),
        };
        let hrefs = |role| -> Vec<&str> {
            Nav::new(&staff(role), "/")
                .links
                .iter()
                .map(|l| l.href)
                .collect()
        };
        assert_eq!(hrefs(Role::Support), vec!["/", "/customers"]);
        assert_eq!(hrefs(Role::Ops), vec!["/", "/customers", "/connections"]);
        assert!(hrefs(Role::Admin).contains(&"/users"));
        assert_eq!(role_for("/users"), Role::Admin);
        assert_eq!(role_for("/customers"), Role::Support);
    }
}
