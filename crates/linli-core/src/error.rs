//! The one place where errors become gRPC statuses.
//!
//! Handlers return [`Error`]; its `From` impl decides the status code. Field
//! errors carry the field name both in the message and as a `BadRequest`
//! detail. Internal causes are logged here and never sent to the caller.
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The record is not in a state that allows this (an illegal transition, a full team).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A stale `expected_version`, or a conflicting concurrent write: read again and retry.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// A dependency (database, another service) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            what,
            id: id.into(),
        }
    }

    /// A field that must be set but was empty.
    pub fn required(field: impl Into<String>) -> Self {
        Error::invalid(field, "is required")
    }

    /// The gRPC code this error maps to; see the `From` impl for messages.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Aborted(_) => Code::Aborted,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Database(e) => database_code(e),
            Error::Internal(_) => Code::Internal,
        }
    }
}

/// Classifies a database error by what the caller can do about it.
fn database_code(e: &sqlx::Error) -> Code {
    match e {
        sqlx::Error::RowNotFound => Code::NotFound,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => Code::Unavailable,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // PostgreSQL serialization failure / deadlock; SQLite busy / locked.
            Some("40001") | Some("40P01") | Some("5") | Some("6") | Some("517") | Some("262") => {
                Code::Aborted
            }
            // The record exists already (another request made it first).
            _ if db.is_unique_violation() => Code::AlreadyExists,
            // Text PostgreSQL cannot store (a NUL character) or a number out of its range:
            // the caller's input, where a field check missed it.
            Some("22021") | Some("22P05") | Some("22003") => Code::InvalidArgument,
            _ => Code::Internal,
        },
        _ => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = err.code();
        match err {
            Error::InvalidArgument { field, reason } => {
                let message = format!("{field}: {reason}");
                let details = ErrorDetails::with_bad_request_violation(field, reason);
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::Database(e) => match code {
                Code::Aborted => {
                    tracing::info!(error = %e, "write conflict");
                    Status::aborted("the record was changed concurrently; read it again and retry")
                }
                Code::Unavailable => {
                    tracing::warn!(error = %e, "database unavailable");
                    Status::unavailable("the database is unavailable; retry later")
                }
                Code::NotFound => Status::not_found("not found"),
                Code::InvalidArgument => {
                    tracing::warn!(error = %e, "input the database refused");
                    Status::invalid_argument(
                        "the request holds text or a number the database cannot store (a NUL character, or a number out of range)",
                    )
                }
                Code::AlreadyExists => {
                    tracing::info!(error = %e, "unique violation");
                    Status::already_exists("the record exists already")
                }
                _ => {
                    tracing::error!(error = %e, "database error");
                    Status::internal("internal error")
                }
            },
            Error::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                Status::internal("internal error")
            }
            other => Status::new(code, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Executor};

    #[tokio::test]
    async fn a_unique_violation_is_already_exists_not_a_conflict() {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .await
            .unwrap();
        conn.execute("INSERT INTO t VALUES ('a')").await.unwrap();
        let err = Error::from(
            conn.execute("INSERT INTO t VALUES ('a')")
                .await
                .unwrap_err(),
        );
        assert_eq!(err.code(), Code::AlreadyExists);
        let status = Status::from(err);
        assert_eq!(status.code(), Code::AlreadyExists);
        assert!(!status.message().contains("INSERT"), "{status:?}");
    }
}
