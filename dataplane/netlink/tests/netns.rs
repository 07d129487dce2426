//! Against the real kernel, as root, each test in its own network namespaces.
//!
//! The namespaces are anonymous: a thread unshares one and we keep an open descriptor of it.
//! The kernel destroys it (with every interface in it) when the last descriptor or socket
//! inside goes, so a failing or panicking test leaves nothing behind, and no two tests can
//! collide on a name. Traffic only flows between namespaces a test created.

use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ovl_netlink::{Addr, Link, LinkWatcher, Netlink, NetlinkError, WatchEvent, nud};

mod common;

use common::{Ns, ip};

/// What these tests add to the namespace.
trait NsExt {
    fn netlink(&self) -> Netlink;
    fn disable_ipv6(&self);
}

impl NsExt for Ns {
    fn netlink(&self) -> Netlink {
        self.run(Netlink::open).expect("open netlink")
    }

    /// No IPv6 in this namespace: no link-local addresses appearing after DAD, so a
    /// watcher sees only what the test does.
    fn disable_ipv6(&self) {
        self.run(|| {
            for conf in ["all", "default"] {
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1")
                    .expect("disable IPv6");
            }
        });
    }
}

fn link(nl: &Netlink, name: &str) -> Link {
    nl.link_by_name(name)
        .expect("get link")
        .unwrap_or_else(|| panic!("no link {name}"))
}

/// A veth pair, both ends up; returns (a, b).
fn veth_up(nl: &Netlink, a: &str, b: &str) -> (Link, Link) {
    nl.veth_create(a, b, None).expect("create veth");
    let (ia, ib) = (link(nl, a).index, link(nl, b).index);
    nl.link_set_up(ia, true).expect("up a");
    nl.link_set_up(ib, true).expect("up b");
    (link(nl, a), link(nl, b))
}

/// Polls `f` every 10 ms until it returns Some, for at most `limit`.
fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn veth_create_configure_read_back_delete() {
    let ns = Ns::new();
    let nl = ns.netlink();

    nl.veth_create("ta", "tb", Some(1400)).unwrap();
    let a = link(&nl, "ta");
    let b = link(&nl, "tb");
    assert_eq!(a.kind.as_deref(), Some("veth"));
    assert_eq!((a.mtu, b.mtu), (1400, 1400), "MTU applies to both ends");
    assert_eq!(a.peer_index, Some(b.index));
    assert_eq!(b.peer_index, Some(a.index));
    assert!(!a.admin_up && !a.oper_up && !b.admin_up, "created down");
    assert!(a.mac.is_some());
    assert_eq!(nl.link_by_index(a.index).unwrap().as_ref(), Some(&a));
    assert_eq!(nl.index_of("tb").unwrap(), b.index);

    let mac = [0x02, 0, 0x5e, 0x10, 0x20, 0x30];
    nl.link_set_mac(a.index, mac).unwrap();
    nl.link_set_mtu(a.index, 9000).unwrap();
    let a2 = link(&nl, "ta");
    assert_eq!((a2.mac, a2.mtu), (Some(mac), 9000));
    assert_eq!(link(&nl, "tb").mtu, 1400, "only ta changed");

    nl.link_set_up(a.index, true).unwrap();
    let a3 = link(&nl, "ta");
    assert!(a3.admin_up);
    assert!(!a3.oper_up, "no carrier while the peer is down");
    nl.link_set_up(b.index, true).unwrap();
    assert!(link(&nl, "ta").oper_up, "carrier once both ends are up");
    nl.link_set_up(a.index, false).unwrap();
    let a4 = link(&nl, "ta");
    assert!(!a4.admin_up && !a4.oper_up);

    let names: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in ["lo", "ta", "tb"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }

    let dup = nl.veth_create("ta", "tc", None).unwrap_err();
    assert_eq!(dup.errno(), Some(libc::EEXIST), "{dup}");

    nl.link_delete(a.index).unwrap();
    assert_eq!(nl.link_by_name("ta").unwrap(), None);
    assert_eq!(nl.link_by_name("tb").unwrap(), None, "the peer goes too");
    assert_eq!(nl.link_by_index(b.index).unwrap(), None);
}

