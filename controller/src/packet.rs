//! The heartbeat's wire format: 72 bytes in one UDP datagram, all integers big-endian.
//!
//! ```text
//!  0      2       3       4       5          6        8         12          16      24    32     40    72
//!  +------+-------+-------+-------+----------+--------+---------+-----------+-------+-----+------+-----+
//!  | "OH" | ver=2 | state | flags | priority | 0 0    | node id | interval  | epoch | seq | term | tag |
//!  +------+-------+-------+-------+----------+--------+---------+  (us)     +-------+-----+------+-----+
//! ```
//!
//! `tag` is HMAC-SHA256 over bytes 0..40 with the shared key. Receivers check the length, then
//! the tag, and only then look at the fields, so nothing unauthenticated is interpreted.
//! Flags: bit 0 release, bit 1 takeover, bit 2 VIP held, bit 3 draining; other bits must be
//! zero. `term` is the sender's ownership term (version 2 added it; version 1 had no term and
//! is refused, so both members of a pair must run the same version).

use crate::{
    auth::{Key, TAG_LEN},
    fsm::{Flags, State},
};

/// Length of a heartbeat datagram.
pub const HEARTBEAT_LEN: usize = 72;
/// Length of the part the tag covers.
pub const SIGNED_LEN: usize = HEARTBEAT_LEN - TAG_LEN;
/// Magic at offset 0.
pub const MAGIC: [u8; 2] = *b"OH";
/// The only version.
pub const VERSION: u8 = 2;

const FLAG_RELEASE: u8 = 1 << 0;
const FLAG_TAKEOVER: u8 = 1 << 1;
const FLAG_VIP_HELD: u8 = 1 << 2;
const FLAG_DRAINING: u8 = 1 << 3;
const FLAGS_KNOWN: u8 = FLAG_RELEASE | FLAG_TAKEOVER | FLAG_VIP_HELD | FLAG_DRAINING;

/// Why bytes are not a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Wrong length.
    #[error("heartbeat of {0} bytes, expected {HEARTBEAT_LEN}")]
    Length(usize),
    /// Not our magic.
    #[error("bad magic {0:02x?}")]
    Magic([u8; 2]),
    /// Unknown version.
    #[error("unsupported version {0}")]
    Version(u8),
    /// Unknown state number.
    #[error("unknown state {0}")]
    State(u8),
    /// Unknown flag bits set.
    #[error("unknown flags {0:#04x}")]
    Flags(u8),
    /// Reserved bytes not zero.
    #[error("reserved bytes not zero")]
    Reserved,
    /// Interval of zero.
    #[error("interval of 0")]
    Interval,
}

/// A heartbeat's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Sender's state.
    pub state: State,
    /// Sender's flags.
    pub flags: Flags,
    /// Sender's priority.
    pub priority: u8,
    /// Sender's node id (to spot our own heartbeats coming back).
    pub node_id: u32,
    /// Sender's heartbeat interval in microseconds.
    pub interval_us: u32,
    /// Sender's epoch (increases across restarts).
    pub epoch: u64,
    /// Sequence number within the epoch, from 1.
    pub seq: u64,
    /// The sender's ownership term (see `fsm::Advert::term`).
    pub term: u64,
}

impl Heartbeat {
    /// Writes the signed part (bytes 0..40).
    pub fn emit_signed(&self, buf: &mut [u8; SIGNED_LEN]) {
        let bit = |on: bool, flag: u8| if on { flag } else { 0 };
        let flags = bit(self.flags.release, FLAG_RELEASE)
            | bit(self.flags.takeover, FLAG_TAKEOVER)
            | bit(self.flags.vip_held, FLAG_VIP_HELD)
            | bit(self.flags.draining, FLAG_DRAINING);
        buf[0..2].copy_from_slice(&MAGIC);
        buf[2] = VERSION;
        buf[3] = self.state.to_wire();
        buf[4] = flags;
        buf[5] = self.priority;
        buf[6..8].fill(0);
        buf[8..12].copy_from_slice(&self.node_id.to_be_bytes());
        buf[12..16].copy_from_slice(&self.interval_us.to_be_bytes());
        buf[16..24].copy_from_slice(&self.epoch.to_be_bytes());
        buf[24..32].copy_from_slice(&self.seq.to_be_bytes());
        buf[32..40].copy_from_slice(&self.term.to_be_bytes());
    }

