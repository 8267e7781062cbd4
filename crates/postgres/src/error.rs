//! Errors of the source, classified as retryable (connection lost, server restarting) or
//! permanent (bad configuration, authentication, protocol violations), as Materialize's
//! `is_definite` does.

/// A capture error.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A configuration key with an invalid value.
    #[error("config key `{key}`: {reason}")]
    Config { key: String, reason: String },
    /// Could not reach the server (retryable).
    #[error("cannot connect to Postgres at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The server refused the credentials.
    #[error("authentication failed for user {user:?}: {reason}")]
    Auth { user: String, reason: String },
    /// An error reported by the server.
    #[error("Postgres error {code} during {context}: {message}")]
    Server { context: String, code: String, message: String },
    /// The connection dropped (retryable).
    #[error("connection to Postgres lost during {context}: {reason}")]
    Disconnected { context: String, reason: String },
    /// Bytes that do not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server is not set up for logical replication.
    #[error("{0}")]
    Setup(String),
    /// The session must start again (retryable at once), for the reason given.
    #[error("{0}")]
    Restart(String),
    /// The sink failed permanently.
    #[error(transparent)]
    Sink(#[from] tensorcdc_change::SinkError),
    /// A streamed transaction could not be kept on disk or read back.
    #[error(transparent)]
    Spill(#[from] crate::spill::SpillError),
}

impl CaptureError {
    /// True when retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            CaptureError::Connect { .. } | CaptureError::Disconnected { .. } | CaptureError::Restart(_) => true,
            // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
            // 55006 object_in_use (slot active for another PID, e.g. our own previous
            // connection that the server has not reaped yet), 08xxx connection exceptions.
            CaptureError::Server { code, .. } => matches!(code.as_str(), "57P01" | "57P02" | "57P03" | "55006" | "53300") || code.starts_with("08"),
            CaptureError::Sink(tensorcdc_change::SinkError::Retryable(_)) => true,
            _ => false,
        }
    }

    pub(crate) fn from_pg(context: &str, e: tokio_postgres::Error) -> CaptureError {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code().to_string();
            if code == "28P01" || code == "28000" {
                return CaptureError::Auth { user: String::new(), reason: db.message().to_string() };
            }
            return CaptureError::Server { context: context.into(), code, message: db.message().to_string() };
        }
        // Not a server error: the connection failed or closed; worth retrying.
        CaptureError::Disconnected { context: context.into(), reason: e.to_string() }
    }
}

/// A setting (a connector property, a libpq keyword or its environment variable) whose value
/// its key does not take. The caller names the key ([`CaptureError::Config`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    /// The value is not one the key takes.
    #[error("{value:?}: expected {expected}")]
    Value { value: String, expected: &'static str },
    /// A value Debezium takes that tensorcdc does not support, and why.
    #[error("{value:?}: {why}")]
    Unsupported { value: String, why: &'static str },
    /// A key this setting group does not have.
    #[error("unknown setting {0:?}")]
    UnknownKey(String),
    /// Set from an environment variable, which is named.
    #[error("{var}: {source}")]
    Env { var: &'static str, source: Box<SettingError> },
    /// A file the setting names cannot be used (the path and why).
    #[error("{0}")]
    File(String),
}

impl SettingError {
    pub(crate) fn value(value: &str, expected: &'static str) -> SettingError {
        SettingError::Value { value: value.to_string(), expected }
    }
}
