//! Reading JSON bodies and query strings so that a client's mistake is answered with a sentence
//! naming the field (`` `limit`: must be a whole number. ``), not a library's words ("Json
//! deserialize error: invalid digit found in string"). actix's own `web::Json`/`web::Query` drop
//! the field's path, so handlers take [`Json`] and [`Query`] from here (a test keeps it so);
//! serde_path_to_error tracks where in the input the error happened.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::ApiError;

/// A JSON body, read with errors that name the field.
pub struct Json<T>(pub T);

/// A request body as bytes, read within `API_BODY_TIMEOUT_SECS`: actix bounds only the wait for
/// the headers, so a client that stops halfway through its body would otherwise hold the request
/// (and a graceful shutdown) for as long as it likes. Too slow is a 408 `body_timeout` and the
/// connection is closed.
pub struct Body(pub web::Bytes);

/// The query string, read with errors that name the parameter.
pub struct Query<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl FromRequest for Body {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let wait = req
            .app_data::<web::Data<super::AppState>>()
            .map_or(DEFAULT_BODY_TIMEOUT, |state| state.config.api_body_timeout);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            match tokio::time::timeout(wait, body).await {
                Ok(Ok(body)) => Ok(Body(body)),
                Ok(Err(e)) => Err(ApiError::new(
                    e.as_response_error().status_code(),
                    "invalid_json",
                    "The request body could not be read (is it over 256 KiB?).",
                )
                .into()),
                Err(_) => Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "The body did not arrive within {} s (API_BODY_TIMEOUT_SECS).",
                        wait.as_secs()
                    ),
                )
                .closing()
                .into()),
            }
        })
    }
}

/// For an app built without `AppState` (none is, outside unit tests): the setting's default.
const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // Any content type is read as JSON: `curl -d` sends a form type with a JSON body, and
        // a body that is not JSON gets its own clear answer below.
        let body = Body::from_request(req, payload);
        Box::pin(async move {
            let Body(body) = body.await?;
            Ok(Json(parse_json(&body)?))
        })
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            parse_query(req.query_string())
                .map(Query)
                .map_err(Into::into),
        )
    }
}

/// Parses a JSON body; a 400 `invalid_json` names what is wrong and where.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|error| {
        let inner = error.inner();
        if inner.is_syntax() || inner.is_eof() {
            return not_json(body, inner);
        }
        let (message, field) = field_problem(
            &error.path().to_string(),
            without_position(&inner.to_string()),
        );
        with_field(ApiError::bad_request("invalid_json", message), field)
    })?;
    // Text after the value (`{...} x`) is as much a syntax error as a missing brace.
    de.end().map_err(|e| not_json(body, &e))?;
    Ok(value)
}

fn not_json(body: &[u8], error: &serde_json::Error) -> ApiError {
    let message = if body.iter().all(u8::is_ascii_whitespace) {
        "The request body is empty: send a JSON object.".to_owned()
    } else {
        format!(
            "The request body is not valid JSON: {} (line {}, column {}).",
            without_position(&error.to_string()),
            error.line(),
            error.column()
        )
    };
    ApiError::bad_request("invalid_json", message)
}

/// Parses a query string; a 400 `invalid_query` names the parameter.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|error| {
        let (message, field) = field_problem(&error.path().to_string(), &error.inner().to_string());
        with_field(ApiError::bad_request("invalid_query", message), field)
    })
}

/// For actix's own extractors, which lose the field's path: the same words, without the field.
pub fn describe(library_message: &str) -> String {
    let problem = library_message
        .split_once(" error: ")
        .map_or(library_message, |(_, p)| p);
    field_problem("", without_position(problem)).0
}

fn with_field(error: ApiError, field: Option<String>) -> ApiError {
    match field {
        Some(field) => error.with_details(json!({ "field": field })),
        None => error,
    }
}

/// serde_json ends its messages with " at line L column C"; the caller says it better or not at all.
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

/// One sentence for serde's data error `problem` at `path` (`.` is the top level), and the field
/// it concerns.
fn field_problem(path: &str, problem: &str) -> (String, Option<String>) {
    let at = |field: &str| {
        if path == "." || path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(rest) = problem.strip_prefix("missing field ") {
        let field = at(rest.trim_matches('`'));
        return (format!("`{field}` is missing."), Some(field));
    }
    // For these two the path already ends with the field itself.
    let named = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            path.to_owned()
        }
    };
    if let Some(rest) = problem.strip_prefix("unknown field ") {
        let (name, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let field = named(name.trim_matches('`'));
        let known = expected.trim_start_matches("one of ");
        let hint = if known.is_empty() || known.starts_with("nothing") {
            String::new()
        } else {
            format!("; known fields: {known}")
        };
        return (
            format!("`{field}` is not a known field{hint}."),
            Some(field),
        );
    }
    if let Some(rest) = problem.strip_prefix("duplicate field ") {
        let field = named(rest.trim_matches('`'));
        return (format!("`{field}` is given twice."), Some(field));
    }
    let what = requirement(problem);
    if path.is_empty() {
        (format!("A value {what}."), None)
    } else if path == "." {
        let what = what.strip_prefix("must be").unwrap_or(&what).trim();
        (format!("The request must be {what}."), None)
    } else {
        (format!("`{path}`: {what}."), Some(path.to_owned()))
    }
}

