//! `sock_diag` against the real kernel, as root, each test in its own network namespace.
//!
//! As in `netns.rs`, the namespaces are anonymous: a thread unshares one and the test keeps a
//! descriptor of it. The kernel destroys it (with every socket and address in it) once that
//! descriptor and the sockets inside are closed, which dropping them does, on success or
//! panic alike; no name can collide with another test's. Traffic stays on the namespace's
//! own loopback.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ovl_netlink::sock_diag::{self, TcpConn, TcpState};

mod common;

use common::{Ns, ip};

/// A connection to `listener` from `to` (the kernel picks the source), accepted:
/// (client, server).
fn connect(listener: &TcpListener, to: SocketAddr) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(to).expect("connect");
    let (server, from) = listener.accept().expect("accept");
    // A dual-stack listener sees an IPv4 client IPv4-mapped.
    let c = client.local_addr().expect("client address");
    assert_eq!((from.ip().to_canonical(), from.port()), (c.ip(), c.port()));
    (client, server)
}

/// What a blocking read on `s` gets, within 5 s.
fn read_result(s: &mut TcpStream) -> std::io::Result<usize> {
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    s.read(&mut [0; 16])
}

fn only(mut conns: Vec<TcpConn>, what: &str) -> TcpConn {
    assert_eq!(conns.len(), 1, "{what}: {conns:?}");
    conns.remove(0)
}

#[test]
fn list_filter_and_destroy_one_side_ipv4() {
    Ns::with_loopback().run(|| {
        // Listening on 127.0.0.2, the client's source is 127.0.0.1 (the loopback route's
        // preferred source): two local addresses to filter on.
        let (s_ip, c_ip) = (ip("127.0.0.2"), ip("127.0.0.1"));
        let listener = TcpListener::bind((s_ip, 0)).expect("listen");
        let s_addr = listener.local_addr().unwrap();
        let (mut client, mut server) = connect(&listener, s_addr);
        let c_addr = client.local_addr().unwrap();
        assert_eq!(c_addr.ip(), c_ip);
        client.write_all(b"ping").unwrap();
        assert_eq!(server.read(&mut [0; 4]).unwrap(), 4);

        let on_server = only(sock_diag::tcp_connections(&[s_ip]).unwrap(), "on 127.0.0.2");
        assert_eq!(on_server.family, libc::AF_INET as u8);
        assert_eq!(on_server.state, TcpState::Established);
        assert_eq!((on_server.local, on_server.remote), (s_addr, c_addr));
        assert_eq!(on_server.ifindex, 0);
        assert_ne!(on_server.cookie, 0);
        let on_client = only(sock_diag::tcp_connections(&[c_ip]).unwrap(), "on 127.0.0.1");
        assert_eq!((on_client.local, on_client.remote), (c_addr, s_addr));
        assert_ne!(on_client.cookie, on_server.cookie);
        let both = sock_diag::tcp_connections(&[c_ip, s_ip]).unwrap();
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both.contains(&on_server) && both.contains(&on_client));
        // The listener is not a connection; other addresses have none.
        assert!(
            sock_diag::tcp_connections(&[ip("10.9.9.9"), ip("::1")])
                .unwrap()
                .is_empty()
        );
        assert!(sock_diag::tcp_connections(&[]).unwrap().is_empty());

        // Another socket's cookie (none has the top bit) names no socket: nothing happens.
        let stale = TcpConn {
            cookie: on_server.cookie ^ 1 << 63,
            ..on_server
        };
        sock_diag::destroy(&stale).unwrap();
        assert_eq!(sock_diag::tcp_connections(&[s_ip]).unwrap(), [on_server]);
        client.write_all(b"ping").unwrap();
        assert_eq!(server.read(&mut [0; 4]).unwrap(), 4);

        sock_diag::destroy(&on_server).unwrap();
        let e = read_result(&mut client).expect_err("the client reads a reset");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        let e = read_result(&mut server).expect_err("the destroyed socket errors");
        assert_eq!(e.raw_os_error(), Some(libc::ECONNABORTED), "{e}");
        assert!(
            sock_diag::tcp_connections(&[c_ip, s_ip])
                .unwrap()
                .is_empty()
        );
        // Gone already: not an error, and nothing counted.
        sock_diag::destroy(&on_server).unwrap();
        assert_eq!(sock_diag::destroy_all(&[c_ip, s_ip]).unwrap(), 0);
        // The listener is untouched.
        let (mut c2, mut s2) = connect(&listener, s_addr);
        c2.write_all(b"pong").unwrap();
        assert_eq!(s2.read(&mut [0; 4]).unwrap(), 4);
    });
}

