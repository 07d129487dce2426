//! The one error type every parser in this crate returns.

/// Why a buffer could not be read as a given header.
///
/// The split between [`Error::Truncated`] and [`Error::BadLength`] is deliberate: `Truncated`
/// means the buffer ends before something the packet says is there (a fixed header, the header
/// length an IHL or GENEVE `opt_len` declares, a total or UDP length), so a longer capture of the
/// same packet might have parsed. `BadLength` means a length field contradicts the format itself
/// (an IHL below 5, a UDP length below 8, an option that overruns its container), so no buffer
/// would help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before the header, or before the length a header field declares.
    #[error("buffer truncated")]
    Truncated,
    /// A length field is inconsistent with the format or with another length field.
    #[error("bad length: {0}")]
    BadLength(&'static str),
    /// A version field holds a value this crate does not speak.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// A checksum does not verify.
    #[error("checksum mismatch")]
    BadChecksum,
    /// A field that must be zero is not.
    #[error("reserved bits set: {0}")]
    ReservedBitsSet(&'static str),
    /// Well-formed, but a feature this crate deliberately does not handle (IPv4 options and
    /// fragments, non-Ethernet ARP, stacked VLAN tags, other ICMPv6 messages, ...).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A field holds a value the protocol forbids.
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// Result alias for this crate.
pub type Result<T> = core::result::Result<T, Error>;
