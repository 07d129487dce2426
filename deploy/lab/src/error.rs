//! Errors of the lab.

use std::time::Duration;

/// Everything that can go wrong building, using or removing a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "the lab creates network namespaces and runs processes in them: run it as root \
         (e.g. `sudo -E cargo xtask lab up`)"
    )]
    NotRoot,
    #[error("invalid lab spec: {0}")]
    InvalidSpec(String),
    #[error("no host `{0}` in this lab")]
    UnknownHost(String),
    #[error("host `{0}` does not run our data plane")]
    NotOurs(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("`{cmd}` did not finish within {after:?} and was killed; output so far: {output}")]
    Timeout {
        cmd: String,
        after: Duration,
        output: String,
    },
    #[error(
        "the data plane on {host} did not become ready: {reason}\n--- log tail ---\n{log_tail}"
    )]
    DataplaneNotReady {
        host: String,
        reason: String,
        log_tail: String,
    },
    #[error("{what} did not happen in time\n{log}")]
    NotReady { what: String, log: String },
    #[error("unexpected output of `{cmd}`: {detail}")]
    Parse { cmd: String, detail: String },
    #[error("namespace {ns}: {source}")]
    Setns {
        ns: String,
        #[source]
        source: std::io::Error,
    },
}

impl LabError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            what: what.into(),
            source,
        }
    }
}
