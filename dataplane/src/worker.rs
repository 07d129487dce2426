//! One AF_XDP worker per queue: one socket on each present uplink (it receives on all, sends
//! on the active one) and one per overlay port. With `[workers] zero_copy = "off"` they share
//! one UMEM and a frame moves between them by descriptor; otherwise (`layout`) each uplink
//! socket has a UMEM of its own, so it can run zero-copy on a NIC that offers it, and a frame
//! crossing between an uplink and a port is copied once. Every frame of a UMEM is always in
//! exactly one place: the free list, with the kernel (fill and RX rings), or on a TX ring awaiting
//! completion; `frames_conserved` checks it. What the control thread decides (next hops,
//! uplinks) the worker reads from the `board` at the start of each round.

use std::{
    collections::HashMap,
    io::Write as _,
    net::IpAddr,
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ovl_common::{Encap, GENEVE_OPT_LEN, XDP_META_LEN, XdpMeta};
use xsk_rs::{
    CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem,
    config::{BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

use crate::{
    board::{Board, Wanted},
    config::ZeroCopy,
    encap::{MAX_OUTER, Outer, outer_header},
    forward::{self, Forward},
    layout::{self, Bind},
    pmtu::{self, too_big},
    stats::{QueueCounters, WorkerDrop, bump},
};

/// An overlay port (one VNI) as a worker sees it.
#[derive(Clone, Debug)]
pub struct PortSpec {
    pub vni: u32,
    /// The data plane's end of the overlay veth (the socket binds here).
    pub dp_interface: String,
    pub encap: Encap,
    pub udp_port: u16,
    pub geneve_option: Option<[u8; GENEVE_OPT_LEN]>,
    pub flood: Vec<IpAddr>,
    /// The overlay MTU, told to senders of too-big DF packets.
    pub mtu: u32,
}

/// What a worker needs to start.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub queue: u32,
    pub cpu: Option<usize>,
    pub batch: usize,
    pub frames: u32,
    /// Keep polling this long after the last work before sleeping in poll().
    pub spin: Duration,
    /// The uplink devices (name, index) with a socket, in the order they were bound.
    pub uplinks: Vec<(String, u32)>,
    /// The one we send on (a position in `uplinks`); None: none can carry traffic.
    pub active: Option<usize>,
    /// How many uplinks are configured (sizes a UMEM shared with them).
    pub uplink_slots: usize,
    pub local_mac: [u8; 6],
    pub local_ip: IpAddr,
    pub ports: Vec<PortSpec>,
    /// A learned MAC is re-announced to the control thread at most this often (so ageing
    /// sees it alive without a message per frame).
    pub learn_refresh: Duration,
    /// `SO_BUSY_POLL` µs for preferred busy polling of every socket; 0: off.
    pub busy_poll_us: u32,
    /// Zero-copy for the uplink sockets (decides the UMEM layout).
    pub zero_copy: ZeroCopy,
}

impl WorkerSpec {
    /// Position of overlay port `p`'s socket: the ports' come first, they never change.
    fn port_sock(&self, p: usize) -> usize {
        p
    }

    /// Position of the socket on uplink `u` (a position in `uplinks`).
    fn uplink_sock(&self, u: usize) -> usize {
        self.ports.len() + u
    }
}

/// How long an idle worker sleeps in poll() at most (it wakes on RX at once).
const IDLE_POLL: Duration = Duration::from_millis(10);
/// How long frames left on a TX ring are pushed out by spinning before the worker sleeps
/// (then in 1 ms polls, which also drive copy-mode TX).
const TX_DRAIN: Duration = Duration::from_millis(1);

/// `setsockopt(SOL_XDP, XDP_MAX_TX_SKB_BUDGET)` (kernel 6.17+): how many descriptors one
/// copy-mode `sendto` may send; the default is 32, less than a batch.
pub(crate) const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

pub(crate) const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// `setsockopt(fd, level, opt, &value)` for an int option.
pub(crate) fn set_int_opt(
    fd: i32,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: a plain setsockopt on our own socket with a correctly sized int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Preferred busy polling on socket `fd` (the kernel's AF_XDP documentation): the worker's
/// own syscalls run the device's NAPI, and the device defers its interrupts meanwhile.
fn set_busy_poll(fd: i32, usecs: u32, budget: usize) -> std::io::Result<()> {
    let sol = libc::SOL_SOCKET;
    set_int_opt(fd, sol, SO_PREFER_BUSY_POLL, 1)?;
    set_int_opt(
        fd,
        sol,
        libc::SO_BUSY_POLL,
        libc::c_int::try_from(usecs).unwrap_or(libc::c_int::MAX),
    )?;
    set_int_opt(
        fd,
        sol,
        SO_BUSY_POLL_BUDGET,
        libc::c_int::try_from(budget).unwrap_or(64),
    )
}

/// Lets one kick send a whole batch; on older kernels the call fails and the default stays
/// (the worker then kicks again while frames remain on the ring).
fn set_tx_budget(fd: i32, batch: usize) {
    // Probed at start; a missing option was logged once there with what it costs.
    if !crate::features::tx_budget_usable() {
        return;
    }
    let budget = libc::c_int::try_from(batch.max(32)).unwrap_or(libc::c_int::MAX);
    if set_int_opt(fd, libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, budget).is_err() {
        tracing::debug!("XDP_MAX_TX_SKB_BUDGET not supported; TX budget stays 32 per kick");
    }
}

/// Worker -> control thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromWorker {
    /// Inner source MAC `mac` of VNI `vni` was seen behind VTEP `remote`.
    Learn {
        vni: u32,
        mac: [u8; 6],
        remote: IpAddr,
    },
    /// A frame needed this remote's next hop and it is unknown.
    Resolve { remote: IpAddr },
    /// Sockets bound on uplinks the board asked for: (device index, descriptor) for
    /// the XSKMAP, and the devices whose bind failed, with why.
    Sockets {
        queue: u32,
        bound: Vec<(u32, i32)>,
        failed: Vec<(String, String)>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("queue {queue}: {what}")]
    Setup { queue: u32, what: String },
}

/// Where every UMEM frame is. The sum of the parts is the frame count, always.
#[derive(Debug)]
struct Frames {
    /// The descriptor each frame had when the UMEM was made (data at the default offset).
    pristine: Vec<FrameDesc>,
    frame_size: usize,
    free: Vec<u32>,
    total: usize,
}

impl Frames {
    fn index(&self, desc: &FrameDesc) -> u32 {
        (desc.addr() / self.frame_size) as u32
    }

    fn release(&mut self, desc: &FrameDesc) {
        let i = self.index(desc);
        self.free.push(i);
    }

    fn take(&mut self) -> Option<FrameDesc> {
        self.free.pop().map(|i| self.pristine[i as usize])
    }
}

/// One UMEM and where its frames are.
struct Pool {
    umem: Umem,
    frames: Frames,
}

/// One AF_XDP socket of the worker (underlay or an overlay port).
struct Sock {
    /// The pool (UMEM) its frames belong to.
    pool: usize,
    ifname: String,
    /// The kernel runs it zero-copy.
    zero_copy: bool,
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    /// Frames on the fill ring.
    in_fill: usize,
    /// Frames on the TX ring, not completed yet.
    in_tx: usize,
    fill_target: usize,
    /// Frames to put on the TX ring at the end of this round.
    pending: Vec<FrameDesc>,
}

impl Sock {
    fn fd(&self) -> i32 {
        self.rx.fd().as_raw_fd()
    }
}

pub struct Worker {
    spec: WorkerSpec,
    // Sockets before the UMEMs: fields drop in order and the rings live in the UMEMs' mappings.
    socks: Vec<Sock>,
    pools: Vec<Pool>,
    counters: Arc<QueueCounters>,
    /// The VNI of each overlay port, in port order.
    port_vnis: Vec<u32>,
    nexthops: HashMap<IpAddr, [u8; 6]>,
    learned: HashMap<(u32, [u8; 6]), (IpAddr, Instant)>,
    scratch: Vec<FrameDesc>,
    to_control: Sender<FromWorker>,
    /// The control thread's decisions, and the version and state this worker applied last
    /// (the uplinks it wants sockets on, the device to send on).
    board: Arc<Board>,
    board_seen: u64,
    applied: Arc<Wanted>,
    resolve_asked: HashMap<IpAddr, Instant>,
    next_xsk_stats: Instant,
    /// Devices whose socket is being bound on a helper thread, and where they arrive.
    binding: Vec<u32>,
    bound_tx: Sender<Bound>,
    bound_rx: Receiver<Bound>,
}

/// Ring size for a pool shared by `members` sockets, and each socket's share of its frames.
fn ring_size(frames: usize, members: usize) -> (u32, usize) {
    let share = (frames / (2 * members.max(1))).max(16);
    (share.next_power_of_two().clamp(64, 8192) as u32, share)
}

/// A UMEM of `spec.frames` frames for `members` sockets.
fn new_pool(spec: &WorkerSpec, members: usize) -> Result<Pool, String> {
    let (ring, _) = ring_size(spec.frames as usize, members);
    let qsize = |n: u32| QueueSize::new(n).map_err(|e| format!("ring size {n}: {e}"));
    let frame_size =
        FrameSize::new(crate::config::UMEM_FRAME_SIZE).map_err(|e| format!("frame size: {e}"))?;
    let umem_cfg = UmemConfig::builder()
        .frame_size(frame_size)
        .fill_queue_size(qsize(ring)?)
        .comp_queue_size(qsize(ring * 2)?)
        .build()
        .map_err(|e| format!("UMEM config: {e}"))?;
    let count = spec
        .frames
        .try_into()
        .map_err(|_| "zero frames".to_string())?;
    let (umem, pristine) =
        Umem::new(umem_cfg, count, false).map_err(|e| format!("create UMEM: {e}"))?;
    let frame_size = match (pristine.first(), pristine.get(1)) {
        (Some(a), Some(b)) => b.addr() - a.addr(),
        _ => return Err("need at least two frames".into()),
    };
    Ok(Pool {
        umem,
        frames: Frames {
            total: pristine.len(),
            free: (0..pristine.len() as u32).rev().collect(),
            pristine,
            frame_size,
        },
    })
}

/// Binds an AF_XDP socket to `ifname` queue `queue` on `umem`.
///
/// # Safety
/// As `xsk_rs::Socket::new`: each (interface, queue) pair is bound once.
unsafe fn bind_socket(
    umem: &Umem,
    ifname: &str,
    queue: u32,
    ring: u32,
    bind: Bind,
) -> Result<(TxQueue, RxQueue, FillQueue, CompQueue), String> {
    let qsize = |n: u32| QueueSize::new(n).map_err(|e| format!("ring size {n}: {e}"));
    let flags = match bind {
        Bind::ZeroCopy => BindFlags::XDP_ZEROCOPY,
        Bind::Copy => BindFlags::XDP_COPY,
    };
    let cfg = SocketConfig::builder()
        .rx_queue_size(qsize(ring)?)
        .tx_queue_size(qsize(ring * 2)?)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(flags)
        .build();
    let name = ifname
        .parse()
        .map_err(|_| format!("bad interface name {ifname}"))?;
    // SAFETY: the caller's promise.
    let (tx, rx, rings) =
        unsafe { xsk_rs::Socket::new(cfg, umem, &name, queue) }.map_err(|e| e.to_string())?;
    let (fq, cq) = rings.ok_or_else(|| "no fill/completion ring".to_string())?;
    Ok((tx, rx, fq, cq))
}

/// Writes `parts` one after the other into frame `out` of `umem`, from its start; false if
/// they do not fit.
///
/// # Safety
/// `out` is a frame of `umem` that nobody else (kernel or other code) touches meanwhile.
unsafe fn write_frame(umem: &Umem, out: &mut FrameDesc, parts: &[&[u8]]) -> bool {
    // SAFETY: the caller's promise.
    let mut data = unsafe { umem.data_mut(out) };
    let mut c = data.cursor();
    c.set_pos(0);
    parts.iter().all(|p| c.write_all(p).is_ok())
}

/// Binds a socket on `ifname` to `pool` (number `pool_idx` of its worker), trying the bind
/// modes in order (a failed bind may leave a UMEM half set up: the retry gets a new one, so
/// retries are only for a pool of its own).
fn bind_sock(
    spec: &WorkerSpec,
    pool: &mut Pool,
    pool_idx: usize,
    ifname: &str,
    attempts: &[Bind],
    members: usize,
) -> Result<Sock, String> {
    let queue = spec.queue;
    let (ring, share) = ring_size(spec.frames as usize, members);
    let mut last_err = String::new();
    let mut bound = None;
    for (k, bind) in attempts.iter().enumerate() {
        if k > 0 {
            *pool = new_pool(spec, members)?;
        }
        // SAFETY: INHIBIT_PROG_LOAD is set (xsk-rs requires it when a UMEM is shared) and
        // each (interface, queue) pair is bound once.
        match unsafe { bind_socket(&pool.umem, ifname, queue, ring, *bind) } {
            Ok(b) => {
                bound = Some(b);
                break;
            }
            Err(e) => {
                if *bind == Bind::ZeroCopy && attempts.len() > k + 1 {
                    tracing::info!(queue, interface = %ifname, "zero-copy bind refused ({e}); copy mode");
                }
                last_err = e;
            }
        }
    }
    let (tx, rx, fq, cq) =
        bound.ok_or_else(|| format!("AF_XDP socket on {ifname} queue {queue}: {last_err}"))?;
    let zero_copy = is_zero_copy(rx.fd().as_raw_fd());
    tracing::info!(
        queue,
        interface = %ifname,
        mode = if zero_copy { "zero-copy" } else { "copy" },
        umem = pool_idx,
        "AF_XDP socket bound"
    );
    set_tx_budget(tx.fd().as_raw_fd(), spec.batch);
    if spec.busy_poll_us > 0 {
        set_busy_poll(tx.fd().as_raw_fd(), spec.busy_poll_us, spec.batch)
            .map_err(|e| format!("busy polling on {ifname}: {e}"))?;
    }
    Ok(Sock {
        pool: pool_idx,
        ifname: ifname.to_string(),
        zero_copy,
        tx,
        rx,
        fq,
        cq,
        in_fill: 0,
        in_tx: 0,
        fill_target: share.min(ring as usize),
        pending: Vec::with_capacity(spec.batch * 4),
    })
}

/// A socket bound off the worker's thread on an uplink that returned, with its own UMEM.
struct Bound {
    name: String,
    index: u32,
    result: Result<(Sock, Pool), String>,
}

/// Whether the kernel runs AF_XDP socket `fd` zero-copy (`XDP_OPTIONS`).
fn is_zero_copy(fd: i32) -> bool {
    const XDP_OPTIONS: libc::c_int = 8;
    const XDP_OPTIONS_ZEROCOPY: u32 = 1;
    let mut flags: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: getsockopt on our own socket into a u32 of the given length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            XDP_OPTIONS,
            (&mut flags as *mut u32).cast(),
            &mut len,
        )
    };
    rc == 0 && flags & XDP_OPTIONS_ZEROCOPY != 0
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.spec.queue)
            .finish()
    }
}

