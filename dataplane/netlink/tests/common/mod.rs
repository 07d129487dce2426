//! The root tests' anonymous network namespaces: a thread unshares one and the test keeps a
//! descriptor of it. The kernel destroys it (with every interface and socket in it) when the
//! last descriptor or socket inside goes, so a failing or panicking test leaves nothing
//! behind, and no two tests can collide on a name.
#![allow(dead_code)]

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::thread;

use ovl_netlink::Netlink;

/// An anonymous network namespace, alive while this value (or a socket in it) is.
pub struct Ns {
    pub fd: OwnedFd,
}

impl Ns {
    pub fn new() -> Ns {
        let fd = thread::spawn(|| {
            // SAFETY: unshare only changes this short-lived thread's namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET) (these tests need root): {}",
                std::io::Error::last_os_error()
            );
            OwnedFd::from(File::open("/proc/thread-self/ns/net").expect("open own netns"))
        })
        .join()
        .expect("namespace thread");
        Ns { fd }
    }

    /// A fresh namespace with its loopback up.
    pub fn with_loopback() -> Ns {
        let ns = Ns::new();
        ns.run(|| {
            let nl = Netlink::open().expect("netlink");
            let lo = nl.index_of("lo").expect("lo");
            nl.link_set_up(lo, true).expect("lo up");
        });
        ns
    }

    /// Runs `f` on a thread inside this namespace; sockets it opens stay in it.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns with a valid namespace descriptor; only this thread moves.
                let rc = unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}
