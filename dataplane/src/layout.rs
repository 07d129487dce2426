//! Which UMEMs a worker makes and how it binds its sockets, from `[workers] zero_copy`: a pure
//! decision, tested without sockets.
//!
//! The kernel gives a shared UMEM the mode of its first socket (`xp_assign_dev_shared`), and a
//! veth never does zero-copy. So an underlay socket that may run zero-copy needs a UMEM of its
//! own, and frames crossing between it and the overlay ports' UMEM are copied once in
//! userspace; with zero-copy off, one shared UMEM moves frames between them by descriptor.

use crate::config::ZeroCopy;

/// How to bind an AF_XDP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// `XDP_ZEROCOPY`: fails where the driver cannot.
    ZeroCopy,
    /// `XDP_COPY`.
    Copy,
}

/// A worker's UMEMs and bind modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The underlay sockets get a UMEM of their own (else one UMEM for every socket).
    pub split: bool,
    /// Bind modes to try for the underlay socket, in order; the first that works is kept.
    pub underlay: &'static [Bind],
    /// Bind mode of the overlay ports' sockets (veths: always copy).
    pub ports: Bind,
}

pub const fn layout(zero_copy: ZeroCopy) -> Layout {
    match zero_copy {
        ZeroCopy::Auto => Layout {
            split: true,
            underlay: &[Bind::ZeroCopy, Bind::Copy],
            ports: Bind::Copy,
        },
        ZeroCopy::On => Layout {
            split: true,
            underlay: &[Bind::ZeroCopy],
            ports: Bind::Copy,
        },
        ZeroCopy::Off => Layout {
            split: false,
            underlay: &[Bind::Copy],
            ports: Bind::Copy,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_copy_possible_means_a_umem_of_its_own() {
        // Anything that may bind zero-copy must not share a UMEM with the (copy-mode) ports.
        for z in [ZeroCopy::Auto, ZeroCopy::On, ZeroCopy::Off] {
            let l = layout(z);
            if l.underlay.contains(&Bind::ZeroCopy) {
                assert!(
                    l.split,
                    "{z}: zero-copy on a shared UMEM breaks the ports' bind"
                );
            }
            assert_eq!(l.ports, Bind::Copy, "{z}: veths never do zero-copy");
            assert!(!l.underlay.is_empty());
        }
        assert_eq!(
            layout(ZeroCopy::Auto).underlay,
            [Bind::ZeroCopy, Bind::Copy]
        );
        assert_eq!(layout(ZeroCopy::On).underlay, [Bind::ZeroCopy]);
        // Off: copy explicitly (a zero-copy NIC would otherwise pick zero-copy by default and
        // take the shared UMEM with it), and no userspace copy between underlay and ports.
        assert_eq!(
            layout(ZeroCopy::Off),
            Layout {
                split: false,
                underlay: &[Bind::Copy],
                ports: Bind::Copy
            }
        );
    }
}