impl Worker {
    /// Creates the UMEMs and binds one socket to queue `spec.queue` of each overlay port and
    /// of each uplink in `spec.uplinks` (all in the calling thread's namespace).
    pub fn new(
        mut spec: WorkerSpec,
        counters: Arc<QueueCounters>,
        to_control: Sender<FromWorker>,
        board: Arc<Board>,
    ) -> Result<Worker, WorkerError> {
        let queue = spec.queue;
        let err = |what: String| WorkerError::Setup { queue, what };
        let layout = layout::layout(spec.zero_copy);
        let uplinks = std::mem::take(&mut spec.uplinks);
        let active = spec.active.take();
        let batch = spec.batch;
        let port_vnis = spec.ports.iter().map(|p| p.vni).collect();
        let first = new_pool(&spec, Self::port_members(&spec, layout.split)).map_err(&err)?;
        let (bound_tx, bound_rx) = crossbeam_channel::unbounded();
        let mut w = Worker {
            spec,
            socks: Vec::new(),
            pools: vec![first],
            counters,
            port_vnis,
            nexthops: HashMap::new(),
            learned: HashMap::new(),
            scratch: vec![FrameDesc::default(); batch],
            to_control,
            board,
            board_seen: 0,
            applied: Arc::new(Wanted::default()),
            resolve_asked: HashMap::new(),
            next_xsk_stats: Instant::now(),
            binding: Vec::new(),
            bound_tx,
            bound_rx,
        };
        // Ports first: their positions never change; uplinks come and go after them.
        let members = Self::port_members(&w.spec, layout.split);
        for p in 0..w.spec.ports.len() {
            let ifname = w.spec.ports[p].dp_interface.clone();
            let sock = w
                .bind_into(0, &ifname, std::slice::from_ref(&layout.ports), members)
                .map_err(&err)?;
            w.socks.push(sock);
        }
        for (name, index) in &uplinks {
            w.add_uplink(name, *index).map_err(&err)?;
        }
        w.spec.active = active;
        w.applied = Arc::new(Wanted {
            active: active.and_then(|a| uplinks.get(a)).map(|u| u.1),
            uplinks,
            local_mac: w.spec.local_mac,
            ..Wanted::default()
        });
        w.publish_sockets();
        w.refill();
        Ok(w)
    }