#[test]
fn ipv4_mapped_and_ipv6_sockets_destroy_all() {
    Ns::with_loopback().run(|| {
        // A dual-stack listener: its IPv4 connections are AF_INET6 sockets with
        // IPv4-mapped addresses.
        let listener = TcpListener::bind("[::]:0").expect("listen");
        let port = listener.local_addr().unwrap().port();
        let (mut c4, _s4) = connect(&listener, SocketAddr::new(ip("127.0.0.2"), port));
        let (mut c6, mut s6) = connect(&listener, SocketAddr::new(ip("::1"), port));

        let mapped = only(
            sock_diag::tcp_connections(&[ip("127.0.0.2")]).unwrap(),
            "on 127.0.0.2",
        );
        assert_eq!(mapped.family, libc::AF_INET6 as u8);
        assert_eq!(
            mapped.local,
            SocketAddr::new(ip("::ffff:127.0.0.2"), port),
            "{mapped}"
        );
        assert_eq!(mapped.remote.ip(), ip("::ffff:127.0.0.1"));
        // The client end is a plain AF_INET socket.
        let c4_conn = only(
            sock_diag::tcp_connections(&[ip("127.0.0.1")]).unwrap(),
            "on 127.0.0.1",
        );
        assert_eq!(c4_conn.family, libc::AF_INET as u8);
        assert_eq!(c4_conn.local, c4.local_addr().unwrap());
        let v6 = sock_diag::tcp_connections(&[ip("::1")]).unwrap();
        assert_eq!(v6.len(), 2, "{v6:?}");
        assert!(v6.iter().all(|c| c.family == libc::AF_INET6 as u8));

        // The mapped server end and both ends on ::1; but destroying one end on ::1 resets
        // the other, usually before its turn comes, and a socket that went away by itself
        // is not counted.
        let n = sock_diag::destroy_all(&[ip("127.0.0.2"), ip("::1")]).unwrap();
        assert!((2..=3).contains(&n), "{n} destroyed");
        let e = read_result(&mut c4).expect_err("reset");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        assert!(read_result(&mut c6).is_err());
        assert!(read_result(&mut s6).is_err());
        let left = sock_diag::tcp_connections(&[ip("127.0.0.1"), ip("127.0.0.2"), ip("::1")]);
        assert!(left.unwrap().is_empty());
    });
}

#[test]
fn dumps_of_hundreds_of_sockets_span_datagrams() {
    Ns::with_loopback().run(|| {
        // 400 sockets make about 40 KB of replies, more than the kernel puts in one datagram.
        let listener = TcpListener::bind("127.0.0.2:0").expect("listen");
        let to = listener.local_addr().unwrap();
        let pairs: Vec<_> = (0..200).map(|_| connect(&listener, to)).collect();
        let all = sock_diag::tcp_connections(&[ip("127.0.0.1"), ip("127.0.0.2")]).unwrap();
        assert_eq!(all.len(), 400);
        let mut cookies: Vec<u64> = all.iter().map(|c| c.cookie).collect();
        cookies.sort_unstable();
        cookies.dedup();
        assert_eq!(cookies.len(), 400, "every socket once");

        assert_eq!(sock_diag::destroy_all(&[ip("127.0.0.2")]).unwrap(), 200);
        for (mut client, _server) in pairs {
            let e = read_result(&mut client).expect_err("reset");
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        }
    });
}
