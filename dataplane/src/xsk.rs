//! A single AF_XDP socket with its own UMEM, for the demo and the tests: bound to queue 0 of
//! an interface, our XDP program owning the XSKMAP (libxdp's program load inhibited), half the
//! frames on the fill ring and half kept for transmission. The workers' batched, multi-queue
//! sockets are in `worker`.

use std::{
    io::Write,
    os::fd::AsRawFd,
    thread,
    time::{Duration, Instant},
};

use ovl_common::{XDP_META_LEN, XdpMeta};
use xsk_rs::{
    CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem,
    config::{LibxdpFlags, SocketConfig, UmemConfig},
};

const FRAMES: u32 = 64;

/// Errors of the socket.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("AF_XDP socket on {ifname}: {what}")]
    Setup { ifname: String, what: String },
    #[error("AF_XDP {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("AF_XDP {0}")]
    Ring(&'static str),
}

/// A received frame: the XDP program's metadata, if it left ours, and the frame's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub meta: Option<XdpMeta>,
    pub frame: Vec<u8>,
}

/// One AF_XDP socket on queue 0 of an interface.
pub struct Xsk {
    // Queues before the UMEM: fields drop in order, and the rings live in the UMEM's mapping.
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    umem: Umem,
    tx_frames: Vec<FrameDesc>,
}

impl std::fmt::Debug for Xsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xsk").field("fd", &self.fd()).finish()
    }
}

impl Xsk {
    /// Binds a socket to queue 0 of `ifname` (in the calling thread's namespace).
    pub fn open(ifname: &str) -> Result<Xsk, XskError> {
        let setup = |what: String| XskError::Setup {
            ifname: ifname.into(),
            what,
        };
        let count = FRAMES.try_into().map_err(|_| setup("frame count".into()))?;
        let (umem, frames) = Umem::new(UmemConfig::default(), count, false)
            .map_err(|e| setup(format!("create UMEM: {e}")))?;
        let cfg = SocketConfig::builder()
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .build();
        let name = ifname
            .parse()
            .map_err(|_| setup("bad interface name".into()))?;
        // SAFETY: xsk-rs requires INHIBIT_PROG_LOAD when a UMEM is shared on a bound queue; it
        // is set, and this UMEM is not shared anyway.
        let (tx, rx, fq_cq) = unsafe { xsk_rs::Socket::new(cfg, &umem, &name, 0) }
            .map_err(|e| setup(format!("bind to queue 0: {e}")))?;
        let (mut fq, cq) = fq_cq.ok_or_else(|| setup("no fill/completion queue".into()))?;
        let (fill, tx_frames) = frames.split_at(frames.len() / 2);
        // SAFETY: these frames belong to this UMEM and are owned by nobody else.
        if unsafe { fq.produce(fill) } != fill.len() {
            return Err(setup("fill ring refused frames".into()));
        }
        Ok(Xsk {
            tx,
            rx,
            fq,
            cq,
            umem,
            tx_frames: tx_frames.to_vec(),
        })
    }

    /// The socket's descriptor, for an XSKMAP slot.
    pub fn fd(&self) -> i32 {
        self.rx.fd().as_raw_fd()
    }

    /// Waits up to `timeout` for a frame and gives it back to the fill ring after copying it.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Received>, XskError> {
        let mut desc = [self.tx_frames[0]];
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `desc` is overwritten by the kernel's descriptor of a frame of our UMEM.
        let n = unsafe { self.rx.poll_and_consume(&mut desc, timeout_ms) }.map_err(|source| {
            XskError::Io {
                what: "RX poll",
                source,
            }
        })?;
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: the descriptor came from our RX ring, so it points into our UMEM and the
        // kernel is done with the frame until we put it back on the fill ring.
        let data = unsafe { self.umem.data(&desc[0]) };
        // Every frame our programs hand to a socket starts with their metadata.
        let bytes = data.contents();
        let meta = XdpMeta::from_prefix(bytes);
        let frame = bytes[meta.map_or(0, |_| XDP_META_LEN)..].to_vec();
        // SAFETY: the frame is ours again and goes back to the kernel for reuse.
        unsafe { self.fq.produce(&desc) };
        Ok(Some(Received { meta, frame }))
    }

    /// Transmits `frame` and waits (up to a second) for its completion.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), XskError> {
        let mut desc = self.tx_frames[0];
        // SAFETY: the TX frames are ours; nobody else writes them.
        unsafe { self.umem.data_mut(&mut desc) }
            .cursor()
            .write_all(frame)
            .map_err(|source| XskError::Io {
                what: "frame larger than a UMEM chunk",
                source,
            })?;
        // SAFETY: the descriptor refers to our UMEM and holds `frame`.
        let sent = unsafe { self.tx.produce_and_wakeup(&[desc]) }
            .map_err(|source| XskError::Io { what: "TX", source })?;
        if sent != 1 {
            return Err(XskError::Ring("TX ring full"));
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut done = [desc];
        // SAFETY: completions return our own descriptors.
        while unsafe { self.cq.consume(&mut done) } == 0 {
            if Instant::now() > deadline {
                return Err(XskError::Ring("no TX completion within 1 s"));
            }
            self.tx.wakeup().map_err(|source| XskError::Io {
                what: "TX wakeup",
                source,
            })?;
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}