    /// Sockets sharing the ports' UMEM: the ports, and with one shared UMEM every uplink
    /// that may be configured.
    fn port_members(spec: &WorkerSpec, split: bool) -> usize {
        if split {
            spec.ports.len()
        } else {
            spec.ports.len() + spec.uplink_slots.max(1)
        }
    }

    /// Binds a socket on `ifname` to pool `pool`.
    fn bind_into(
        &mut self,
        pool: usize,
        ifname: &str,
        attempts: &[Bind],
        members: usize,
    ) -> Result<Sock, String> {
        bind_sock(
            &self.spec,
            &mut self.pools[pool],
            pool,
            ifname,
            attempts,
            members,
        )
    }

    /// Binds a socket on uplink device `name` (index `index`), in a UMEM of its own unless
    /// the layout shares one. Returns the socket's descriptor for the XSKMAP.
    fn add_uplink(&mut self, name: &str, index: u32) -> Result<i32, String> {
        let layout = layout::layout(self.spec.zero_copy);
        let (pool, members) = if layout.split {
            self.pools.push(new_pool(&self.spec, 1)?);
            (self.pools.len() - 1, 1)
        } else {
            (0, Self::port_members(&self.spec, false))
        };
        match self.bind_into(pool, name, layout.underlay, members) {
            Ok(sock) => {
                let fd = sock.fd();
                self.socks.push(sock);
                self.spec.uplinks.push((name.to_string(), index));
                Ok(fd)
            }
            Err(e) => {
                if layout.split {
                    self.pools.pop();
                }
                Err(e)
            }
        }
    }

