//! The sending loop: a TX-only AF_XDP socket whose UMEM frames hold the templates, written
//! once. Each round only moves descriptors: completions back to the free queue, free frames
//! onto the TX ring, and a `sendto` to kick the kernel (copy mode transmits only when kicked).

use std::{
    collections::VecDeque,
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use xsk_rs::{
    CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem,
    config::{BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

use super::{FrameSpec, GenError, build_templates, pacing::TokenBucket};

/// Frames are at most 1550 bytes (1500 + tunnel headers): the smallest chunk holds them
/// after the kernel's 256-byte headroom, and half the memory of the default is kinder to
/// the cache.
const CHUNK_SIZE: u32 = 2048;
/// The socket needs an RX ring and the UMEM a fill ring, though nothing is received (no XDP
/// program redirects to the socket).
const IDLE_RING: u32 = 64;
/// The longest wait for outstanding completions at the end.
const DRAIN: Duration = Duration::from_millis(200);
/// How often `progress` is called.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// setsockopt(SOL_XDP, XDP_MAX_TX_SKB_BUDGET): descriptors one `sendto` may send in copy
/// mode (Linux 6.17+; the default is 32). Older kernels refuse it and keep 32.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// The kernel's default (and smallest allowed) copy-mode budget.
const DEFAULT_TX_BUDGET: usize = 32;
/// How long to retry binding to a queue that a socket closed just before still holds.
const BUSY_RETRY: Duration = Duration::from_secs(2);
/// Longest sleep slice of a paced run, so a stop request is seen quickly.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// How and where to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenConfig {
    /// Interface to send on (in the calling thread's network namespace).
    pub ifname: String,
    /// Queue to bind to.
    pub queue: u32,
    /// How long to send.
    pub duration: Duration,
    /// None: as fast as possible; Some: paced by a token bucket whose burst is `batch`.
    pub rate_pps: Option<u64>,
    /// Descriptors put on the TX ring at once.
    pub batch: usize,
    /// UMEM frames.
    pub frames: u32,
    /// TX and completion ring size (a power of two).
    pub ring: u32,
    /// Pin the sending thread to this CPU.
    pub cpu: Option<usize>,
}

impl GenConfig {
    /// Defaults: queue 0, 5 s, full speed, batch 64, 4096 frames, rings of 2048, not pinned.
    pub fn new(ifname: impl Into<String>) -> Self {
        GenConfig {
            ifname: ifname.into(),
            queue: 0,
            duration: Duration::from_secs(5),
            rate_pps: None,
            batch: 64,
            frames: 4096,
            ring: 2048,
            cpu: None,
        }
    }

    /// Checks the numbers before anything is created.
    pub fn validate(&self) -> Result<(), GenError> {
        let bad = |what: String| Err(GenError::Config(what));
        if self.ifname.is_empty() || self.ifname.len() > 15 || self.ifname.contains('\0') {
            return bad(format!("interface name `{}`", self.ifname));
        }
        if self.duration.is_zero() {
            return bad("the duration must be positive".into());
        }
        if self.rate_pps == Some(0) {
            return bad("the rate must be positive".into());
        }
        if !self.ring.is_power_of_two() || !(64..=65536).contains(&self.ring) {
            return bad(format!(
                "ring size {} must be a power of two from 64 to 65536",
                self.ring
            ));
        }
        if self.batch == 0 || self.batch > self.ring as usize {
            return bad(format!(
                "batch {} must be from 1 to the ring size {}",
                self.batch, self.ring
            ));
        }
        if (self.frames as usize) < self.batch || self.frames > 1 << 20 {
            return bad(format!(
                "frame count {} must be from the batch size {} to 1048576",
                self.frames, self.batch
            ));
        }
        Ok(())
    }
}

/// What a run did. `sent` counts descriptors the kernel completed (handed to the driver);
/// `submitted` those put on the TX ring.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenReport {
    pub sent: u64,
    pub submitted: u64,
    pub seconds: f64,
    /// `sent / seconds`.
    pub pps: f64,
    /// Bytes of the completed frames (without FCS).
    pub bytes: u64,
    /// The socket's `XDP_STATISTICS`: descriptors the kernel refused.
    pub tx_invalid: u64,
    /// The socket's `XDP_STATISTICS`: times the kernel found the TX ring empty.
    pub tx_ring_empty_descs: u64,
}

/// Sends `spec`'s frames on `cfg.ifname` until `cfg.duration` passes or `stop` is set, calling
/// `progress` about once a second with the running totals.
pub fn run(
    cfg: &GenConfig,
    spec: &FrameSpec,
    stop: &AtomicBool,
    mut progress: impl FnMut(&GenReport),
) -> Result<GenReport, GenError> {
    cfg.validate()?;
    let templates = build_templates(spec)?;
    if let Some(cpu) = cfg.cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        return Err(GenError::Config(format!("cannot pin to CPU {cpu}")));
    }
    let mut s = Sender::open(cfg, &templates)?;
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let mut next_progress = start + PROGRESS_EVERY;
    let mut bucket = cfg.rate_pps.map(|r| {
        (
            TokenBucket::new(r, cfg.batch, start),
            TokenBucket::send_threshold(r, cfg.batch),
        )
    });
    let mut last_completion = start;
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        if now >= next_progress {
            next_progress += PROGRESS_EVERY;
            progress(&s.report(now - start));
        }
        if s.reclaim() > 0 {
            last_completion = now;
        }
        let mut want = cfg.batch.min(s.free.len());
        if let Some((b, threshold)) = &mut bucket {
            b.refill(now);
            if b.available() < *threshold {
                // Nothing to send yet: kick what is queued, then wait for tokens.
                s.kick()?;
                if s.unconsumed() == 0 {
                    let wait = b.wait_for(*threshold).min(deadline - now).min(MAX_SLEEP);
                    pause(wait);
                }
                continue;
            }
            want = want.min(b.available());
            let n = s.submit(want);
            b.take(n);
        } else {
            s.submit(want);
        }
        s.kick()?;
    }
    let sending_ended = Instant::now();
    let drain_deadline = sending_ended + DRAIN;
    while s.outstanding() > 0 && Instant::now() < drain_deadline {
        if s.reclaim() > 0 {
            last_completion = Instant::now();
        } else {
            s.kick()?;
            pause(Duration::from_micros(50));
        }
    }
    // Completions drained after the loop belong to frames submitted in it: time runs to the
    // last of them, or to the end of sending if there were none.
    let end = last_completion.max(sending_ended);
    Ok(s.report(end - start))
}