#[test]
fn missing_links_and_bad_arguments() {
    let ns = Ns::new();
    let nl = ns.netlink();

    let e = nl.link_delete(9999).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
    assert!(e.to_string().starts_with("delete link 9999: "), "{e}");
    assert_eq!(nl.link_by_index(9999).unwrap(), None);
    assert_eq!(nl.link_by_name("nope").unwrap(), None);
    assert!(matches!(nl.index_of("nope"), Err(NetlinkError::NoSuchLink(n)) if n == "nope"));
    let e = nl.link_set_up(9999, true).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");

    // Refused before sending.
    let e = nl.veth_create("a-name-of-16-chr", "b", None).unwrap_err();
    assert!(matches!(e, NetlinkError::InvalidArgument(_)), "{e}");
    assert_eq!(e.errno(), None);
    let e = nl.addr_add(1, ip("10.0.0.1"), 40, false).unwrap_err();
    assert!(matches!(e, NetlinkError::InvalidArgument(_)), "{e}");
    // The socket still works after errors.
    assert_eq!(link(&nl, "lo").index, 1);
}

#[test]
fn ipv4_and_ipv6_addresses_add_list_delete() {
    let ns = Ns::new();
    let nl = ns.netlink();
    let (a, _b) = veth_up(&nl, "aa", "ab");

    let v4 = ip("10.77.0.1");
    let v6 = ip("fd77::1");
    nl.addr_add(a.index, v4, 24, false).unwrap();
    nl.addr_add(a.index, v6, 64, true).unwrap();

    let mine = nl.addrs(Some(a.index)).unwrap();
    let want4 = Addr {
        index: a.index,
        addr: v4,
        prefix_len: 24,
    };
    let want6 = Addr {
        index: a.index,
        addr: v6,
        prefix_len: 64,
    };
    assert!(mine.contains(&want4), "{mine:?}");
    assert!(mine.contains(&want6), "{mine:?}");
    assert!(mine.iter().all(|x| x.index == a.index));
    assert!(nl.addrs(None).unwrap().contains(&want6));

    // nodad: usable at once. A tentative address cannot be bound; this one can.
    ns.run(|| UdpSocket::bind((v6, 0)))
        .expect("bind the nodad address right after adding it");
    // Without nodad the address is tentative while DAD runs (a second or so).
    let tentative = ip("fd77::2");
    nl.addr_add(a.index, tentative, 64, false).unwrap();
    let e = ns.run(|| UdpSocket::bind((tentative, 0))).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{e}");

    let e = nl.addr_add(a.index, v4, 24, false).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EEXIST));
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "add address 10.77.0.1/24 to ifindex {}: File exists",
            a.index
        )),
        "{text}"
    );

    nl.addr_del(a.index, v4, 24).unwrap();
    nl.addr_del(a.index, v6, 64).unwrap();
    let left = nl.addrs(Some(a.index)).unwrap();
    assert!(!left.contains(&want4) && !left.contains(&want6), "{left:?}");
    let e = nl.addr_del(a.index, v4, 24).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EADDRNOTAVAIL), "{e}");
    // The kernel's extended-ack text comes along.
    assert!(
        matches!(&e, NetlinkError::Kernel { message: Some(m), .. } if !m.is_empty()),
        "{e:?}"
    );
}

#[test]
fn route_get_through_connected_routes() {
    let ns = Ns::new();
    let nl = ns.netlink();
    let (a, _b) = veth_up(&nl, "ra", "rb");
    nl.addr_add(a.index, ip("10.78.0.1"), 24, false).unwrap();
    nl.addr_add(a.index, ip("fd78::1"), 64, true).unwrap();

    let r = nl.route_get(ip("10.78.0.2")).unwrap();
    assert_eq!(r.oif, a.index);
    assert_eq!(r.gateway, None, "connected");
    assert_eq!(r.prefsrc, Some(ip("10.78.0.1")));

    let r6 = nl.route_get(ip("fd78::2")).unwrap();
    assert_eq!(r6.oif, a.index);
    assert_eq!(r6.gateway, None);

    // The next hop of a connected destination is the destination itself.
    assert_eq!(nl.next_hop(ip("10.78.0.2")).unwrap(), (r, None));
    let mac = [0x02, 0, 0, 0, 0x78, 0x02];
    nl.neighbour_add_permanent(a.index, ip("10.78.0.2"), mac)
        .unwrap();
    let (_, n) = nl.next_hop(ip("10.78.0.2")).unwrap();
    assert_eq!(n.map(|n| (n.ip, n.mac)), Some((ip("10.78.0.2"), Some(mac))));

    // No default route in a fresh namespace.
    let e = nl.route_get(ip("192.0.2.1")).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENETUNREACH), "{e}");
    assert!(e.to_string().starts_with("route get 192.0.2.1: "), "{e}");
}

