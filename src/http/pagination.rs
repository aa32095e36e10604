//! The list conventions every `/api` list shares: `limit` (default 50, at most 500) and an opaque
//! `after` cursor; answers are `{"data": [...], "next": cursor-or-null}`.

use serde::{Deserialize, Serialize};

use super::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub after: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::unprocessable(
                "invalid_limit",
                format!("limit must be between 1 and {MAX_LIMIT}, not {n}."),
            )),
        }
    }
}

/// Checks an `after` cursor: the last id of a previous page, which is `{prefix}_` and 32
/// lower-case hex digits (`ids::new_id`), or one of a few fixed ids (`env`). Anything else never
/// came from us; taken as is, it would quietly page from an arbitrary point.
pub fn cursor(
    after: Option<String>,
    prefix: &str,
    fixed_ids: &[&str],
) -> Result<Option<String>, ApiError> {
    let Some(after) = after else {
        return Ok(None);
    };
    let made_by_us = after
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| {
            hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
    if made_by_us || fixed_ids.contains(&after.as_str()) {
        return Ok(Some(after));
    }
    Err(ApiError::unprocessable(
        "invalid_cursor",
        "after is not a cursor from this list: pass the `next` value of the previous page.",
    )
    .with_details(serde_json::json!({"field": "after"})))
}

/// A page of a list: `next` is the `after` of the following page, `null` on the last.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says another page exists.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page { data: rows, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_one_of_our_ids_of_the_listed_kind() {
        let good = "ev_0193a1b2c3d4e5f60718293a4b5c6d7e".to_owned();
        assert_eq!(cursor(Some(good.clone()), "ev", &[]).unwrap(), Some(good));
        assert_eq!(cursor(None, "ev", &[]).unwrap(), None);
        assert!(cursor(Some("env".into()), "conn", &["env"]).is_ok());
        for bad in [
            "%%%",
            "ev_",
            "ev_zz",
            "tok_0193a1b2c3d4e5f60718293a4b5c6d7e",
            "' OR 1=1",
        ] {
            let error = cursor(Some(bad.into()), "ev", &[]).unwrap_err();
            assert_eq!(
                (error.status.as_u16(), error.code),
                (422, "invalid_cursor"),
                "{bad}"
            );
        }
    }
}
