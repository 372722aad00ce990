//! What can go wrong in a command, the exit code each failure maps to, and the hint that says
//! what to do about it.
//!
//! The exit codes are part of the command line's contract (scripts branch on them): never
//! renumber one.

use raftcron_client::{ClientError, ErrorCode};

/// The process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The API refused the request (4xx) or failed (500), or answered something unexpected.
    Api = 1,
    /// Bad arguments or bad input (also clap's own errors).
    Usage = 2,
    /// No node reachable, or the cluster cannot serve now (503: no leader, not ready).
    Unavailable = 3,
    /// A write was sent but its outcome is unknown.
    Unknown = 4,
    /// A local file could not be read or written.
    Local = 5,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments or the input do not make a valid request.
    #[error("{message}")]
    Usage { message: String, hint: Option<String> },
    /// The client failed; `what` says what was being done.
    #[error("{what}: {source}")]
    Client { what: String, source: ClientError },
    /// A local file could not be read or written.
    #[error("{0}")]
    Local(String),
    /// The command ran but its result is a failure (e.g. a node is not ready).
    #[error("{message}")]
    Failed { message: String, exit: Exit },
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::Usage { message: message.into(), hint: None }
    }

    pub fn usage_hint(message: impl Into<String>, hint: impl Into<String>) -> CliError {
        CliError::Usage { message: message.into(), hint: Some(hint.into()) }
    }

    /// The exit code of this failure.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Usage { .. } => Exit::Usage,
            CliError::Client { source, .. } => client_exit(source),
            CliError::Local(_) => Exit::Local,
            CliError::Failed { exit, .. } => *exit,
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            CliError::Usage { hint, .. } => hint.clone(),
            CliError::Client { source, .. } => client_hint(source),
            CliError::Local(_) | CliError::Failed { .. } => None,
        }
    }
}

/// Wraps a client error with what was being done.
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T, CliError>;
}

impl<T> Context<T> for Result<T, ClientError> {
    fn context(self, what: impl Into<String>) -> Result<T, CliError> {
        self.map_err(|source| CliError::Client { what: what.into(), source })
    }
}

/// The exit code of a client error.
pub fn client_exit(e: &ClientError) -> Exit {
    match e {
        ClientError::Api { .. } | ClientError::Status { .. } | ClientError::Decode(_) => Exit::Api,
        ClientError::Unreachable(_) | ClientError::Unavailable(_) => Exit::Unavailable,
        ClientError::Unknown(_) => Exit::Unknown,
        ClientError::Config(_) => Exit::Usage,
        ClientError::Io(_) => Exit::Local,
    }
}

/// The hint for a client error.
pub fn client_hint(e: &ClientError) -> Option<String> {
    let text = match e {
        ClientError::Api { body, .. } => match body.error {
            ErrorCode::AuthenticationRequired => {
                "the API key was refused: check --api-key / RAFTCRON_API_KEY (or --api-key-file); \
                 it may be mistyped, expired or revoked"
            }
            ErrorCode::AccessDenied => {
                "the key is valid but lacks the scope for this command, or is used from outside its \
                 IP allowlist: use a key with the needed scope (`raftcronctl keys get ID` shows a key's scopes)"
            }
            ErrorCode::PlanLimitReached => "the tenant's quota is reached: delete jobs or raise the quota",
            ErrorCode::IntervalTooShort => {
                "the schedule fires more often than the tenant allows: choose a longer interval"
            }
            ErrorCode::NotFound if body.message == "no such route" => {
                "this node does not serve this route: it runs an older raftcron than this raftcronctl"
            }
            ErrorCode::NotFound => "check the id: it does not exist, or belongs to another tenant",
            ErrorCode::ValidationError | ErrorCode::InvalidJson | ErrorCode::BadRequest => {
                "fix the field named in the message and run the command again"
            }
            ErrorCode::Conflict => "the request conflicts with the current state: read it and try again",
            ErrorCode::RateLimitExceeded => {
                return Some(match body.retry_after {
                    Some(s) => format!("too many requests: retry in {s} seconds"),
                    None => "too many requests: retry shortly".into(),
                })
            }
            ErrorCode::InternalError => "the node failed; its log has the detail",
            _ => return None,
        },
        ClientError::Unreachable(_) => {
            "check --url / RAFTCRON_URL (e.g. http://127.0.0.1:7001) and that the nodes are running"
        }
        ClientError::Unavailable(_) => {
            "the cluster has no leader or is not ready: a majority of the nodes must be up; retry shortly \
             (`raftcronctl cluster health` shows each node)"
        }
        ClientError::Unknown(_) => {
            "the change may or may not have been applied: read the current state (e.g. `raftcronctl jobs list`) \
             before retrying"
        }
        ClientError::Config(_) => "check --url (http://HOST:PORT) and the API key",
        ClientError::Status { .. } => "the answer did not come from a raftcron node: check --url",
        ClientError::Decode(_) => "the node answered something this raftcronctl does not understand: check versions",
        ClientError::Io(_) => return None,
    };
    Some(text.to_string())
}

#[cfg(test)]
mod tests {
    use raftcron_client::ErrorBody;

    use super::*;

    fn api(status: u16, code: ErrorCode) -> ClientError {
        ClientError::Api { status, body: ErrorBody { error: code, message: "m".into(), retry_after: Some(7) } }
    }

    #[test]
    fn every_failure_maps_to_its_documented_exit_code() {
        let cases = [
            (api(400, ErrorCode::ValidationError), 1),
            (api(401, ErrorCode::AuthenticationRequired), 1),
            (api(403, ErrorCode::AccessDenied), 1),
            (api(404, ErrorCode::NotFound), 1),
            (api(429, ErrorCode::RateLimitExceeded), 1),
            (api(500, ErrorCode::InternalError), 1),
            (ClientError::Status { status: 502, text: String::new() }, 1),
            (ClientError::Decode("x".into()), 1),
            (ClientError::Config("x".into()), 2),
            (ClientError::Unreachable("x".into()), 3),
            (ClientError::Unavailable("x".into()), 3),
            (ClientError::Unknown("x".into()), 4),
            (ClientError::Io("x".into()), 5),
        ];
        for (e, code) in cases {
            let cli = CliError::Client { what: "doing".into(), source: e };
            assert_eq!(cli.exit().code(), code, "{cli}");
        }
        assert_eq!(CliError::usage("bad").exit(), Exit::Usage);
        assert_eq!(CliError::Local("disk".into()).exit(), Exit::Local);
    }

    #[test]
    fn hints_say_what_to_do() {
        let hint = |e| CliError::Client { what: "x".into(), source: e }.hint().unwrap_or_default();
        assert!(hint(api(401, ErrorCode::AuthenticationRequired)).contains("RAFTCRON_API_KEY"));
        assert!(hint(api(429, ErrorCode::RateLimitExceeded)).contains("7 seconds"));
        assert!(hint(ClientError::Unreachable("x".into())).contains("RAFTCRON_URL"));
        assert!(hint(ClientError::Unknown("x".into())).contains("before retrying"));
        assert!(hint(ClientError::Unavailable("x".into())).contains("majority"));
    }
}