    /// The whole datagram, tagged with `key`.
    pub fn encode(&self, key: &Key) -> [u8; HEARTBEAT_LEN] {
        let mut signed = [0u8; SIGNED_LEN];
        self.emit_signed(&mut signed);
        let mut out = [0u8; HEARTBEAT_LEN];
        out[..SIGNED_LEN].copy_from_slice(&signed);
        out[SIGNED_LEN..].copy_from_slice(&key.sign(&signed));
        out
    }

    /// Reads the fields of a datagram (without checking its tag: see [`open`]).
    pub fn parse(buf: &[u8]) -> Result<Heartbeat, DecodeError> {
        let buf: &[u8; HEARTBEAT_LEN] =
            buf.try_into().map_err(|_| DecodeError::Length(buf.len()))?;
        let magic = [buf[0], buf[1]];
        if magic != MAGIC {
            return Err(DecodeError::Magic(magic));
        }
        if buf[2] != VERSION {
            return Err(DecodeError::Version(buf[2]));
        }
        let state = State::from_wire(buf[3]).ok_or(DecodeError::State(buf[3]))?;
        let flags = buf[4];
        if flags & !FLAGS_KNOWN != 0 {
            return Err(DecodeError::Flags(flags));
        }
        if buf[6] != 0 || buf[7] != 0 {
            return Err(DecodeError::Reserved);
        }
        let u32_at = |o: usize| u32::from_be_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let u64_at = |o: usize| (u64::from(u32_at(o)) << 32) | u64::from(u32_at(o + 4));
        let interval_us = u32_at(12);
        if interval_us == 0 {
            return Err(DecodeError::Interval);
        }
        Ok(Heartbeat {
            state,
            flags: Flags {
                release: flags & FLAG_RELEASE != 0,
                takeover: flags & FLAG_TAKEOVER != 0,
                vip_held: flags & FLAG_VIP_HELD != 0,
                draining: flags & FLAG_DRAINING != 0,
            },
            priority: buf[5],
            node_id: u32_at(8),
            interval_us,
            epoch: u64_at(16),
            seq: u64_at(24),
            term: u64_at(32),
        })
    }
}

/// Why a datagram was refused by [`open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not a heartbeat (wrong length; or a well-tagged one with bad fields).
    #[error("malformed: {0}")]
    Malformed(#[from] DecodeError),
    /// The tag does not match: wrong key or altered bytes.
    #[error("bad authentication tag")]
    Forged,
}