/// What a value must be, from serde's "invalid type: …, expected X" or, for query strings, the
/// parse error of the value's type ("invalid digit found in string").
fn requirement(problem: &str) -> String {
    if let Some((_, expected)) = problem.rsplit_once("expected ") {
        let what = if is_integer(expected) {
            "a whole number"
        } else if expected.starts_with("f32") || expected.starts_with("f64") {
            "a number"
        } else if expected.contains("bool") {
            "true or false"
        } else if expected.contains("string") || expected.contains("char") {
            "text"
        } else if expected.contains("sequence") {
            "a list"
        } else if expected.contains("map") || expected.starts_with("struct") {
            "an object"
        } else {
            expected
        };
        return format!("must be {what}");
    }
    let what = if [
        "integer",
        "invalid digit",
        "number too large",
        "number too small",
    ]
    .iter()
    .any(|p| problem.contains(p))
    {
        "a whole number"
    } else if problem.contains("float") {
        "a number"
    } else if problem.contains("`true` or `false`") {
        "true or false"
    } else {
        return problem.to_owned();
    };
    format!("must be {what}")
}

fn is_integer(expected: &str) -> bool {
    [
        "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize", "isize",
    ]
    .iter()
    .any(|t| expected == *t || expected.starts_with(&format!("{t} ")))
        || expected.contains("integer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<i64>,
        after: Option<String>,
        refresh: Option<bool>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        lines: Vec<Line>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Line {
        quantity: u32,
    }

    fn query_error(query: &str) -> (String, Option<serde_json::Value>) {
        let error = parse_query::<Page>(query).unwrap_err();
        (error.message, error.details)
    }

    fn json_error(body: &str) -> String {
        let error = parse_json::<Body>(body.as_bytes()).unwrap_err();
        assert_eq!(error.code, "invalid_json");
        error.message
    }

    /// actix's extractors lose the field's path; handlers use ours.
    #[test]
    fn handlers_read_bodies_and_queries_through_this_module() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.ends_with("extract.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // `: web::Bytes` as a handler's argument would read a body without our timeout.
            for needle in ["web::Json<", "web::Query<", "web::Form<", ": web::Bytes"] {
                assert!(!text.contains(needle), "{} uses {needle}", path.display());
            }
        }
    }

    #[test]
    fn a_bad_query_parameter_is_named() {
        let (message, details) = query_error("limit=abc");
        assert_eq!(message, "`limit`: must be a whole number.");
        assert_eq!(details.unwrap()["field"], "limit");
        assert_eq!(query_error("limit=").0, "`limit`: must be a whole number.");
        assert_eq!(
            query_error("refresh=yes").0,
            "`refresh`: must be true or false."
        );
        let (unknown, _) = query_error("limt=5");
        assert!(
            unknown.starts_with("`limt` is not a known field; known fields: `limit`"),
            "{unknown}"
        );
        assert!(parse_query::<Page>("limit=5&after=x").is_ok());
    }

    #[test]
    fn a_bad_body_says_what_and_where_without_library_words() {
        assert_eq!(
            json_error(""),
            "The request body is empty: send a JSON object."
        );
        let syntax = json_error("{\"name\": ");
        assert!(
            syntax.starts_with("The request body is not valid JSON: "),
            "{syntax}"
        );
        let not_json = json_error("name=x");
        assert!(
            not_json.contains("not valid JSON") && not_json.contains("line 1"),
            "{not_json}"
        );
        assert_eq!(json_error(r#"{"lines": []}"#), "`name` is missing.");
        assert_eq!(
            json_error(r#"{"name": "a", "lines": [{"quantity": "two"}]}"#),
            "`lines[0].quantity`: must be a whole number."
        );
        assert_eq!(
            json_error(r#"{"name": 5, "lines": []}"#),
            "`name`: must be text."
        );
        assert_eq!(json_error("\"x\""), "The request must be an object.");
        let trailing = json_error(r#"{"name": "a", "lines": []} x"#);
        assert!(trailing.contains("not valid JSON"), "{trailing}");
        for message in [syntax, not_json] {
            assert!(
                !message.contains("deserialize") && !message.contains("Json "),
                "{message}"
            );
        }
    }
}
