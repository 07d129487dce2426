//! The one error type of the crate.

use std::time::Duration;

/// Result of every netlink operation.
pub type Result<T> = std::result::Result<T, NetlinkError>;

/// What went wrong talking to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A socket call failed (not a kernel answer to a request).
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a request: `op` says what was asked, `errno` is positive,
    /// `message` is the kernel's extended-ack text when it gave one.
    #[error("{op}: {}{}", std::io::Error::from_raw_os_error(*errno),
            message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        op: String,
        errno: i32,
        message: Option<String>,
    },
    /// No interface with this name in the socket's namespace.
    #[error("no such link: {0}")]
    NoSuchLink(String),
    /// A reply that does not parse (truncated header or attribute, wrong address size...).
    #[error("malformed netlink message: {0}")]
    Malformed(&'static str),
    /// An argument the kernel could never accept (interface name too long, prefix length
    /// beyond the address size...), refused before anything is sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The kernel does not implement what was asked (it answered EOPNOTSUPP): `what` names
    /// the missing feature, e.g. the kernel option that would provide it.
    #[error("{op}: not supported by this kernel (needs {what})")]
    Unsupported { op: String, what: &'static str },
    /// No complete reply within the socket's timeout.
    #[error("{op}: no reply from the kernel within {timeout:?}")]
    Timeout { op: String, timeout: Duration },
}

impl NetlinkError {
    /// The kernel's errno (positive, e.g. `libc::EEXIST`) when the kernel refused a request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            NetlinkError::Unsupported { .. } => Some(libc::EOPNOTSUPP),
            _ => None,
        }
    }

    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        NetlinkError::Io { context, source }
    }
}

impl From<crate::IfnameError> for NetlinkError {
    fn from(e: crate::IfnameError) -> Self {
        NetlinkError::InvalidArgument(format!("interface name: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_error_names_the_request_and_the_errno() {
        let e = NetlinkError::Kernel {
            op: "add address 192.168.0.200/24 to ifindex 5".into(),
            errno: libc::EEXIST,
            message: None,
        };
        let text = e.to_string();
        assert!(
            text.starts_with("add address 192.168.0.200/24 to ifindex 5: File exists"),
            "{text}"
        );
        assert_eq!(e.errno(), Some(libc::EEXIST));

        let e = NetlinkError::Kernel {
            op: "create veth a/b".into(),
            errno: libc::EINVAL,
            message: Some("bad name".into()),
        };
        assert!(e.to_string().ends_with("(bad name)"), "{e}");
        assert_eq!(NetlinkError::Malformed("x").errno(), None);

        let e = NetlinkError::Unsupported {
            op: "destroy TCP socket".into(),
            what: "CONFIG_INET_DIAG_DESTROY",
        };
        assert_eq!(
            e.to_string(),
            "destroy TCP socket: not supported by this kernel (needs CONFIG_INET_DIAG_DESTROY)"
        );
        assert_eq!(e.errno(), Some(libc::EOPNOTSUPP));
    }
}