/// Checks length and tag, then parses: the receive path.
pub fn open(buf: &[u8], key: &Key) -> Result<Heartbeat, OpenError> {
    if buf.len() != HEARTBEAT_LEN {
        return Err(DecodeError::Length(buf.len()).into());
    }
    if !key.verify(&buf[..SIGNED_LEN], &buf[SIGNED_LEN..]) {
        return Err(OpenError::Forged);
    }
    Ok(Heartbeat::parse(buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Heartbeat {
        Heartbeat {
            state: State::Active,
            flags: Flags {
                release: true,
                takeover: false,
                vip_held: true,
                draining: false,
            },
            priority: 200,
            node_id: 0x0102_0304,
            interval_us: 10_000,
            epoch: 0x1122_3344_5566_7788,
            seq: 42,
            term: 0x0006_2a1b_0c0d_0e0f,
        }
    }

    fn key() -> Key {
        Key::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn golden_signed_part() {
        let mut buf = [0u8; SIGNED_LEN];
        sample().emit_signed(&mut buf);
        #[rustfmt::skip]
        let want: [u8; SIGNED_LEN] = [
            b'O', b'H', 2, 3, 0b101, 200, 0, 0,
            0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x27, 0x10,
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
            0, 0, 0, 0, 0, 0, 0, 42,
            0x00, 0x06, 0x2a, 0x1b, 0x0c, 0x0d, 0x0e, 0x0f,
        ];
        assert_eq!(buf, want);
    }

    #[test]
    fn golden_tag() {
        // Tag computed independently: python3 -c "import hmac,hashlib;
        // print(hmac.new(b"0123456789abcdef"*2, bytes.fromhex(SIGNED), hashlib.sha256).hexdigest())
        let wire = sample().encode(&key());
        let hex: String = wire[SIGNED_LEN..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, GOLDEN_TAG);
    }

    const GOLDEN_TAG: &str = "6e9da34190cde93694ff9618d9d0aa4b7ed19fc7dd93acf2c66244039506fadf";

    #[test]
    fn roundtrip() {
        let wire = sample().encode(&key());
        assert_eq!(open(&wire, &key()), Ok(sample()));
        assert_eq!(Heartbeat::parse(&wire), Ok(sample()));
    }

    #[test]
    fn truncated_and_long() {
        let wire = sample().encode(&key());
        for len in [0, 1, 39, 40, 64, 71] {
            assert_eq!(
                Heartbeat::parse(&wire[..len]),
                Err(DecodeError::Length(len))
            );
            assert_eq!(
                open(&wire[..len], &key()),
                Err(OpenError::Malformed(DecodeError::Length(len)))
            );
        }
        let mut long = wire.to_vec();
        long.push(0);
        assert_eq!(
            open(&long, &key()),
            Err(OpenError::Malformed(DecodeError::Length(73)))
        );
    }

    /// Re-signs a modified signed part, as a peer with the right key but other software would.
    fn resign(mut wire: [u8; HEARTBEAT_LEN], f: impl FnOnce(&mut [u8])) -> [u8; HEARTBEAT_LEN] {
        f(&mut wire[..SIGNED_LEN]);
        let tag = key().sign(&wire[..SIGNED_LEN]);
        wire[SIGNED_LEN..].copy_from_slice(&tag);
        wire
    }

    #[test]
    fn bad_fields() {
        let wire = sample().encode(&key());
        type Mutation = fn(&mut [u8]);
        let cases: [(Mutation, DecodeError); 6] = [
            (|b| b[0] = b'X', DecodeError::Magic([b'X', b'H'])),
            (|b| b[2] = 1, DecodeError::Version(1)),
            (|b| b[3] = 9, DecodeError::State(9)),
            (|b| b[4] = 0x80, DecodeError::Flags(0x80)),
            (|b| b[7] = 1, DecodeError::Reserved),
            (|b| b[12..16].fill(0), DecodeError::Interval),
        ];
        for (f, want) in cases {
            let bad = resign(wire, f);
            assert_eq!(Heartbeat::parse(&bad), Err(want));
            assert_eq!(open(&bad, &key()), Err(OpenError::Malformed(want)));
        }
    }

    #[test]
    fn forged_and_wrong_key() {
        let wire = sample().encode(&key());
        let other = Key::from_bytes(b"another key, 16+ bytes").unwrap();
        assert_eq!(open(&wire, &other), Err(OpenError::Forged));
        // Any flipped bit, in the fields or the tag, is a forgery.
        for i in 0..HEARTBEAT_LEN {
            let mut bad = wire;
            bad[i] ^= 0x01;
            assert_eq!(open(&bad, &key()), Err(OpenError::Forged), "byte {i}");
        }
        // A wrong-version heartbeat with a bad tag is refused as forged, before parsing.
        let mut bad = wire;
        bad[2] = 7;
        assert_eq!(open(&bad, &key()), Err(OpenError::Forged));
    }
}