    /// Closes the socket on uplink `k` (a position in `spec.uplinks`); a UMEM of its own goes
    /// with it, frames it left on its rings in a shared one are written off.
    fn remove_uplink(&mut self, k: usize) {
        let s = self.spec.uplink_sock(k);
        let (name, _) = self.spec.uplinks.remove(k);
        let sock = self.socks.remove(s);
        let pool = sock.pool;
        for d in &sock.pending {
            self.pools[pool].frames.release(d);
        }
        let stranded = sock.in_fill + sock.in_tx;
        // The rings live in the UMEM's mapping: the socket goes first.
        drop(sock);
        if self.socks.iter().any(|x| x.pool == pool) {
            self.pools[pool].frames.total -= stranded;
        } else {
            self.pools.remove(pool);
            for x in &mut self.socks {
                if x.pool > pool {
                    x.pool -= 1;
                }
            }
        }
        tracing::info!(queue = self.spec.queue, interface = %name, "AF_XDP socket closed");
    }

    /// Takes the control thread's newest decisions: next hops as they are, and uplink
    /// sockets reworked only when the uplink fields moved (binding is slow).
    fn apply(&mut self, version: u64, wanted: Arc<Wanted>) {
        self.board_seen = version;
        let old = std::mem::replace(&mut self.applied, wanted);
        if self.applied.nexthops != old.nexthops {
            self.nexthops.clone_from(&self.applied.nexthops);
        }
        if self.applied.uplinks_differ(&old) {
            self.set_uplinks();
        }
    }

    /// Makes the uplink sockets match the applied `uplinks` (devices by name and index: a
    /// device re-created under the same name is a new one) and sends on `active`; tells the
    /// control thread the new sockets' descriptors. A socket with a UMEM of its own is bound on
    /// a helper thread, so forwarding does not stop for the tens of milliseconds a bind takes.
    fn set_uplinks(&mut self) {
        let wanted = self.applied.clone();
        self.spec.local_mac = wanted.local_mac;
        for k in (0..self.spec.uplinks.len()).rev() {
            if !wanted.uplinks.contains(&self.spec.uplinks[k]) {
                self.remove_uplink(k);
            }
        }
        let split = layout::layout(self.spec.zero_copy).split;
        let mut bound = Vec::new();
        let mut failed = Vec::new();
        for (name, index) in &wanted.uplinks {
            if self.spec.uplinks.iter().any(|u| u.1 == *index) || self.binding.contains(index) {
                continue;
            }
            if split {
                self.bind_elsewhere(name.clone(), *index);
                continue;
            }
            match self.add_uplink(name, *index) {
                Ok(fd) => bound.push((*index, fd)),
                Err(e) => failed.push((name.clone(), e)),
            }
        }
        self.uplinks_changed(bound, failed);
    }

