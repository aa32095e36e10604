//! The stylesheet and the script, compiled into the binary: no build step, nothing from a CDN.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("static/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("static/app.js"),
    ),
    (
        "invoice-form.js",
        "text/javascript; charset=utf-8",
        include_str!("static/invoice-form.js"),
    ),
];

pub async fn serve(file: web::Path<String>) -> HttpResponse {
    match FILES.iter().find(|(name, _, _)| *name == file.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *content_type))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*body),
        None => HttpResponse::NotFound()
            .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body("no such file"),
    }
}
