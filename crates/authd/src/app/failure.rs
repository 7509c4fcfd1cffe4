//! [`StartupFailure`]: why the service could not start, and the exit status that says so.
//! A leaf module: the composition (`startup`) and the features it composes (stores, ops)
//! all tag their start-up errors with it, so it lives below them.

/// Why the service could not start, as the `authd` binary reports it in its exit status
/// (`docs/operations.md`, "Exit codes"). Attached as context to the start-up error, so
/// that [`StartupFailure::of`] finds it however deep the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartupFailure {
    /// The settings are invalid (loaded or built in code).
    #[error("invalid settings")]
    Config,
    /// The SQL store could not be connected or migrated.
    #[error("the SQL store is unavailable")]
    Store,
    /// A listener could not be bound (address in use, no permission).
    #[error("cannot bind a listener")]
    Bind,
}

impl StartupFailure {
    /// The kind of start-up failure `err` is, if it is one.
    pub fn of(err: &anyhow::Error) -> Option<Self> {
        err.downcast_ref::<Self>().copied()
    }

    /// The process exit status of this failure: the `sysexits.h` codes, so that a
    /// service manager can tell them apart (the systemd unit does not restart on
    /// `EX_CONFIG`).
    pub fn exit_code(self) -> u8 {
        match self {
            // EX_CONFIG
            Self::Config => 78,
            // EX_UNAVAILABLE
            Self::Store => 69,
            // EX_OSERR
            Self::Bind => 71,
        }
    }
}
