//! The list conventions every `/api` list shares: `limit` (default 50, at most 500) and an opaque
//! `after` cursor; answers are `{"data": [...], "next": cursor-or-null}`.

use serde::{Deserialize, Serialize};

use super::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Serialize)]
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
