//! TCP connections through the kernel's socket-diagnostics netlink (NETLINK_SOCK_DIAG): list
//! the connections on some local addresses, and abort them (`ss -K`), so that a peer whose
//! address moved elsewhere learns at once (a RST) instead of retransmitting into the void.
//!
//! Like the rest of the crate it works in the network namespace of the calling thread, one
//! socket per call. Listing needs no privilege; destroying needs CAP_NET_ADMIN and a kernel
//! built with CONFIG_INET_DIAG_DESTROY (otherwise [`NetlinkError::Unsupported`]).
//!
//! The layouts are `<linux/inet_diag.h>`'s: a request is an `inet_diag_req_v2`, each socket in
//! a reply an `inet_diag_msg` followed by attributes (none asked for, some sent anyway).
//! Ports and addresses are big-endian, everything else host order.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::msg::{self, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, Request};
use crate::socket::Netlink;
use crate::{NetlinkError, Result};

// <linux/sock_diag.h>
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const IPPROTO_TCP: u8 = libc::IPPROTO_TCP as u8;

// <linux/inet_diag.h>
/// `struct inet_diag_sockid`: sport, dport, src[4], dst[4], if, cookie[2].
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid.
const REQ_V2_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_msg`: family, state, timer, retrans, sockid, expires, rqueue, wqueue,
/// uid, inode.
const DIAG_MSG_LEN: usize = 4 + SOCKID_LEN + 20;

/// The TCP states (`<net/tcp_states.h>`), as `inet_diag_msg.idiag_state` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    /// A request socket (a SYN answered, waiting for the handshake's ACK); the kernel
    /// reports these as `SynRecv`.
    NewSynRecv = 12,
    /// Bound but neither listening nor connected (Linux 6.5+).
    BoundInactive = 13,
}

impl TcpState {
    const ALL: [TcpState; 13] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
        TcpState::BoundInactive,
    ];

    /// The state numbered `v` by the kernel, if it is one.
    pub fn from_u8(v: u8) -> Option<TcpState> {
        TcpState::ALL.get(usize::from(v).checked_sub(1)?).copied()
    }

    /// The state's name as `ss` and the kernel's headers spell it, e.g. "ESTABLISHED".
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
            TcpState::BoundInactive => "BOUND_INACTIVE",
        }
    }

    /// A state of a connection with a peer that would notice its end: the ones
    /// [`tcp_connections`] lists (not LISTEN, TIME_WAIT, CLOSE, unconnected).
    pub fn is_live(self) -> bool {
        LIVE_STATES & (1 << self as u32) != 0
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The states dumped, as the `1 << state` bits of `idiag_states`. NEW_SYN_RECV brings the
/// request sockets of half-open connections (reported as SYN_RECV).
const LIVE_STATES: u32 = {
    use TcpState::*;
    let live = [
        Established,
        SynSent,
        SynRecv,
        FinWait1,
        FinWait2,
        CloseWait,
        LastAck,
        Closing,
        NewSynRecv,
    ];
    let mut mask = 0;
    let mut i = 0;
    while i < live.len() {
        mask |= 1 << live[i] as u32;
        i += 1;
    }
    mask
};

/// One TCP socket as the kernel reported it: everything [`destroy`] needs to name exactly
/// this socket again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpConn {
    /// `libc::AF_INET` or `libc::AF_INET6` (as u8): the socket's family. An AF_INET6 socket
    /// may carry IPv4 traffic, with IPv4-mapped addresses (`::ffff:a.b.c.d`).
    pub family: u8,
    pub state: TcpState,
    /// The local address and port, as the socket has them (IPv4-mapped in an AF_INET6
    /// socket talking IPv4; no scope id: see `ifindex`).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The device the socket is bound to (`SO_BINDTODEVICE`, or a link-local scope), 0 if
    /// none.
    pub ifindex: u32,
    /// The kernel's socket cookie, unique per socket for the namespace's lifetime: a new
    /// connection that reuses the same ports is another socket.
    pub cookie: u64,
}

impl TcpConn {
    /// True if the local address is `ip`, also when one of the two is IPv4 and the other
    /// its IPv4-mapped IPv6 form.
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.local.ip().to_canonical() == ip.to_canonical()
    }
}

impl fmt::Display for TcpConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {} {} (cookie {:#x})",
            self.local, self.remote, self.state, self.cookie
        )
    }
}

/// The live TCP connections (ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2,
/// CLOSE_WAIT, LAST_ACK, CLOSING) of the calling thread's network namespace whose local
/// address is one of `local`, IPv4 ones matching IPv4-mapped addresses too. Both ends of a
/// connection within the namespace are two entries.
pub fn tcp_connections(local: &[IpAddr]) -> Result<Vec<TcpConn>> {
    tcp_connections_on(&open()?, local)
}

/// Aborts the socket `conn` names (all of its fields must be as [`tcp_connections`]
/// returned them, the cookie included): the kernel sends the peer a RST and the socket's
/// owner gets ECONNABORTED. A socket that is gone already is not an error.
/// [`NetlinkError::Unsupported`] if the kernel lacks CONFIG_INET_DIAG_DESTROY.
pub fn destroy(conn: &TcpConn) -> Result<()> {
    destroy_on(&open()?, conn).map(|_| ())
}

/// [`destroy`] for each of [`tcp_connections`]`(local)`; returns how many were destroyed
/// (not counting those that went away by themselves in between). Stops at the first error.
pub fn destroy_all(local: &[IpAddr]) -> Result<usize> {
    let nl = open()?;
    let mut destroyed = 0;
    for conn in tcp_connections_on(&nl, local)? {
        if destroy_on(&nl, &conn)? {
            destroyed += 1;
        }
    }
    Ok(destroyed)
}

fn open() -> Result<Netlink> {
    Netlink::open_proto(libc::NETLINK_SOCK_DIAG)
}

fn tcp_connections_on(nl: &Netlink, local: &[IpAddr]) -> Result<Vec<TcpConn>> {
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        nl.transact(
            dump_request(family),
            &|| format!("dump TCP sockets of family {family}"),
            collect(&mut out, local),
        )?;
    }
    Ok(out)
}

/// The reply handler of a dump: keeps the sockets on one of `local`.
fn collect<'a>(
    out: &'a mut Vec<TcpConn>,
    local: &'a [IpAddr],
) -> impl FnMut(u16, &[u8]) -> Result<()> + 'a {
    move |ty, p| {
        if ty == SOCK_DIAG_BY_FAMILY
            && let Some(c) = parse_diag_msg(p)?
            && local.iter().any(|&ip| c.is_local(ip))
        {
            out.push(c);
        }
        Ok(())
    }
}

/// True if destroyed, false if there was no such socket.
fn destroy_on(nl: &Netlink, conn: &TcpConn) -> Result<bool> {
    let op = || format!("destroy TCP socket {conn}");
    match nl.transact(destroy_request(conn)?, &op, |_, _| Ok(())) {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => Err(NetlinkError::Unsupported {
            op: op(),
            what: "CONFIG_INET_DIAG_DESTROY",
        }),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

fn req_v2(family: u8, sockid: &[u8; SOCKID_LEN]) -> [u8; REQ_V2_LEN] {
    let mut r = [0u8; REQ_V2_LEN];
    r[0] = family;
    r[1] = IPPROTO_TCP;
    // [2] idiag_ext: no extensions; [3] pad.
    r[4..8].copy_from_slice(&LIVE_STATES.to_ne_bytes());
    r[8..].copy_from_slice(sockid);
    r
}

/// SOCK_DIAG_BY_FAMILY dump of the live TCP sockets of `family`.
fn dump_request(family: u8) -> Request {
    let mut r = Request::new(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP);
    r.push(&req_v2(family, &[0; SOCKID_LEN]));
    r
}

/// SOCK_DESTROY of exactly `conn` (the kernel looks the socket up by ports, addresses and
/// interface, then checks the cookie; the state bits are not looked at).
fn destroy_request(conn: &TcpConn) -> Result<Request> {
    let mut r = Request::new(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK);
    r.push(&req_v2(conn.family, &sockid(conn)?));
    Ok(r)
}

/// The address as `idiag_src`/`idiag_dst` hold it: IPv4 in the first 4 bytes.
fn diag_addr(family: u8, ip: IpAddr) -> Option<[u8; 16]> {
    let mut a = [0u8; 16];
    match (family, ip) {
        (AF_INET, IpAddr::V4(v4)) => a[..4].copy_from_slice(&v4.octets()),
        (AF_INET6, IpAddr::V6(v6)) => a = v6.octets(),
        _ => return None,
    }
    Some(a)
}

fn sockid(conn: &TcpConn) -> Result<[u8; SOCKID_LEN]> {
    let (Some(src), Some(dst)) = (
        diag_addr(conn.family, conn.local.ip()),
        diag_addr(conn.family, conn.remote.ip()),
    ) else {
        return Err(NetlinkError::InvalidArgument(format!(
            "TCP socket {conn}: addresses do not fit family {}",
            conn.family
        )));
    };
    let mut id = [0u8; SOCKID_LEN];
    id[0..2].copy_from_slice(&conn.local.port().to_be_bytes());
    id[2..4].copy_from_slice(&conn.remote.port().to_be_bytes());
    id[4..20].copy_from_slice(&src);
    id[20..36].copy_from_slice(&dst);
    id[36..40].copy_from_slice(&conn.ifindex.to_ne_bytes());
    // cookie[0] is the low half, cookie[1] the high half, each in host order.
    id[40..44].copy_from_slice(&(conn.cookie as u32).to_ne_bytes());
    id[44..48].copy_from_slice(&((conn.cookie >> 32) as u32).to_ne_bytes());
    Ok(id)
}

fn bytes<const N: usize>(p: &[u8], off: usize) -> Result<[u8; N]> {
    p.get(off..off + N)
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or(NetlinkError::Malformed("short inet_diag_msg"))
}

fn socket_addr(family: u8, addr: [u8; 16], port: u16) -> Result<SocketAddr> {
    match family {
        AF_INET => {
            let [a, b, c, d, ..] = addr;
            Ok(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port).into())
        }
        AF_INET6 => Ok(SocketAddrV6::new(Ipv6Addr::from(addr), port, 0, 0).into()),
        _ => Err(NetlinkError::Malformed(
            "inet_diag_msg of an unknown family",
        )),
    }
}

/// Parses one SOCK_DIAG_BY_FAMILY reply payload; `None` for a state this code does not know.
fn parse_diag_msg(p: &[u8]) -> Result<Option<TcpConn>> {
    if p.len() < DIAG_MSG_LEN {
        return Err(NetlinkError::Malformed("short inet_diag_msg"));
    }
    let [family, state, ..] = bytes::<4>(p, 0)?;
    let sport = u16::from_be_bytes(bytes(p, 4)?);
    let dport = u16::from_be_bytes(bytes(p, 6)?);
    let local = socket_addr(family, bytes(p, 8)?, sport)?;
    let remote = socket_addr(family, bytes(p, 24)?, dport)?;
    let ifindex = u32::from_ne_bytes(bytes(p, 40)?);
    let cookie = u64::from(u32::from_ne_bytes(bytes(p, 44)?))
        | u64::from(u32::from_ne_bytes(bytes(p, 48)?)) << 32;
    // The attributes after the header are not used, but a cut one means a cut message.
    for a in msg::attrs(&p[DIAG_MSG_LEN..]) {
        a?;
    }
    let Some(state) = TcpState::from_u8(state) else {
        return Ok(None);
    };
    Ok(Some(TcpConn {
        family,
        state,
        local,
        remote,
        ifindex,
        cookie,
    }))
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    //! Golden bytes are little-endian (netlink uses host order).
    use super::*;
    use crate::socket::Reply;

    #[test]
    fn live_states_mask() {
        // ESTABLISHED..FIN_WAIT2 (bits 1-5), CLOSE_WAIT, LAST_ACK (8, 9), CLOSING (11),
        // NEW_SYN_RECV (12).
        assert_eq!(LIVE_STATES, 0x1b3e);
        for s in TcpState::ALL {
            let live = !matches!(
                s,
                TcpState::TimeWait | TcpState::Close | TcpState::Listen | TcpState::BoundInactive
            );
            assert_eq!(s.is_live(), live, "{s}");
            assert_eq!(TcpState::from_u8(s as u8), Some(s));
        }
        assert_eq!(TcpState::from_u8(0), None);
        assert_eq!(TcpState::from_u8(14), None);
        assert_eq!(TcpState::CloseWait.name(), "CLOSE_WAIT");
        assert_eq!(TcpState::FinWait1.to_string(), "FIN_WAIT1");
    }

    #[test]
    fn dump_request_bytes() {
        let r = dump_request(AF_INET6).finish(0x0a0b_0c0d);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            // nlmsghdr: 72 bytes, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST|NLM_F_DUMP, seq, port 0
            &[72u8, 0, 0, 0, 20, 0, 0x01, 0x03, 0x0d, 0x0c, 0x0b, 0x0a, 0, 0, 0, 0][..],
            // AF_INET6, IPPROTO_TCP, no extensions, pad, idiag_states 0x1b3e
            &[10, 6, 0, 0, 0x3e, 0x1b, 0, 0],
            &[0; SOCKID_LEN],
        ]
        .concat();
        assert_eq!(r, expected);
        assert!(dump_request(AF_INET).is_dump());
        assert_eq!(dump_request(AF_INET).finish(1)[16], 2);
    }

    fn conn_v4() -> TcpConn {
        TcpConn {
            family: AF_INET,
            state: TcpState::Established,
            local: "10.1.2.3:8080".parse().expect("address"),
            remote: "192.168.7.9:45000".parse().expect("address"),
            ifindex: 0,
            cookie: 0x0000_0001_0000_2002,
        }
    }

    #[test]
    fn destroy_request_bytes_ipv4() {
        let r = destroy_request(&conn_v4()).unwrap().finish(3);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            // nlmsghdr: SOCK_DESTROY, NLM_F_REQUEST|NLM_F_ACK
            &[72u8, 0, 0, 0, 21, 0, 0x05, 0x00, 3, 0, 0, 0, 0, 0, 0, 0][..],
            &[2, 6, 0, 0, 0x3e, 0x1b, 0, 0],
            &[0x1f, 0x90, 0xaf, 0xc8],                            // sport 8080, dport 45000
            &[10, 1, 2, 3], &[0; 12],                             // idiag_src
            &[192, 168, 7, 9], &[0; 12],                          // idiag_dst
            &[0, 0, 0, 0],                                        // idiag_if
            &[0x02, 0x20, 0, 0, 1, 0, 0, 0],                      // cookie low, high
        ]
        .concat();
        assert_eq!(r, expected);
    }

    #[test]
    fn destroy_request_bytes_ipv6_mapped_and_bound() {
        let c = TcpConn {
            family: AF_INET6,
            state: TcpState::CloseWait,
            local: "[::ffff:10.0.0.1]:443".parse().unwrap(),
            remote: "[::ffff:10.0.0.2]:50000".parse().unwrap(),
            ifindex: 7,
            cookie: u64::MAX - 1,
        };
        let r = destroy_request(&c).unwrap().finish(4);
        assert_eq!(r.len(), 72);
        assert_eq!(&r[16..20], &[10, 6, 0, 0]);
        assert_eq!(&r[24..28], &[0x01, 0xbb, 0xc3, 0x50]);
        let mapped = |last: u8| [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, last];
        assert_eq!(&r[28..44], &mapped(1));
        assert_eq!(&r[44..60], &mapped(2));
        assert_eq!(&r[60..64], &[7, 0, 0, 0]);
        assert_eq!(
            &r[64..72],
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn destroy_refuses_addresses_of_the_wrong_family() {
        let c = TcpConn {
            family: AF_INET6,
            ..conn_v4()
        };
        assert!(matches!(
            destroy_request(&c),
            Err(NetlinkError::InvalidArgument(_))
        ));
        let c = TcpConn {
            family: 17,
            ..conn_v4()
        };
        assert!(destroy_request(&c).is_err());
    }

    /// One `inet_diag_msg` as the kernel sends it for an AF_INET socket, with the
    /// INET_DIAG_SHUTDOWN (8) and INET_DIAG_CGROUP_ID (21) attributes it adds unasked.
    #[rustfmt::skip]
    fn diag_msg_v4(state: u8, sport: u16, dport: u16, cookie_lo: u8) -> Vec<u8> {
        [
            &[AF_INET, state, 0, 0][..],
            &sport.to_be_bytes(), &dport.to_be_bytes(),
            &[127, 0, 0, 1], &[0; 12],
            &[127, 0, 0, 2], &[0; 12],
            &[0, 0, 0, 0],                        // idiag_if
            &[cookie_lo, 0x10, 0, 0, 0, 0, 0, 0], // cookie
            &[0; 4], &[0; 4], &[0; 4],            // expires, rqueue, wqueue
            &[0xe8, 0x03, 0, 0],                  // uid 1000
            &[0x39, 0x30, 0, 0],                  // inode 12345
            &[5, 0, 8, 0, 0, 0, 0, 0],            // INET_DIAG_SHUTDOWN 0
            &[12, 0, 21, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat()
    }

    fn nlmsg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0x1234u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(m.len().next_multiple_of(4), 0);
        m
    }

    const NLM_F_MULTI: u16 = 2;

    #[test]
    fn diag_msg_parses() {
        let p = diag_msg_v4(1, 8080, 40000, 0x01);
        assert_eq!(p.len(), DIAG_MSG_LEN + 20);
        let c = parse_diag_msg(&p).unwrap().unwrap();
        assert_eq!(
            c,
            TcpConn {
                family: AF_INET,
                state: TcpState::Established,
                local: "127.0.0.1:8080".parse().unwrap(),
                remote: "127.0.0.2:40000".parse().unwrap(),
                ifindex: 0,
                cookie: 0x1001,
            }
        );
        assert!(c.is_local("127.0.0.1".parse().unwrap()));
        assert!(c.is_local("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.is_local("127.0.0.2".parse().unwrap()));
        // Round trip: the destroy request names the socket with the same sockid bytes.
        let r = destroy_request(&c).unwrap().finish(1);
        assert_eq!(&r[24..72], &p[4..52]);
        // An unknown state is skipped, not an error.
        assert_eq!(parse_diag_msg(&diag_msg_v4(99, 1, 2, 3)).unwrap(), None);
    }

    #[test]
    fn mapped_ipv6_socket_parses_and_matches_ipv4() {
        let mut p = diag_msg_v4(8, 443, 50000, 0x02);
        p[0] = AF_INET6;
        p[8..24].copy_from_slice(&"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"::ffff:10.0.0.2".parse::<Ipv6Addr>().unwrap().octets());
        let c = parse_diag_msg(&p).unwrap().unwrap();
        assert_eq!(c.state, TcpState::CloseWait);
        assert_eq!(c.local, "[::ffff:10.0.0.1]:443".parse().unwrap());
        assert!(c.is_local("10.0.0.1".parse().unwrap()));
        assert_eq!(&destroy_request(&c).unwrap().finish(1)[24..72], &p[4..52]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let p = diag_msg_v4(1, 1, 2, 3);
        for cut in 0..p.len() {
            let res = parse_diag_msg(&p[..cut]);
            // Cut right after the header, or only in the first attribute's padding or right
            // after it, what is left is whole; anywhere else it is not.
            if cut == DIAG_MSG_LEN || (DIAG_MSG_LEN + 5..=DIAG_MSG_LEN + 8).contains(&cut) {
                assert!(res.is_ok(), "cut at {cut}");
            } else {
                assert!(
                    matches!(res, Err(NetlinkError::Malformed(_))),
                    "cut at {cut}: {res:?}"
                );
            }
        }
        // The same cut at the message level: the header claims more than the datagram has.
        let m = nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 1, &p);
        for cut in 1..m.len() {
            assert!(
                msg::messages(&m[..cut]).any(|r| r.is_err()),
                "datagram cut at {cut}"
            );
        }
        // An unknown family.
        let mut bad = p.clone();
        bad[0] = 17;
        assert!(parse_diag_msg(&bad).is_err());
    }

    /// Feeds `datagrams` to a dump's reply, as `transact` does; returns what was collected
    /// and how many datagrams were read before the dump was complete.
    fn run_dump(datagrams: &[Vec<u8>], local: &[IpAddr]) -> (Result<Vec<TcpConn>>, usize) {
        let mut out = Vec::new();
        let mut reply = Reply::new(9, true);
        let mut on_reply = collect(&mut out, local);
        let mut read = usize::MAX;
        let mut res = Ok(());
        for (i, d) in datagrams.iter().enumerate() {
            match reply.datagram(d, &|| "dump".into(), &mut on_reply) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => res = Err(e),
            }
            read = i + 1;
            break;
        }
        drop(on_reply);
        (res.map(|()| out), read)
    }

    #[test]
    fn multipart_dump_over_several_datagrams() {
        let first = [
            nlmsg(
                SOCK_DIAG_BY_FAMILY,
                NLM_F_MULTI,
                9,
                &diag_msg_v4(1, 80, 1000, 1),
            ),
            nlmsg(
                SOCK_DIAG_BY_FAMILY,
                NLM_F_MULTI,
                9,
                &diag_msg_v4(2, 81, 1001, 2),
            ),
        ]
        .concat();
        let mut other = diag_msg_v4(1, 82, 1002, 3);
        other[8..12].copy_from_slice(&[10, 9, 9, 9]);
        let second = [
            nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 9, &other),
            // Left over from an earlier request: ignored.
            nlmsg(
                SOCK_DIAG_BY_FAMILY,
                NLM_F_MULTI,
                8,
                &diag_msg_v4(1, 83, 1003, 4),
            ),
            nlmsg(
                SOCK_DIAG_BY_FAMILY,
                NLM_F_MULTI,
                9,
                &diag_msg_v4(4, 84, 1004, 5),
            ),
        ]
        .concat();
        let done = nlmsg(msg::NLMSG_DONE, NLM_F_MULTI, 9, &[0; 4]);
        let all = [first.clone(), second.clone(), done.clone()];

        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let (res, read) = run_dump(&all, &[lo]);
        let conns = res.unwrap();
        assert_eq!(read, 3, "complete only at NLMSG_DONE");
        let ports: Vec<u16> = conns.iter().map(|c| c.local.port()).collect();
        assert_eq!(ports, [80, 81, 84]);
        assert_eq!(conns[1].state, TcpState::SynSent);
        assert_eq!(conns[2].cookie, 0x1005);

        let (res, _) = run_dump(&all, &["10.9.9.9".parse().unwrap(), lo]);
        assert_eq!(res.unwrap().len(), 4);
        let (res, _) = run_dump(&all, &[]);
        assert!(res.unwrap().is_empty());

        // The kernel ending the dump with an error.
        let failed = nlmsg(
            msg::NLMSG_DONE,
            NLM_F_MULTI,
            9,
            &(-libc::EBUSY).to_ne_bytes(),
        );
        let (res, read) = run_dump(&[first.clone(), failed], &[lo]);
        assert_eq!(read, 2);
        assert_eq!(res.unwrap_err().errno(), Some(libc::EBUSY));
        // Or refusing it outright.
        let mut err = (-libc::EPERM).to_ne_bytes().to_vec();
        err.extend_from_slice(&dump_request(AF_INET).finish(9)[..16]);
        let refused = nlmsg(msg::NLMSG_ERROR, 0x100, 9, &err);
        let (res, _) = run_dump(&[refused], &[lo]);
        assert_eq!(res.unwrap_err().errno(), Some(libc::EPERM));

        // A cut socket message is an error, reported only once the dump is over (the
        // datagrams after it are still read).
        let short = diag_msg_v4(1, 85, 1005, 6);
        let cut = nlmsg(
            SOCK_DIAG_BY_FAMILY,
            NLM_F_MULTI,
            9,
            &short[..DIAG_MSG_LEN - 1],
        );
        let (res, read) = run_dump(&[cut, second, done], &[lo]);
        assert_eq!(read, 3);
        assert!(matches!(res, Err(NetlinkError::Malformed(_))), "{res:?}");
    }
}