    /// Binds a socket with a UMEM of its own on a helper thread; `take_bound` installs it.
    fn bind_elsewhere(&mut self, name: String, index: u32) {
        let spec = self.spec.clone();
        let tx = self.bound_tx.clone();
        self.binding.push(index);
        let attempts = layout::layout(spec.zero_copy).underlay;
        let spawned = std::thread::Builder::new()
            .name("ovl-bind".into())
            .spawn(move || {
                let result = new_pool(&spec, 1).and_then(|mut pool| {
                    let sock = bind_sock(&spec, &mut pool, usize::MAX, &name, attempts, 1)?;
                    Ok((sock, pool))
                });
                let _ = tx.send(Bound {
                    name,
                    index,
                    result,
                });
            });
        if let Err(e) = spawned {
            self.binding.retain(|i| *i != index);
            tracing::warn!("spawn a bind thread: {e}");
        }
    }

    /// Installs sockets the helper threads bound, if their device is still wanted.
    fn take_bound(&mut self) {
        let mut bound = Vec::new();
        let mut failed = Vec::new();
        while let Ok(b) = self.bound_rx.try_recv() {
            self.binding.retain(|i| *i != b.index);
            let wanted = self.applied.uplinks.iter().any(|u| u.1 == b.index)
                && !self.spec.uplinks.iter().any(|u| u.1 == b.index);
            match b.result {
                Ok((mut sock, pool)) if wanted => {
                    sock.pool = self.pools.len();
                    self.pools.push(pool);
                    bound.push((b.index, sock.fd()));
                    self.socks.push(sock);
                    self.spec.uplinks.push((b.name, b.index));
                }
                // Gone again meanwhile: the socket goes before its UMEM.
                Ok((sock, pool)) => {
                    drop(sock);
                    drop(pool);
                }
                Err(e) => failed.push((b.name, e)),
            }
        }
        if !bound.is_empty() || !failed.is_empty() {
            self.uplinks_changed(bound, failed);
        }
    }

    /// After the uplink sockets changed: the sending socket again, the stats, the report.
    fn uplinks_changed(&mut self, bound: Vec<(u32, i32)>, failed: Vec<(String, String)>) {
        self.spec.active = self
            .applied
            .active
            .and_then(|a| self.spec.uplinks.iter().position(|u| u.1 == a));
        self.publish_sockets();
        if !bound.is_empty() || !failed.is_empty() {
            let _ = self.to_control.send(FromWorker::Sockets {
                queue: self.spec.queue,
                bound,
                failed,
            });
        }
        self.refill();
    }

    fn publish_sockets(&self) {
        self.publish_frames();
        if let Ok(mut modes) = self.counters.sockets.lock() {
            *modes = self
                .socks
                .iter()
                .map(|s| {
                    let mode = if s.zero_copy { "zero-copy" } else { "copy" };
                    (s.ifname.clone(), mode.to_string())
                })
                .collect();
        }
    }

    /// Descriptors for the XSKMAP: one per port, then one per uplink (as in `spec.uplinks`).
    pub fn fds(&self) -> Vec<i32> {
        self.socks.iter().map(Sock::fd).collect()
    }