/// Sleeps for long waits, yields for short ones (sleep overshoots by tens of microseconds).
fn pause(d: Duration) {
    if d >= Duration::from_micros(200) {
        std::thread::sleep(d - Duration::from_micros(50));
    } else {
        std::thread::yield_now();
    }
}

/// Why opening failed: a busy queue is worth another try.
enum Opening {
    Busy(GenError),
    Failed(GenError),
}

struct Sender {
    // Queues before the UMEM: fields drop in order, and the rings live in the UMEM's mapping.
    tx: TxQueue,
    _rx: RxQueue,
    _fq: FillQueue,
    cq: CompQueue,
    _umem: Umem,
    /// Each frame's descriptor with its template's length, by frame index.
    descs: Vec<FrameDesc>,
    frame_size: usize,
    /// Free frames in the order they came back, so frames (and so templates) take turns.
    free: VecDeque<u32>,
    /// Descriptors being handed to `produce`.
    stage: Vec<FrameDesc>,
    /// Completion scratch.
    done: Vec<FrameDesc>,
    ring: u32,
    sent: u64,
    submitted: u64,
    bytes: u64,
}

impl Sender {
    /// Opens the socket, retrying for a while when the queue is still busy: the kernel
    /// releases a closed AF_XDP socket's hold on the queue asynchronously, so a run right
    /// after another one on the same queue can find it taken.
    fn open(cfg: &GenConfig, templates: &[Vec<u8>]) -> Result<Sender, GenError> {
        let deadline = Instant::now() + BUSY_RETRY;
        loop {
            match Self::try_open(cfg, templates) {
                Err(Opening::Busy(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(Opening::Busy(e) | Opening::Failed(e)) => return Err(e),
                Ok(s) => return Ok(s),
            }
        }
    }

    fn try_open(cfg: &GenConfig, templates: &[Vec<u8>]) -> Result<Sender, Opening> {
        let setup = |what: String| {
            Opening::Failed(GenError::Setup {
                ifname: cfg.ifname.clone(),
                queue: cfg.queue,
                what,
            })
        };
        let qsize = |n: u32| QueueSize::new(n).map_err(|e| setup(format!("ring size {n}: {e}")));
        let umem_cfg = UmemConfig::builder()
            .frame_size(FrameSize::new(CHUNK_SIZE).map_err(|e| setup(format!("{e}")))?)
            .fill_queue_size(qsize(IDLE_RING)?)
            .comp_queue_size(qsize(cfg.ring)?)
            .build()
            .map_err(|e| setup(format!("UMEM config: {e}")))?;
        let count = cfg
            .frames
            .try_into()
            .map_err(|_| setup("zero frames".into()))?;
        let (umem, mut descs) =
            Umem::new(umem_cfg, count, false).map_err(|e| setup(format!("create UMEM: {e}")))?;
        let frame_size = match (descs.first(), descs.get(1)) {
            (Some(a), Some(b)) => b.addr() - a.addr(),
            _ => CHUNK_SIZE as usize,
        };
        // The templates go in once; the loop never writes frame contents.
        for (i, desc) in descs.iter_mut().enumerate() {
            let t = &templates[i % templates.len()];
            // SAFETY: the frame belongs to this UMEM and no ring holds it yet.
            let mut data = unsafe { umem.data_mut(desc) };
            let mut cursor = data.cursor();
            cursor.set_pos(0);
            std::io::Write::write_all(&mut cursor, t)
                .map_err(|e| setup(format!("a {}-byte frame does not fit: {e}", t.len())))?;
        }
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(qsize(IDLE_RING)?)
            .tx_queue_size(qsize(cfg.ring)?)
            // Nothing is received, so no XDP program: leave the interface alone.
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        let name = cfg
            .ifname
            .parse()
            .map_err(|_| setup("bad interface name".into()))?;
        // SAFETY: this UMEM is not shared with another socket, and INHIBIT_PROG_LOAD is set.
        let (tx, rx, rings) = unsafe { xsk_rs::Socket::new(sock_cfg, &umem, &name, cfg.queue) }
            .map_err(|e| {
                let cause = std::error::Error::source(&e);
                let busy = cause
                    .and_then(|c| c.downcast_ref::<std::io::Error>())
                    .and_then(std::io::Error::raw_os_error)
                    == Some(libc::EBUSY);
                let cause = cause.map(|c| format!(": {c}")).unwrap_or_default();
                match setup(format!("bind: {e}{cause}")) {
                    Opening::Failed(e) if busy => Opening::Busy(e),
                    other => other,
                }
            })?;
        let (fq, cq) = rings.ok_or_else(|| setup("no fill/completion ring".into()))?;
        let budget = cfg.batch.clamp(DEFAULT_TX_BUDGET, cfg.ring as usize) as libc::c_uint;
        // SAFETY: a plain setsockopt on our socket with a correctly sized value; failure
        // (an older kernel) only leaves the default budget.
        let _ = unsafe {
            libc::setsockopt(
                tx.fd().as_raw_fd(),
                libc::SOL_XDP,
                XDP_MAX_TX_SKB_BUDGET,
                (&budget as *const libc::c_uint).cast(),
                std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
            )
        };
        let total = descs.len() as u32;
        Ok(Sender {
            tx,
            _rx: rx,
            _fq: fq,
            cq,
            _umem: umem,
            descs,
            frame_size,
            free: (0..total).collect(),
            stage: Vec::with_capacity(cfg.batch),
            done: vec![FrameDesc::default(); cfg.ring as usize],
            ring: cfg.ring,
            sent: 0,
            submitted: 0,
            bytes: 0,
        })
    }

    /// Takes completed frames back. Returns how many.
    fn reclaim(&mut self) -> usize {
        // SAFETY: completions hand back descriptors of frames we put on this socket's TX ring,
        // all from this UMEM.
        let n = unsafe { self.cq.consume(&mut self.done) };
        for d in &self.done[..n] {
            let i = d.addr() / self.frame_size;
            if let Some(desc) = self.descs.get(i) {
                self.bytes += desc.lengths().data() as u64;
                self.free.push_back(i as u32);
            }
        }
        self.sent += n as u64;
        n
    }

    /// Puts up to `want` free frames on the TX ring. Returns how many went.
    fn submit(&mut self, want: usize) -> usize {
        let room = self.tx.nb_free(want as u32) as usize;
        let n = want.min(room).min(self.free.len());
        if n == 0 {
            return 0;
        }
        self.stage.clear();
        self.stage
            .extend(self.free.iter().take(n).map(|&i| self.descs[i as usize]));
        // SAFETY: the staged frames are free (off every ring), belong to this UMEM, and keep
        // the lengths of the templates written at start.
        let put = unsafe { self.tx.produce(&self.stage) };
        self.free.drain(..put);
        self.submitted += put as u64;
        put
    }

    /// Descriptors on the TX ring the kernel has not taken yet.
    fn unconsumed(&mut self) -> u32 {
        self.ring - self.tx.nb_free_exact().min(self.ring)
    }

    /// Wakes the kernel if the ring asks for it and holds something.
    fn kick(&mut self) -> Result<(), GenError> {
        if self.tx.needs_wakeup() && self.unconsumed() > 0 {
            self.tx.wakeup().map_err(|source| GenError::Io {
                what: "TX wakeup (sendto)",
                source,
            })?;
        }
        Ok(())
    }

    fn outstanding(&self) -> u64 {
        self.submitted - self.sent
    }

    fn report(&self, elapsed: Duration) -> GenReport {
        let seconds = elapsed.as_secs_f64();
        let (tx_invalid, tx_ring_empty_descs) = match self.tx.fd().xdp_statistics() {
            Ok(st) => (st.tx_invalid_descs(), st.tx_ring_empty_descs()),
            Err(_) => (0, 0),
        };
        GenReport {
            sent: self.sent,
            submitted: self.submitted,
            seconds,
            pps: if seconds > 0.0 {
                self.sent as f64 / seconds
            } else {
                0.0
            },
            bytes: self.bytes,
            tx_invalid,
            tx_ring_empty_descs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks() {
        let ok = GenConfig::new("veth0");
        assert!(ok.validate().is_ok());
        let bad = [
            GenConfig {
                ifname: String::new(),
                ..ok.clone()
            },
            GenConfig {
                ifname: "a-very-long-interface-name".into(),
                ..ok.clone()
            },
            GenConfig {
                duration: Duration::ZERO,
                ..ok.clone()
            },
            GenConfig {
                rate_pps: Some(0),
                ..ok.clone()
            },
            GenConfig {
                ring: 1000,
                ..ok.clone()
            },
            GenConfig {
                batch: 0,
                ..ok.clone()
            },
            GenConfig {
                batch: 4096,
                ..ok.clone()
            },
            GenConfig {
                frames: 32,
                ..ok.clone()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(GenError::Config(_))),
                "{c:?} passed"
            );
        }
    }

    #[test]
    fn report_round_trips_through_json() {
        let r = GenReport {
            sent: 10,
            submitted: 12,
            seconds: 0.5,
            pps: 20.0,
            bytes: 600,
            tx_invalid: 1,
            tx_ring_empty_descs: 2,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"tx_ring_empty_descs\":2"), "{text}");
        assert_eq!(serde_json::from_str::<GenReport>(&text).unwrap(), r);
    }
}