#[test]
fn permanent_neighbour_add_read_delete() {
    let ns = Ns::new();
    let nl = ns.netlink();
    let (a, _b) = veth_up(&nl, "na", "nb");
    let peer = ip("10.79.0.9");
    let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    assert_eq!(nl.neighbour(a.index, peer).unwrap(), None);
    nl.neighbour_add_permanent(a.index, peer, mac).unwrap();
    let n = nl.neighbour(a.index, peer).unwrap().expect("entry");
    assert_eq!((n.index, n.ip, n.mac), (a.index, peer, Some(mac)));
    assert_eq!(n.state, nud::PERMANENT);
    assert!(n.is_usable());
    assert!(nl.neighbours(Some(a.index)).unwrap().contains(&n));
    assert!(nl.neighbours(None).unwrap().contains(&n));

    // Replace keeps one entry with the new MAC; IPv6 works the same way.
    let mac2 = [0x02, 0, 0, 0, 0, 0x99];
    nl.neighbour_add_permanent(a.index, peer, mac2).unwrap();
    assert_eq!(
        nl.neighbour(a.index, peer).unwrap().unwrap().mac,
        Some(mac2)
    );
    let peer6 = ip("fd79::9");
    nl.neighbour_add_permanent(a.index, peer6, mac).unwrap();
    assert_eq!(
        nl.neighbour(a.index, peer6).unwrap().unwrap().mac,
        Some(mac)
    );

    nl.neighbour_del(a.index, peer).unwrap();
    assert_eq!(nl.neighbour(a.index, peer).unwrap(), None);
    let e = nl.neighbour_del(a.index, peer).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOENT), "{e}");
}

#[test]
fn neighbour_learned_from_a_second_namespace() {
    let ns1 = Ns::new();
    let ns2 = Ns::new();
    let nl1 = ns1.netlink();
    let nl2 = ns2.netlink();

    nl1.veth_create("xa", "xb", None).unwrap();
    let xb = link(&nl1, "xb");
    nl1.link_set_netns(xb.index, ns2.fd.as_fd()).unwrap();
    assert_eq!(nl1.link_by_name("xb").unwrap(), None, "moved away");
    let xb = link(&nl2, "xb");
    let xa = link(&nl1, "xa");

    nl2.link_set_up(xb.index, true).unwrap();
    nl2.addr_add(xb.index, ip("10.80.0.2"), 24, false).unwrap();
    nl2.addr_add(xb.index, ip("fd80::2"), 64, true).unwrap();
    nl1.link_set_up(xa.index, true).unwrap();
    nl1.addr_add(xa.index, ip("10.80.0.1"), 24, false).unwrap();
    nl1.addr_add(xa.index, ip("fd80::1"), 64, true).unwrap();

    // One datagram each way makes ns1 resolve ns2's address (ARP, neighbour discovery).
    let sock4 = ns1.run(|| UdpSocket::bind("10.80.0.1:0")).unwrap();
    let sock6 = ns1.run(|| UdpSocket::bind("[fd80::1]:0")).unwrap();
    for (sock, dst) in [(&sock4, ip("10.80.0.2")), (&sock6, ip("fd80::2"))] {
        sock.send_to(b"resolve me", (dst, 9)).unwrap();
        let n = eventually(Duration::from_secs(3), || {
            nl1.neighbour(xa.index, dst)
                .unwrap()
                .filter(|n| n.is_usable())
        })
        .unwrap_or_else(|| panic!("{dst} never resolved"));
        assert_eq!(n.mac, xb.mac, "{dst}: the peer's MAC");
        assert_eq!(n.state, nud::REACHABLE, "{dst}");
        assert!(nl1.neighbours(Some(xa.index)).unwrap().contains(&n));
    }
}