    /// Runs until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        if let Some(cpu) = self.spec.cpu
            && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
        {
            tracing::warn!(queue = self.spec.queue, cpu, "could not pin worker");
        }
        tracing::info!(queue = self.spec.queue, cpu = ?self.spec.cpu, "worker running");
        let mut last_work = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if self.round() > 0 {
                last_work = Instant::now();
                continue;
            }
            let idle = last_work.elapsed();
            // Copy-mode TX sends at most the kernel's budget (32) per kick: keep kicking
            // until every frame is out, or frames wait for the next unrelated wake-up.
            let tx_pending = self.socks.iter().any(|s| s.in_tx > 0);
            // A busy-polling worker never sleeps: its rounds are what runs the devices' NAPI
            // (poll() would not busy-poll without the global sysctl), so it owns its core.
            let busy = self.spec.busy_poll_us > 0;
            if busy || (tx_pending && idle < TX_DRAIN) || idle < self.spec.spin {
                std::hint::spin_loop();
                continue;
            }
            self.idle_wait(if tx_pending { TX_DRAIN } else { IDLE_POLL });
        }
        self.check_frames();
        self.publish_xsk_stats();
        tracing::info!(queue = self.spec.queue, "worker stopped");
    }

    /// One pass over every ring. Returns how many frames it moved.
    pub fn round(&mut self) -> usize {
        bump(&self.counters.loops, 1);
        let now = Instant::now();
        if let Some((version, wanted)) = self.board.newer_than(self.board_seen) {
            self.apply(version, wanted);
        }
        if !self.binding.is_empty() {
            self.take_bound();
        }
        if self.spec.busy_poll_us > 0 {
            self.busy_poll();
        }
        let mut work = self.complete();
        work += self.receive_underlay(now);
        for p in 0..self.spec.ports.len() {
            work += self.receive_port(p, now);
        }
        self.transmit();
        self.refill();
        self.publish_frames();
        if now >= self.next_xsk_stats {
            self.next_xsk_stats = now + Duration::from_millis(100);
            self.publish_xsk_stats();
        }
        work
    }

    /// Sums the kernel's counters of our sockets into the queue's counters (they are
    /// cumulative per socket, so the sum replaces the last one).
    fn publish_xsk_stats(&self) {
        let (mut full, mut dropped, mut empty, mut invalid) = (0, 0, 0, 0);
        for sock in &self.socks {
            if let Ok(st) = sock.rx.fd().xdp_statistics() {
                full += st.rx_ring_full();
                dropped += st.rx_dropped();
                empty += st.rx_fill_ring_empty_descs();
                invalid += st.tx_invalid_descs();
            }
        }
        let c = &self.counters;
        c.xsk_rx_ring_full.store(full, Ordering::Relaxed);
        c.xsk_rx_dropped.store(dropped, Ordering::Relaxed);
        c.xsk_fill_ring_empty.store(empty, Ordering::Relaxed);
        c.xsk_tx_invalid.store(invalid, Ordering::Relaxed);
    }

    fn complete(&mut self) -> usize {
        let mut done = 0;
        for s in 0..self.socks.len() {
            loop {
                let sock = &mut self.socks[s];
                // SAFETY: completions return descriptors of frames we put on this socket's TX
                // ring, all from its pool's UMEM.
                let n = unsafe { sock.cq.consume(&mut self.scratch) };
                sock.in_tx -= n.min(sock.in_tx);
                let frames = &mut self.pools[sock.pool].frames;
                for d in &self.scratch[..n] {
                    frames.release(d);
                }
                done += n;
                if n < self.scratch.len() {
                    break;
                }
            }
        }
        done
    }

    fn receive_underlay(&mut self, now: Instant) -> usize {
        let mut total = 0;
        for u in 0..self.spec.uplinks.len() {
            let sock = &mut self.socks[self.spec.uplink_sock(u)];
            // SAFETY: the RX ring hands back frames of this UMEM that we put on the fill ring.
            let n = unsafe { sock.rx.consume(&mut self.scratch) };
            sock.in_fill -= n.min(sock.in_fill);
            for i in 0..n {
                let desc = self.scratch[i];
                self.handle_underlay(u, desc, now);
            }
            total += n;
        }
        total
    }

    /// The metadata the program prepended to RX frame `desc` of `pool`, stripped off: the
    /// frame is left as it arrived on the wire (or as the program encapsulated it), and its
    /// length is returned. A frame without our metadata is left whole (`None`).
    fn take_meta(&self, pool: usize, desc: &mut FrameDesc) -> (Option<XdpMeta>, usize) {
        // SAFETY: the frame came off an RX ring of this pool, so the kernel is done writing
        // it, and it is ours until released or queued.
        let mut data = unsafe { self.pools[pool].umem.data_mut(desc) };
        let bytes = data.contents_mut();
        let Some(meta) = XdpMeta::from_prefix(bytes) else {
            return (None, bytes.len());
        };
        // xsk-rs cannot move a descriptor's start, so the frame moves instead: a copy within
        // the frame, small next to the copy-mode socket's own.
        let len = bytes.len() - XDP_META_LEN;
        bytes.copy_within(XDP_META_LEN.., 0);
        data.cursor().set_pos(len);
        (Some(meta), len)
    }

    fn handle_underlay(&mut self, u: usize, mut desc: FrameDesc, now: Instant) {
        let from = self.socks[self.spec.uplink_sock(u)].pool;
        let (meta, len) = self.take_meta(from, &mut desc);
        // SAFETY: the frame came off an RX ring and is ours until released or queued.
        let data = unsafe { self.pools[from].umem.data(&desc) };
        let decision = forward::from_underlay(meta, &self.port_vnis, data.contents());
        match decision {
            Forward::Deliver { port, learn } => {
                if let Some(l) = learn {
                    self.learn(l.vni, l.mac, l.remote, now);
                }
                let s = self.spec.port_sock(port);
                let to = self.socks[s].pool;
                let Some(desc) = self.cross(desc, from, to) else {
                    return;
                };
                let c = &self.counters.ports[port];
                bump(&c.rx_packets, 1);
                bump(&c.rx_bytes, len as u64);
                self.socks[s].pending.push(desc);
            }
            Forward::Drop(why) => {
                self.counters.count_drop(why, 1);
                self.pools[from].frames.release(&desc);
            }
            // `from_underlay` decides nothing else; counted like bad metadata if it ever did.
            _ => {
                self.counters.count_drop(WorkerDrop::BadMeta, 1);
                self.pools[from].frames.release(&desc);
            }
        }
    }

    /// Moves frame `desc` of pool `from` to pool `to`: itself when they are one UMEM, else a
    /// copy in a free frame of `to` (the original is released). None (counted) when `to` has
    /// no free frame.
    fn cross(&mut self, desc: FrameDesc, from: usize, to: usize) -> Option<FrameDesc> {
        if from == to {
            return Some(desc);
        }
        let out = self.pools[to].frames.take();
        let copied = out.and_then(|mut out| {
            // SAFETY: `desc` is an RX frame of `from` we own until released; `out` a free frame
            // of `to` nobody else touches; different UMEMs.
            let src = unsafe { self.pools[from].umem.data(&desc) };
            // SAFETY: as above.
            if unsafe { write_frame(&self.pools[to].umem, &mut out, &[src.contents()]) } {
                Some(out)
            } else {
                self.pools[to].frames.release(&out);
                None
            }
        });
        self.pools[from].frames.release(&desc);
        if copied.is_none() {
            self.counters.count_drop(WorkerDrop::NoFrame, 1);
        }
        copied
    }

    fn learn(&mut self, vni: u32, mac: [u8; 6], remote: IpAddr, now: Instant) {
        // Multicast/broadcast and all-zero sources are never learned.
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return;
        }
        let fresh = match self.learned.get(&(vni, mac)) {
            Some((ip, at)) => *ip != remote || now.duration_since(*at) >= self.spec.learn_refresh,
            None => true,
        };
        if !fresh {
            return;
        }
        // Never block: if the control thread is behind, the next frame tries again.
        match self
            .to_control
            .try_send(FromWorker::Learn { vni, mac, remote })
        {
            Ok(()) => {
                bump(&self.counters.learn_events, 1);
                if self.learned.len() > 65536 {
                    self.learned.clear();
                }
                self.learned.insert((vni, mac), (remote, now));
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
    }

    fn receive_port(&mut self, p: usize, now: Instant) -> usize {
        let sock = &mut self.socks[self.spec.port_sock(p)];
        // SAFETY: as in `receive_underlay`.
        let n = unsafe { sock.rx.consume(&mut self.scratch) };
        sock.in_fill -= n.min(sock.in_fill);
        for i in 0..n {
            let desc = self.scratch[i];
            self.handle_port(p, desc, now);
        }
        n
    }

    fn handle_port(&mut self, p: usize, mut desc: FrameDesc, now: Instant) {
        let from = self.socks[self.spec.port_sock(p)].pool;
        let (meta, len) = self.take_meta(from, &mut desc);
        match forward::from_port(meta) {
            Forward::Transmit => {
                let Some(out) = self.spec.active.map(|u| self.spec.uplink_sock(u)) else {
                    self.counters.count_drop(WorkerDrop::NoUplink, 1);
                    self.pools[from].frames.release(&desc);
                    return;
                };
                let to = self.socks[out].pool;
                let Some(desc) = self.cross(desc, from, to) else {
                    return;
                };
                let c = &self.counters.ports[p];
                bump(&c.tx_packets, 1);
                bump(&c.tx_bytes, len as u64);
                // The program wrote the outer source MAC of the uplink active when it ran.
                self.set_source_mac(to, &desc);
                self.socks[out].pending.push(desc);
            }
            Forward::Flood => {
                let targets = self.spec.ports[p].flood.clone();
                if targets.is_empty() {
                    self.counters.count_drop(WorkerDrop::NoFloodTarget, 1);
                }
                for remote in targets {
                    self.encap_copy(p, &desc, remote, true, now);
                }
                self.pools[from].frames.release(&desc);
            }
            Forward::AnswerTooBig => {
                self.answer_too_big(p, &desc);
                self.pools[from].frames.release(&desc);
            }
            Forward::Encapsulate { remote } => {
                self.encap_copy(p, &desc, remote, false, now);
                self.pools[from].frames.release(&desc);
            }
            Forward::Drop(why) => {
                self.counters.count_drop(why, 1);
                self.pools[from].frames.release(&desc);
            }
            Forward::Deliver { .. } => {
                self.counters.count_drop(WorkerDrop::BadMeta, 1);
                self.pools[from].frames.release(&desc);
            }
        }
    }

    /// Encapsulates a copy of `desc` for `remote` into a fresh frame queued on the underlay.
    fn encap_copy(
        &mut self,
        p: usize,
        desc: &FrameDesc,
        remote: IpAddr,
        flood: bool,
        now: Instant,
    ) {
        let Some(&nh) = self.nexthops.get(&remote) else {
            self.counters.count_drop(WorkerDrop::NoNextHop, 1);
            let due = self
                .resolve_asked
                .get(&remote)
                .is_none_or(|at| now.duration_since(*at) >= Duration::from_millis(100));
            if due
                && self
                    .to_control
                    .try_send(FromWorker::Resolve { remote })
                    .is_ok()
                && self.resolve_asked.insert(remote, now).is_none()
            {
                tracing::warn!(queue = self.spec.queue, %remote, "no next hop for remote VTEP yet; asked for resolution");
            }
            return;
        };
        let Some(active) = self.spec.active.map(|u| self.spec.uplink_sock(u)) else {
            self.counters.count_drop(WorkerDrop::NoUplink, 1);
            return;
        };
        let (from, to) = (
            self.socks[self.spec.port_sock(p)].pool,
            self.socks[active].pool,
        );
        let Some(mut out) = self.pools[to].frames.take() else {
            self.counters.count_drop(WorkerDrop::NoFrame, 1);
            return;
        };
        let port = &self.spec.ports[p];
        let outer = Outer {
            src_mac: self.spec.local_mac,
            dst_mac: nh,
            src_ip: self.spec.local_ip,
            dst_ip: remote,
            udp_port: port.udp_port,
            vni: port.vni,
            encap: port.encap,
            geneve_option: port.geneve_option,
        };
        // SAFETY: `desc` is an RX frame of pool `from` we own until released; `out` is a free
        // frame of pool `to` nobody else touches. They are different frames.
        let inner = unsafe { self.pools[from].umem.data(desc) };
        let mut hdr = [0u8; MAX_OUTER];
        let written = outer_header(inner.contents(), &outer, &mut hdr);
        let ok = match written {
            // SAFETY: as above.
            Some(n) => unsafe {
                write_frame(
                    &self.pools[to].umem,
                    &mut out,
                    &[&hdr[..n], inner.contents()],
                )
            },
            None => false,
        };
        if !ok {
            self.counters.count_drop(WorkerDrop::NoFrame, 1);
            self.pools[to].frames.release(&out);
            return;
        }
        let c = &self.counters.ports[p];
        bump(&c.tx_packets, 1);
        bump(&c.tx_bytes, out.lengths().data() as u64);
        if flood {
            bump(&c.flood_copies, 1);
        }
        self.socks[active].pending.push(out);
    }

    /// Sends ICMP "fragmentation needed" (IPv4 with DF) or ICMPv6 "packet too big" back into
    /// the overlay port for a too-big packet (already counted as `drop_tx_too_big` by the
    /// program); both count as `icmp_frag_needed`.
    fn answer_too_big(&mut self, p: usize, desc: &FrameDesc) {
        let mtu = self.spec.ports[p].mtu;
        let ps = self.spec.port_sock(p);
        let pool = self.socks[ps].pool;
        // SAFETY: `desc` came off an RX ring of this pool and is ours until released.
        let frame = unsafe { self.pools[pool].umem.data(desc) };
        let mut buf = [0u8; pmtu::MAX_ANSWER];
        let Some(n) = too_big(frame.contents(), mtu, &mut buf) else {
            return;
        };
        let Some(mut out) = self.pools[pool].frames.take() else {
            self.counters.count_drop(WorkerDrop::NoFrame, 1);
            return;
        };
        // SAFETY: a free frame nobody else touches.
        if !unsafe { write_frame(&self.pools[pool].umem, &mut out, &[&buf[..n]]) } {
            self.pools[pool].frames.release(&out);
            return;
        }
        bump(&self.counters.icmp_frag_needed, 1);
        self.socks[ps].pending.push(out);
    }

    /// Rewrites the outer source MAC of an encapsulated frame of `pool` to the active
    /// uplink's (the uplinks of one host may differ).
    fn set_source_mac(&mut self, pool: usize, desc: &FrameDesc) {
        let mut d = *desc;
        // SAFETY: a frame we own (taken off an RX ring or copied), on no ring yet.
        let mut data = unsafe { self.pools[pool].umem.data_mut(&mut d) };
        if let Some(src) = data.contents_mut().get_mut(6..12) {
            src.copy_from_slice(&self.spec.local_mac);
        }
    }

    fn transmit(&mut self) {
        for sock in &mut self.socks {
            if sock.pending.is_empty() {
                continue;
            }
            // SAFETY: every pending descriptor is a frame of this UMEM that we own (taken off
            // an RX ring or the free list) and that sits on no other ring.
            let sent = unsafe { sock.tx.produce(&sock.pending) };
            sock.in_tx += sent;
            let dropped = sock.pending.len() - sent;
            if dropped > 0 {
                self.counters
                    .count_drop(WorkerDrop::TxRingFull, dropped as u64);
                let frames = &mut self.pools[sock.pool].frames;
                for d in &sock.pending[sent..] {
                    frames.release(d);
                }
            }
            sock.pending.clear();
        }
        for sock in &mut self.socks {
            // Copy mode transmits only when kicked, and at most a budget per kick: kick while
            // anything is on the ring (completions lower `in_tx` as frames leave).
            if sock.in_tx > 0 && sock.tx.wakeup().is_err() {
                tracing::debug!("TX wakeup failed");
            }
        }
    }

    fn refill(&mut self) {
        for sock in &mut self.socks {
            let want = sock.fill_target.saturating_sub(sock.in_fill);
            let frames = &mut self.pools[sock.pool].frames;
            // Keep a reserve for flood copies and TX: never hand the last frames to the kernel.
            let reserve = frames.total / 8;
            let can = want.min(frames.free.len().saturating_sub(reserve));
            if can < 16.min(want) || can == 0 {
                continue;
            }
            let descs: Vec<FrameDesc> = (0..can).filter_map(|_| frames.take()).collect();
            // SAFETY: free frames belong to this UMEM and sit on no ring.
            let put = unsafe { sock.fq.produce(&descs) };
            sock.in_fill += put;
            for d in &descs[put..] {
                frames.release(d);
            }
        }
    }

    fn publish_frames(&self) {
        // Never wait for a reader: the next round publishes.
        let mut f = match self.counters.frames.try_lock() {
            Ok(f) => f,
            // Plain numbers, each write complete: a panic elsewhere cannot leave them torn.
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        f.total = self.pools.iter().map(|p| p.frames.total as u64).sum();
        f.free = self.pools.iter().map(|p| p.frames.free.len() as u64).sum();
        f.fill = self.socks.iter().map(|s| s.in_fill as u64).sum();
        f.tx = self.socks.iter().map(|s| s.in_tx as u64).sum();
    }

    /// Frames accounted for, UMEM by UMEM: free + on its sockets' fill rings + on their TX
    /// rings == total.
    pub fn frames_conserved(&self) -> bool {
        self.pools.iter().enumerate().all(|(i, pool)| {
            let of_pool = || self.socks.iter().filter(move |s| s.pool == i);
            let fill: usize = of_pool().map(|s| s.in_fill).sum();
            let tx: usize = of_pool().map(|s| s.in_tx).sum();
            pool.frames.free.len() + fill + tx == pool.frames.total
        })
    }

    fn check_frames(&self) {
        if !self.frames_conserved() {
            tracing::error!(queue = self.spec.queue, "UMEM frame accounting broken");
        }
    }

    /// Runs the devices' receive processing from this thread: a non-blocking `recvfrom` on
    /// a busy-polling AF_XDP socket polls its NAPI context.
    fn busy_poll(&self) {
        for sock in &self.socks {
            // SAFETY: a zero-length non-blocking receive on our own socket; no buffer is
            // touched.
            unsafe {
                libc::recvfrom(
                    sock.fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
    }

    fn idle_wait(&mut self, timeout: Duration) {
        bump(&self.counters.idle_polls, 1);
        let mut fds: Vec<libc::pollfd> = self
            .socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    }
}
