//! Keyset pagination. Records are listed in id order; ids are UUIDv7, so that
//! is creation order, and a page token is the last id seen. Unlike OFFSET, a
//! page stays correct while records are being added.
use crate::{Db, Error, Result};

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: i64,
    /// Only records with an id after this one.
    pub after: Option<String>,
}

impl PageRequest {
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self> {
        let size = match i64::from(page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(Error::invalid(
                    "page_size",
                    format!("must be between 0 and {MAX_PAGE_SIZE}"),
                ));
            }
        };
        let after = match page_token {
            "" => None,
            t if uuid::Uuid::try_parse(t).is_ok() => Some(t.to_owned()),
            _ => {
                return Err(Error::invalid(
                    "page_token",
                    "is not a token this service issued",
                ));
            }
        };
        Ok(PageRequest { size, after })
    }

    /// The id to list after; the empty string sorts before every id.
    pub fn after_id(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }

    /// How many rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts a fetched batch to the page and returns the token for the next one.
    pub fn finish<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> &str) -> (Vec<T>, String) {
        if rows.len() as i64 > self.size {
            rows.truncate(self.size as usize);
            let token = rows.last().map(|r| id(r).to_owned()).unwrap_or_default();
            (rows, token)
        } else {
            (rows, String::new())
        }
    }
}

/// Fetches one page: `sql` must end with `AND id > $N ORDER BY id LIMIT $N+1`,
/// where `$N` follows the placeholders `binds` fill.
pub async fn fetch_page<T>(
    db: &Db,
    sql: &str,
    binds: Vec<BindValue>,
    page: &PageRequest,
    map: impl Fn(&sqlx::any::AnyRow) -> Result<T>,
    id: impl Fn(&T) -> &str,
) -> Result<(Vec<T>, String)> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = match b {
            BindValue::Text(s) => q.bind(s),
            BindValue::Int(i) => q.bind(i),
        };
    }
    let rows = q
        .bind(page.after_id().to_owned())
        .bind(page.fetch_limit())
        .fetch_all(&db.pool)
        .await?;
    let items = rows.iter().map(map).collect::<Result<Vec<_>>>()?;
    Ok(page.finish(items, id))
}

/// A value bound to a list query's filter placeholders.
pub enum BindValue {
    Text(String),
    Int(i64),
}

impl From<&str> for BindValue {
    fn from(s: &str) -> Self {
        BindValue::Text(s.to_owned())
    }
}
impl From<i64> for BindValue {
    fn from(i: i64) -> Self {
        BindValue::Int(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_and_is_bounded() {
        assert_eq!(PageRequest::parse(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::parse(500, "").unwrap().size, 500);
        for bad in [-1, 501, 1_000_000] {
            let err = PageRequest::parse(bad, "").unwrap_err();
            assert!(err.to_string().starts_with("page_size:"), "{err}");
        }
        assert!(
            PageRequest::parse(10, "not-a-token")
                .unwrap_err()
                .to_string()
                .starts_with("page_token:")
        );
    }

    #[test]
    fn finish_returns_a_token_only_when_more_follow() {
        let page = PageRequest::parse(2, "").unwrap();
        let (rows, token) = page.finish(vec!["a", "b", "c"], |s| s);
        assert_eq!((rows, token.as_str()), (vec!["a", "b"], "b"));
        let (rows, token) = page.finish(vec!["a", "b"], |s| s);
        assert_eq!((rows.len(), token.as_str()), (2, ""));
    }
}
