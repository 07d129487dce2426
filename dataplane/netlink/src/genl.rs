//! One generic-netlink query: a device's XDP features from the kernel's "netdev" family
//! (Linux 6.3+), which says whether frames may be XDP-redirected to it (`NDO_XMIT`). A veth
//! advertises that only while its peer can receive them (GRO or an XDP program there), which
//! is exactly when such a redirect is not silently dropped.

use std::io;

use crate::msg::{Message, NLMSG_ERROR, NLMSG_HDRLEN, attrs, messages, parse_ack};
use crate::socket::Socket;
use crate::{NetlinkError, Result};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const GENL_HDRLEN: usize = 4;

/// `NETDEV_XDP_ACT_*` bits of [`xdp_features`].
pub mod xdp_act {
    pub const BASIC: u64 = 1;
    pub const REDIRECT: u64 = 2;
    /// Frames may be redirected to the device (`ndo_xdp_xmit`).
    pub const NDO_XMIT: u64 = 4;
    pub const XSK_ZEROCOPY: u64 = 8;
}

/// A generic-netlink request: header, `genlmsghdr` (command, version 1), attributes.
fn request(family: u16, cmd: u8, attrs: &[(u16, &[u8])], seq: u32) -> Vec<u8> {
    let mut b = vec![0u8; NLMSG_HDRLEN];
    b[4..6].copy_from_slice(&family.to_ne_bytes());
    b[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&[cmd, 1, 0, 0]);
    for (ty, data) in attrs {
        let len = 4 + data.len();
        b.extend_from_slice(&(len as u16).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(data);
        b.resize(b.len().next_multiple_of(4), 0);
    }
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b
}

/// The attribute `ty` of a reply message's payload (after the genl header), if present.
fn reply_attr<'a>(m: &Message<'a>, ty: u16) -> Result<Option<&'a [u8]>> {
    let body = m
        .payload
        .get(GENL_HDRLEN..)
        .ok_or(NetlinkError::Malformed("short generic netlink reply"))?;
    for a in attrs(body) {
        let a = a?;
        if a.ty == ty {
            return Ok(Some(a.data));
        }
    }
    Ok(None)
}

/// Sends `req` and returns the first reply message's attribute `ty`; `Ok(None)` when the
/// kernel answers ENOENT (no such family or device) or the attribute is missing.
fn ask(sock: &Socket, req: &[u8], seq: u32, ty: u16) -> Result<Option<Vec<u8>>> {
    sock.send(req)
        .map_err(|e| NetlinkError::io("send(generic netlink)", e))?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = sock
            .recv(&mut buf, 0)
            .map_err(|e| NetlinkError::io("recv(generic netlink)", e))?;
        for m in messages(&buf[..n]) {
            let m = m?;
            if m.seq != seq {
                continue;
            }
            if m.msg_type == NLMSG_ERROR {
                let ack = parse_ack(&m)?;
                if ack.errno == libc::ENOENT || ack.errno == libc::ENODEV {
                    return Ok(None);
                }
                return Err(NetlinkError::io(
                    "generic netlink request",
                    io::Error::from_raw_os_error(ack.errno),
                ));
            }
            return Ok(reply_attr(&m, ty)?.map(<[u8]>::to_vec));
        }
    }
}

/// The XDP features (`xdp_act` bits) of device `ifindex` in the calling thread's network
/// namespace; `Ok(None)` when the kernel has no "netdev" family (before 6.3) or no such
/// device.
pub fn xdp_features(ifindex: u32) -> Result<Option<u64>> {
    let sock = Socket::open_proto(libc::NETLINK_GENERIC, 0)?;
    sock.set_recv_timeout(std::time::Duration::from_secs(2))
        .map_err(|e| NetlinkError::io("setsockopt(SO_RCVTIMEO)", e))?;
    let name = b"netdev\0";
    let req = request(
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        &[(CTRL_ATTR_FAMILY_NAME, name)],
        1,
    );
    let Some(id) = ask(&sock, &req, 1, CTRL_ATTR_FAMILY_ID)? else {
        return Ok(None);
    };
    let family = <[u8; 2]>::try_from(id.as_slice())
        .map(u16::from_ne_bytes)
        .map_err(|_| NetlinkError::Malformed("family id not 16 bits"))?;
    let idx = ifindex.to_ne_bytes();
    let req = request(
        family,
        NETDEV_CMD_DEV_GET,
        &[(NETDEV_A_DEV_IFINDEX, &idx)],
        2,
    );
    let Some(f) = ask(&sock, &req, 2, NETDEV_A_DEV_XDP_FEATURES)? else {
        return Ok(None);
    };
    <[u8; 8]>::try_from(f.as_slice())
        .map(|b| Some(u64::from_ne_bytes(b)))
        .map_err(|_| NetlinkError::Malformed("xdp-features not 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_laid_out_as_the_kernel_reads_them() {
        let r = request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0")],
            7,
        );
        // 16 header + 4 genl + 4 attr header + 7 name, padded to 32.
        assert_eq!(r.len(), 32);
        assert_eq!(u32::from_ne_bytes([r[0], r[1], r[2], r[3]]), 32);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), GENL_ID_CTRL);
        assert_eq!(u32::from_ne_bytes([r[8], r[9], r[10], r[11]]), 7);
        assert_eq!(&r[16..20], &[CTRL_CMD_GETFAMILY, 1, 0, 0]);
        assert_eq!(u16::from_ne_bytes([r[20], r[21]]), 11);
        assert_eq!(&r[24..31], b"netdev\0");
    }
}
