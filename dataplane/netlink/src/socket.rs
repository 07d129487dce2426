//! The sockets: [`Netlink`] for requests, [`LinkWatcher`] for change notifications.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::msg::{self, LinkChange};
use crate::{Addr, Link, Neighbour, NetlinkError, Result, Route, format_mac};

/// How long a request waits for its reply before `NetlinkError::Timeout`. The kernel answers
/// in microseconds; this only bounds a wedged kernel or a bug.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The kernel fills dump datagrams up to the buffer size user space offers (capped at 32 KiB);
/// bigger single messages are caught by the peek in `Socket::recv`.
const RECV_BUF: usize = 64 * 1024;
/// Receive buffer of the watcher's socket: room for bursts of notifications.
const WATCH_RCVBUF: libc::c_int = 1 << 20;

// <linux/netlink.h> socket options (level SOL_NETLINK).
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// A bound `AF_NETLINK`/`NETLINK_ROUTE` socket.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Opens and binds a route-netlink socket in the calling thread's namespace, subscribed
    /// to `groups`.
    fn open(groups: u32) -> Result<Socket> {
        Socket::open_proto(libc::NETLINK_ROUTE, groups)
    }

    /// The same for netlink protocol `proto` (NETLINK_ROUTE, NETLINK_GENERIC,
    /// NETLINK_SOCK_DIAG).
    pub(crate) fn open_proto(proto: libc::c_int, groups: u32) -> Result<Socket> {
        // SAFETY: plain socket creation; the descriptor is owned right below.
        let raw =
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if raw < 0 {
            return Err(NetlinkError::io(
                "socket(AF_NETLINK)",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: all-zero is a valid sockaddr_nl.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_pid = 0; // the kernel picks a unique port id
        addr.nl_groups = groups;
        // SAFETY: `addr` is a valid sockaddr_nl and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(NetlinkError::io(
                "bind(AF_NETLINK)",
                io::Error::last_os_error(),
            ));
        }
        Ok(Socket { fd })
    }

    pub(crate) fn set_opt(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: `value` is a c_int that lives across the call; the length matches it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&raw const value).cast::<libc::c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(crate) fn set_recv_timeout(&self, timeout: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: `tv` is a timeval that lives across the call; the length matches it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast::<libc::c_void>(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one message to the kernel (port 0, the default destination of an unconnected
    /// netlink socket).
    pub(crate) fn send(&self, bytes: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: `bytes` is valid for reads of its length.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr().cast::<libc::c_void>(),
                    bytes.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one datagram into `buf`, growing it first if the datagram is bigger (a peek
    /// with MSG_TRUNC tells the real size without consuming it), so nothing is ever cut.
    pub(crate) fn recv(&self, buf: &mut Vec<u8>, flags: libc::c_int) -> io::Result<usize> {
        loop {
            // SAFETY: a zero-length read writes nothing (the pointer is `buf`'s, valid anyway);
            // with MSG_PEEK|MSG_TRUNC the kernel only reports the datagram's length.
            let size = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    0,
                    flags | libc::MSG_PEEK | libc::MSG_TRUNC,
                )
            };
            if size < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let size = size as usize;
            if size > buf.len() {
                buf.resize(size, 0);
            }
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                    flags | libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            if n > buf.len() {
                // Only possible if another thread read the peeked datagram in between; the
                // request socket is behind a mutex and the watcher is `&mut`, so this is a
                // bug, reported instead of parsing a cut datagram.
                return Err(io::Error::other("netlink datagram truncated"));
            }
            return Ok(n);
        }
    }
}

/// The reply to one request, read datagram by datagram (a dump spans as many as it needs).
#[derive(Debug)]
pub(crate) struct Reply {
    seq: u32,
    dump: bool,
    /// A dump abandoned half-way would make the kernel refuse the next one (EBUSY), so
    /// after a parse error the dump is read to its end and the error returned then.
    failed: Option<NetlinkError>,
}

impl Reply {
    pub(crate) fn new(seq: u32, dump: bool) -> Self {
        Reply {
            seq,
            dump,
            failed: None,
        }
    }

    /// Takes one received datagram: feeds the request's messages other than
    /// NOOP/ERROR/DONE to `on_reply`, and says whether the request is complete (`Ok(true)`
    /// or the error it ended with) or more datagrams are to come (`Ok(false)`).
    pub(crate) fn datagram(
        &mut self,
        datagram: &[u8],
        op: &dyn Fn() -> String,
        on_reply: &mut impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<bool> {
        for m in msg::messages(datagram) {
            let m = m?;
            // Leftovers of an earlier request that timed out or failed half-way.
            if m.seq != self.seq {
                continue;
            }
            match m.msg_type {
                msg::NLMSG_NOOP => {}
                msg::NLMSG_ERROR => {
                    let ack = msg::parse_ack(&m)?;
                    if ack.errno != 0 {
                        return Err(NetlinkError::Kernel {
                            op: op(),
                            errno: ack.errno,
                            message: ack.message,
                        });
                    }
                    return self.failed.take().map_or(Ok(true), Err);
                }
                msg::NLMSG_DONE => {
                    if let Some(e) = self.failed.take() {
                        return Err(e);
                    }
                    let errno = msg::parse_done(&m);
                    if errno != 0 {
                        return Err(NetlinkError::Kernel {
                            op: op(),
                            errno,
                            message: None,
                        });
                    }
                    return Ok(true);
                }
                msg::NLMSG_OVERRUN => {
                    return Err(NetlinkError::Malformed("NLMSG_OVERRUN in a reply"));
                }
                ty => {
                    if self.failed.is_none()
                        && let Err(e) = on_reply(ty, m.payload)
                    {
                        if !self.dump {
                            return Err(e);
                        }
                        self.failed = Some(e);
                    }
                }
            }
        }
        Ok(false)
    }
}

struct State {
    seq: u32,
    buf: Vec<u8>,
    timeout: Duration,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("seq", &self.seq)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A route-netlink socket for requests, bound to the network namespace of the thread that
/// opened it. `Send + Sync`: requests from several threads are serialised on one socket.
#[derive(Debug)]
pub struct Netlink {
    sock: Socket,
    state: Mutex<State>,
}

impl Netlink {
    /// Opens a request socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        Netlink::open_proto(libc::NETLINK_ROUTE)
    }

    /// A request socket for netlink protocol `proto` (NETLINK_ROUTE, NETLINK_SOCK_DIAG...),
    /// with the same framing, timeouts and error handling.
    pub(crate) fn open_proto(proto: libc::c_int) -> Result<Netlink> {
        let sock = Socket::open_proto(proto, 0)?;
        // Extended acks carry the kernel's reason into our errors, capped acks keep errors
        // from echoing the request. Both are optional: old kernels work without them.
        let _ = sock.set_opt(SOL_NETLINK, NETLINK_EXT_ACK, 1);
        let _ = sock.set_opt(SOL_NETLINK, NETLINK_CAP_ACK, 1);
        sock.set_recv_timeout(DEFAULT_TIMEOUT)
            .map_err(|e| NetlinkError::io("setsockopt(SO_RCVTIMEO)", e))?;
        Ok(Netlink {
            sock,
            state: Mutex::new(State {
                seq: 0,
                buf: vec![0; RECV_BUF],
                timeout: DEFAULT_TIMEOUT,
            }),
        })
    }

    /// Changes how long a request waits for its reply (default 5 s). Zero is refused (to
    /// the socket it would mean "forever").
    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        if timeout.is_zero() {
            return Err(NetlinkError::InvalidArgument("zero netlink timeout".into()));
        }
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.sock
            .set_recv_timeout(timeout)
            .map_err(|e| NetlinkError::io("setsockopt(SO_RCVTIMEO)", e))?;
        st.timeout = timeout;
        Ok(())
    }

    /// Sends `req` and feeds each reply message (type, payload) to `on_reply` until the
    /// request is complete: its ACK, or NLMSG_DONE for a dump. `op` names the request in
    /// errors; it is only called when there is one.
    pub(crate) fn transact(
        &self,
        req: msg::Request,
        op: &dyn Fn() -> String,
        mut on_reply: impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let st = &mut *guard;
        st.seq = st.seq.wrapping_add(1);
        let seq = st.seq;
        let mut reply = Reply::new(seq, req.is_dump());
        self.sock
            .send(&req.finish(seq))
            .map_err(|e| NetlinkError::io("sending a netlink request", e))?;
        loop {
            let n = match self.sock.recv(&mut st.buf, 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(NetlinkError::Timeout {
                        op: op(),
                        timeout: st.timeout,
                    });
                }
                Err(e) => return Err(NetlinkError::io("receiving a netlink reply", e)),
            };
            if reply.datagram(&st.buf[..n], op, &mut on_reply)? {
                return Ok(());
            }
        }
    }

    /// A request answered by an ACK only.
    fn command(&self, req: msg::Request, op: &dyn Fn() -> String) -> Result<()> {
        self.transact(req, op, |_, _| Ok(()))
    }

    fn get_link(&self, req: msg::Request, op: &dyn Fn() -> String) -> Result<Option<Link>> {
        let mut link = None;
        let res = self.transact(req, op, |ty, p| {
            if ty == msg::RTM_NEWLINK {
                link = Some(msg::parse_link(p)?);
            }
            Ok(())
        });
        match res {
            Ok(()) => Ok(link),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The interface named `name`, or `None`.
    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        self.get_link(msg::get_link_by_name(name)?, &|| {
            format!("get link {name:?}")
        })
    }

    /// The interface with index `index`, or `None`.
    pub fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        self.get_link(msg::get_link_by_index(index), &|| {
            format!("get link {index}")
        })
    }

    /// Index of the interface named `name`; `NetlinkError::NoSuchLink` if there is none.
    pub fn index_of(&self, name: &str) -> Result<u32> {
        self.link_by_name(name)?
            .map(|l| l.index)
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_string()))
    }

    /// Every interface in the namespace.
    pub fn links(&self) -> Result<Vec<Link>> {
        let mut links = Vec::new();
        self.transact(msg::dump_links(), &|| "dump links".into(), |ty, p| {
            if ty == msg::RTM_NEWLINK {
                links.push(msg::parse_link(p)?);
            }
            Ok(())
        })?;
        Ok(links)
    }

    /// `ip link add NAME [mtu MTU] type veth peer name PEER [mtu MTU]`: both ends down.
    pub fn veth_create(&self, name: &str, peer: &str, mtu: Option<u32>) -> Result<()> {
        self.command(msg::new_veth(name, peer, mtu)?, &|| {
            format!("create veth {name} with peer {peer}")
        })
    }

    /// `veth_create` with `queues` TX and RX queues on both ends.
    pub fn veth_create_queues(
        &self,
        name: &str,
        peer: &str,
        mtu: Option<u32>,
        queues: u32,
    ) -> Result<()> {
        self.command(
            msg::new_veth_queues(name, peer, mtu, Some(queues))?,
            &|| format!("create veth {name} with peer {peer} and {queues} queues"),
        )
    }

    /// Deletes an interface (for a veth, both ends go).
    pub fn link_delete(&self, index: u32) -> Result<()> {
        self.command(msg::del_link(index), &|| format!("delete link {index}"))
    }

    /// Sets or clears IFF_UP.
    pub fn link_set_up(&self, index: u32, up: bool) -> Result<()> {
        let change = LinkChange {
            up: Some(up),
            ..LinkChange::default()
        };
        self.command(msg::set_link(index, change), &|| {
            format!("set link {index} {}", if up { "up" } else { "down" })
        })
    }

    /// Sets the MTU.
    pub fn link_set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        let change = LinkChange {
            mtu: Some(mtu),
            ..LinkChange::default()
        };
        self.command(msg::set_link(index, change), &|| {
            format!("set MTU {mtu} on link {index}")
        })
    }

    /// Sets the link-layer address.
    pub fn link_set_mac(&self, index: u32, mac: [u8; 6]) -> Result<()> {
        let change = LinkChange {
            mac: Some(mac),
            ..LinkChange::default()
        };
        self.command(msg::set_link(index, change), &|| {
            format!("set MAC {} on link {index}", format_mac(&mac))
        })
    }

    /// Moves the interface into the network namespace `netns` refers to (an open
    /// `/proc/.../ns/net` or `/run/netns/NAME`). It keeps its index if that is free there.
    pub fn link_set_netns(&self, index: u32, netns: BorrowedFd<'_>) -> Result<()> {
        let fd = netns.as_raw_fd();
        let change = LinkChange {
            netns_fd: Some(fd.unsigned_abs()),
            ..LinkChange::default()
        };
        self.command(msg::set_link(index, change), &|| {
            format!("move link {index} to the namespace of fd {fd}")
        })
    }

    /// `ip addr add ADDR/PREFIX dev INDEX`; fails with EEXIST if it is there already. For
    /// IPv6, `nodad` sets IFA_F_NODAD so the address is usable at once (a VIP must be).
    pub fn addr_add(&self, index: u32, addr: IpAddr, prefix_len: u8, nodad: bool) -> Result<()> {
        self.command(
            msg::addr_change(true, index, addr, prefix_len, nodad)?,
            &|| format!("add address {addr}/{prefix_len} to ifindex {index}"),
        )
    }

    /// `ip addr del ADDR/PREFIX dev INDEX`; fails with EADDRNOTAVAIL if it is not there.
    pub fn addr_del(&self, index: u32, addr: IpAddr, prefix_len: u8) -> Result<()> {
        self.command(
            msg::addr_change(false, index, addr, prefix_len, false)?,
            &|| format!("delete address {addr}/{prefix_len} from ifindex {index}"),
        )
    }

    /// IPv4 and IPv6 addresses, of one interface or of all.
    pub fn addrs(&self, index: Option<u32>) -> Result<Vec<Addr>> {
        let mut out = Vec::new();
        self.transact(msg::dump_addrs(), &|| "dump addresses".into(), |ty, p| {
            if ty == msg::RTM_NEWADDR
                && let Some(a) = msg::parse_addr(p)?
                && index.is_none_or(|i| i == a.index)
            {
                out.push(a);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// `ip route get DST`: the output interface, next hop and source the kernel would use.
    /// No route is a kernel error (ENETUNREACH, EHOSTUNREACH...).
    pub fn route_get(&self, dst: IpAddr) -> Result<Route> {
        self.route_request(msg::get_route(dst), &|| format!("route get {dst}"))
    }

    /// `ip route get DST oif INDEX`: the route to `dst` through interface `oif` only.
    pub fn route_get_via(&self, dst: IpAddr, oif: u32) -> Result<Route> {
        self.route_request(msg::get_route_via(dst, oif), &|| {
            format!("route get {dst} oif {oif}")
        })
    }

    fn route_request(&self, req: msg::Request, what: &dyn Fn() -> String) -> Result<Route> {
        let mut route = None;
        self.transact(req, what, |ty, p| {
            if ty == msg::RTM_NEWROUTE {
                route = Some(msg::parse_route(p)?);
            }
            Ok(())
        })?;
        route.ok_or(NetlinkError::Malformed(
            "route get answered without a route",
        ))
    }

    /// Where a frame for `dst` goes: the route, and the neighbour entry of its next hop (the
    /// gateway, or `dst` itself on a connected subnet), `None` if the kernel has none yet.
    /// Two requests; neither makes the kernel start resolving.
    pub fn next_hop(&self, dst: IpAddr) -> Result<(Route, Option<Neighbour>)> {
        let route = self.route_get(dst)?;
        let neighbour = self.neighbour(route.oif, route.gateway.unwrap_or(dst))?;
        Ok((route, neighbour))
    }

    /// ARP and neighbour-discovery entries, of one interface or of all.
    pub fn neighbours(&self, index: Option<u32>) -> Result<Vec<Neighbour>> {
        let mut out = Vec::new();
        self.transact(msg::dump_neighs(), &|| "dump neighbours".into(), |ty, p| {
            if ty == msg::RTM_NEWNEIGH
                && let Some(n) = msg::parse_neigh(p)?
                && index.is_none_or(|i| i == n.index)
            {
                out.push(n);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The neighbour entry for `ip` on `index`, or `None` (in whatever state it is: check
    /// [`Neighbour::is_usable`]).
    pub fn neighbour(&self, index: u32, ip: IpAddr) -> Result<Option<Neighbour>> {
        let mut found = None;
        let res = self.transact(
            msg::get_neigh(index, ip),
            &|| format!("get neighbour {ip} on ifindex {index}"),
            |ty, p| {
                if ty == msg::RTM_NEWNEIGH {
                    found = msg::parse_neigh(p)?;
                }
                Ok(())
            },
        );
        match res {
            Ok(()) => Ok(found),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `ip neigh replace IP lladdr MAC dev INDEX nud permanent`.
    pub fn neighbour_add_permanent(&self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        self.command(msg::new_neigh_permanent(index, ip, mac), &|| {
            format!(
                "add permanent neighbour {ip} lladdr {} on ifindex {index}",
                format_mac(&mac)
            )
        })
    }

    /// `ip neigh del IP dev INDEX`; fails with ENOENT if there is no such entry.
    pub fn neighbour_del(&self, index: u32, ip: IpAddr) -> Result<()> {
        self.command(msg::del_neigh(index, ip), &|| {
            format!("delete neighbour {ip} on ifindex {index}")
        })
    }
}

/// A change reported by [`LinkWatcher::wait_events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A link was created or changed (state, MTU, address...): its state now.
    Link(Link),
    /// A link was deleted.
    LinkRemoved(Link),
    AddrAdded(Addr),
    AddrRemoved(Addr),
    /// The kernel dropped notifications (socket buffer full): re-read what you watch.
    Overrun,
}

/// A socket subscribed to link and IPv4/IPv6 address changes in the namespace of the thread
/// that opened it, so watchers can sleep until something changes instead of polling.
#[derive(Debug)]
pub struct LinkWatcher {
    sock: Socket,
    buf: Vec<u8>,
}

impl LinkWatcher {
    /// Subscribes to RTMGRP_LINK, RTMGRP_IPV4_IFADDR and RTMGRP_IPV6_IFADDR.
    pub fn open() -> Result<Self> {
        let sock =
            Socket::open(msg::RTMGRP_LINK | msg::RTMGRP_IPV4_IFADDR | msg::RTMGRP_IPV6_IFADDR)?;
        // Best effort: a bigger buffer makes overruns (lost notifications) rarer.
        if sock
            .set_opt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, WATCH_RCVBUF)
            .is_err()
        {
            let _ = sock.set_opt(libc::SOL_SOCKET, libc::SO_RCVBUF, WATCH_RCVBUF);
        }
        Ok(LinkWatcher {
            sock,
            buf: vec![0; RECV_BUF],
        })
    }

    /// The socket, for an event loop: readable when a change is pending. Call `wait` with a
    /// zero timeout to consume it.
    pub fn fd(&self) -> RawFd {
        self.sock.fd.as_raw_fd()
    }

    /// Sleeps until a link or address changes (true) or `timeout` passes (false). Every
    /// pending notification is consumed, so one burst of changes wakes the caller once.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_with(timeout, |_, _| {})
    }

    /// Like `wait`, and says what changed; empty after a timeout. Notifications that do
    /// not parse are skipped (the wake-up still happens through `wait`).
    pub fn wait_events(&mut self, timeout: Duration) -> Result<Vec<WatchEvent>> {
        let mut events = Vec::new();
        self.wait_with(timeout, |ty, p| {
            let ev = match ty {
                msg::RTM_NEWLINK => msg::parse_link(p).ok().map(WatchEvent::Link),
                msg::RTM_DELLINK => msg::parse_link(p).ok().map(WatchEvent::LinkRemoved),
                msg::RTM_NEWADDR => msg::parse_addr(p).ok().flatten().map(WatchEvent::AddrAdded),
                msg::RTM_DELADDR => msg::parse_addr(p)
                    .ok()
                    .flatten()
                    .map(WatchEvent::AddrRemoved),
                msg::NLMSG_OVERRUN => Some(WatchEvent::Overrun),
                _ => None,
            };
            events.extend(ev);
        })?;
        Ok(events)
    }

    fn wait_with(&mut self, timeout: Duration, mut on_msg: impl FnMut(u16, &[u8])) -> Result<bool> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
            if !self.poll(left)? {
                return Ok(false);
            }
            if self.drain(&mut on_msg)? {
                return Ok(true);
            }
            // Readable but nothing there (another reader of the fd): sleep on.
            if left.is_zero() {
                return Ok(false);
            }
        }
    }

    /// Waits up to `timeout` for the socket to become readable.
    fn poll(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
            let ts = libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(left.subsec_nanos()),
            };
            let mut pfd = libc::pollfd {
                fd: self.sock.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, a valid timespec, no signal mask change.
            let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
            if rc > 0 {
                return Ok(true);
            }
            if rc == 0 {
                return Ok(false);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(NetlinkError::io("ppoll on the link watcher", e));
            }
        }
    }

    /// Reads every pending datagram without blocking; true if there was any.
    fn drain(&mut self, on_msg: &mut impl FnMut(u16, &[u8])) -> Result<bool> {
        let mut any = false;
        loop {
            match self.sock.recv(&mut self.buf, libc::MSG_DONTWAIT) {
                Ok(n) => {
                    any = true;
                    for m in msg::messages(&self.buf[..n]) {
                        // A malformed notification still counts as a change; its details
                        // are lost, and the caller re-reads state anyway.
                        let Ok(m) = m else { break };
                        on_msg(m.msg_type, m.payload);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
                // The kernel dropped notifications: something changed, we don't know what.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    any = true;
                    on_msg(msg::NLMSG_OVERRUN, &[]);
                }
                Err(e) => return Err(NetlinkError::io("reading link notifications", e)),
            }
        }
    }
}