#[test]
fn link_watcher_wakes_on_changes_and_sleeps_otherwise() {
    let ns = Ns::new();
    ns.disable_ipv6();
    let nl = Arc::new(ns.netlink());
    let mut watcher = ns.run(LinkWatcher::open).unwrap();
    assert!(watcher.fd() >= 0);

    let (a, _b) = veth_up(&nl, "wa", "wb");
    // Consume the notifications of the set-up (bounded: they stop quickly).
    let mut quiet = false;
    for _ in 0..50 {
        if !watcher.wait(Duration::from_millis(100)).unwrap() {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "notifications never stopped");

    // Nothing happens: the full timeout passes.
    let t = Instant::now();
    assert!(!watcher.wait(Duration::from_millis(150)).unwrap());
    assert!(
        t.elapsed() >= Duration::from_millis(140),
        "{:?}",
        t.elapsed()
    );

    // The link goes down while we sleep: woken soon after, not at the timeout.
    let nl2 = Arc::clone(&nl);
    let index = a.index;
    let t = Instant::now();
    let downer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        nl2.link_set_up(index, false)
    });
    assert!(watcher.wait(Duration::from_secs(5)).unwrap(), "not woken");
    let waited = t.elapsed();
    downer.join().unwrap().unwrap();
    assert!(
        waited >= Duration::from_millis(90) && waited < Duration::from_secs(2),
        "{waited:?}"
    );

    // What changed, as events.
    nl.link_set_up(a.index, true).unwrap();
    nl.addr_add(a.index, ip("10.81.0.1"), 24, false).unwrap();
    let mut events = Vec::new();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        events.extend(watcher.wait_events(Duration::from_millis(200)).unwrap());
        let up = events
            .iter()
            .any(|e| matches!(e, WatchEvent::Link(l) if l.index == a.index && l.admin_up));
        let addr = events.iter().any(|e| {
            matches!(e, WatchEvent::AddrAdded(x) if x.index == a.index && x.addr == ip("10.81.0.1"))
        });
        if up && addr {
            break;
        }
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, WatchEvent::Link(l) if l.index == a.index && l.admin_up)),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e,
            WatchEvent::AddrAdded(x) if x.index == a.index && x.prefix_len == 24)),
        "{events:?}"
    );

    nl.link_delete(a.index).unwrap();
    let events = watcher.wait_events(Duration::from_secs(2)).unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, WatchEvent::LinkRemoved(l) if l.name == "wa")),
        "{events:?}"
    );
}

#[test]
fn big_dumps_span_many_datagrams() {
    let ns = Ns::new();
    let nl = ns.netlink();
    const PAIRS: usize = 40;
    for i in 0..PAIRS {
        nl.veth_create(&format!("d{i}a"), &format!("d{i}b"), None)
            .unwrap();
    }
    let links = nl.links().unwrap();
    assert_eq!(links.len(), 1 + 2 * PAIRS);
    for i in 0..PAIRS {
        assert!(links.iter().any(|l| l.name == format!("d{i}b")), "d{i}b");
    }
    // Many addresses in one dump too.
    let d0 = link(&nl, "d0a").index;
    for i in 1..=200u32 {
        let a = IpAddr::from([10, 82, (i >> 8) as u8, i as u8]);
        nl.addr_add(d0, a, 32, false).unwrap();
    }
    assert_eq!(nl.addrs(Some(d0)).unwrap().len(), 200);
    // Requests after dumps still match their replies.
    assert_eq!(link(&nl, "d7a").name, "d7a");
}

#[test]
fn shared_between_threads_and_fast() {
    let ns = Ns::new();
    let nl = Arc::new(ns.netlink());
    nl.veth_create("fa", "fb", None).unwrap();
    let fa = link(&nl, "fa");

    const CALLS: u32 = 500;
    let t = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let nl = Arc::clone(&nl);
            let want = fa.clone();
            thread::spawn(move || {
                for _ in 0..CALLS {
                    assert_eq!(nl.link_by_index(want.index).unwrap().as_ref(), Some(&want));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let per_call = t.elapsed() / (2 * CALLS);
    eprintln!("link_by_index: {per_call:?} per call");
    // One request/reply on an open socket: tens of microseconds, not milliseconds.
    assert!(per_call < Duration::from_millis(2), "{per_call:?}");
}

#[test]
fn xdp_features_say_when_a_veth_takes_redirected_frames() {
    let ns = Ns::new();
    let nl = ns.netlink();
    let (a, b) = veth_up(&nl, "xf0", "xf1");
    let features = |index: u32| {
        ns.run(|| ovl_netlink::xdp_features(index))
            .expect("query")
            .expect("this kernel has the netdev family")
    };
    let before = features(a.index);
    assert_ne!(before & ovl_netlink::xdp_act::BASIC, 0, "{before:#x}");
    assert_eq!(
        before & ovl_netlink::xdp_act::NDO_XMIT,
        0,
        "a veth whose peer has no NAPI takes no redirected frames: {before:#x}"
    );
    // GRO on the peer gives it NAPI, and the veth advertises it.
    let out = ns.run(|| {
        std::process::Command::new("ethtool")
            .args(["-K", &b.name, "gro", "on"])
            .output()
            .expect("ethtool")
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = features(a.index);
    assert_ne!(after & ovl_netlink::xdp_act::NDO_XMIT, 0, "{after:#x}");
    // No such device: none, not an error.
    assert_eq!(
        ns.run(|| ovl_netlink::xdp_features(999_999))
            .expect("query"),
        None
    );
}
