//! Exit codes of PRODUCT.md, as one enum so that every command ends with a
//! code that scripts can act on.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every row `created` or `skipped` (for `check`: every row sendable or skipped).
    Success = 0,
    /// The run finished and some rows are `rejected`, `invalid`, `failed` or `unknown`.
    SomeRowsNotCreated = 1,
    /// Nothing was sent: bad usage, mapping, input, credentials missing,
    /// insecure endpoint, results file exists.
    Usage = 2,
    /// The run stopped part-way: 401/403, 404, TLS failure, the service down for good.
    Stopped = 3,
    /// Interrupted (Ctrl-C / SIGTERM) after a clean stop; `--resume` continues it.
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// An error that ends a command with a particular exit code. The message is
/// written for the person running the tool: what went wrong, where, what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fatal {
    pub exit: Exit,
    pub message: String,
}

impl Fatal {
    /// Bad usage, mapping, input or configuration: nothing was sent (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Fatal {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    /// The run stopped part-way (exit 3).
    pub fn stopped(message: impl Into<String>) -> Self {
        Fatal {
            exit: Exit::Stopped,
            message: message.into(),
        }
    }
}

/// A mapping that cannot be used: nothing was sent (exit 2).
impl From<crate::mapping::MappingError> for Fatal {
    fn from(e: crate::mapping::MappingError) -> Self {
        Fatal::usage(e.to_string())
    }
}
