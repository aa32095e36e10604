//! `/`: where a signed-in person starts, with what their role lets them do.

use actix_web::HttpResponse;
use askama::Template;

use super::view::Nav;
use super::WebError;
use crate::people::sessions::Staff;

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Nav,
}

pub async fn page(staff: Staff) -> Result<HttpResponse, WebError> {
    super::ok(&HomePage {
        nav: Nav::new(&staff, "/"),
    })
}
