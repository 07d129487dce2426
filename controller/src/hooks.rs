//! Notify hooks: a user command run on every transition, like keepalived's notify scripts.
//!
//! The event loop only queues a job (never blocks: a full queue drops the job and counts it);
//! a worker thread runs the jobs one after the other, in order, each through `/bin/sh -c` with
//! `STATE`, `PREV_STATE`, `CAUSE`, `CAUSE_TEXT`, `NODE` and `TIMESTAMP_NS` in its environment,
//! and kills one that outlives its timeout.

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use crossbeam_channel::{Sender, TrySendError, bounded};

use crate::health::wait_timeout;

/// Jobs waiting beyond this are dropped (and counted as failed).
pub const QUEUE: usize = 64;

/// One transition to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookJob {
    /// New state.
    pub state: String,
    /// Previous state.
    pub prev_state: String,
    /// Cause code (e.g. `peer-dead`).
    pub cause: String,
    /// Cause in words.
    pub cause_text: String,
    /// Our node name.
    pub node: String,
    /// Wall-clock time of the transition in nanoseconds.
    pub timestamp_ns: u128,
}

/// Counts of the hook worker.
#[derive(Debug, Default)]
pub struct HookStats {
    /// Commands started.
    pub run: AtomicU64,
    /// Commands that failed, timed out, or were dropped.
    pub failed: AtomicU64,
}

/// Queues jobs for the worker thread.
#[derive(Debug)]
pub struct HookRunner {
    tx: Option<Sender<HookJob>>,
    stats: Arc<HookStats>,
    worker: Option<thread::JoinHandle<()>>,
}

impl HookRunner {
    /// Starts the worker for `command` (`None`: jobs are ignored).
    pub fn new(command: Option<String>, timeout: Duration) -> std::io::Result<HookRunner> {
        HookRunner::with_queue(command, timeout, QUEUE)
    }

    fn with_queue(
        command: Option<String>,
        timeout: Duration,
        queue: usize,
    ) -> std::io::Result<HookRunner> {
        let stats = Arc::new(HookStats::default());
        let Some(command) = command else {
            return Ok(HookRunner {
                tx: None,
                stats,
                worker: None,
            });
        };
        let (tx, rx) = bounded::<HookJob>(queue);
        let st = stats.clone();
        let worker = thread::Builder::new().name("hooks".into()).spawn(move || {
            for job in rx {
                st.run.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = run_one(&command, &job, timeout) {
                    st.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(state = %job.state, error = %e, "notify hook failed");
                }
            }
        })?;
        Ok(HookRunner {
            tx: Some(tx),
            stats,
            worker: Some(worker),
        })
    }

    /// Queues a job; never blocks.
    pub fn notify(&self, job: HookJob) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(state = %job.state, "notify hook dropped: queue full");
            }
        }
    }

    /// The counts.
    pub fn stats(&self) -> &HookStats {
        &self.stats
    }

    /// Lets queued jobs finish (each bounded by its timeout) and stops the worker.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn run_one(command: &str, job: &HookJob, timeout: Duration) -> Result<(), String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("STATE", &job.state)
        .env("PREV_STATE", &job.prev_state)
        .env("CAUSE", &job.cause)
        .env("CAUSE_TEXT", &job.cause_text)
        .env("NODE", &job.node)
        .env("TIMESTAMP_NS", job.timestamp_ns.to_string())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    match wait_timeout(&mut child, timeout) {
        Ok(Some(s)) if s.success() => Ok(()),
        Ok(Some(s)) => Err(format!("exited with {s}")),
        Ok(None) => Err(format!("killed after {timeout:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn job(state: &str) -> HookJob {
        HookJob {
            state: state.into(),
            prev_state: "backup".into(),
            cause: "peer-dead".into(),
            cause_text: "peer's heartbeats stopped".into(),
            node: "pri".into(),
            timestamp_ns: 1_700_000_000_000_000_123,
        }
    }

    #[test]
    fn runs_in_order_with_environment() {
        let out = std::env::temp_dir().join(format!("ctl-hooks-{}", std::process::id()));
        let _ = std::fs::remove_file(&out);
        let cmd = format!(
            "echo \"$NODE $PREV_STATE->$STATE $CAUSE $TIMESTAMP_NS\" >> {}",
            out.display()
        );
        let h = HookRunner::new(Some(cmd), Duration::from_secs(5)).unwrap();
        let t = Instant::now();
        h.notify(job("active"));
        h.notify(job("fault"));
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "notify must not wait"
        );
        h.finish();
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            text,
            "pri backup->active peer-dead 1700000000000000123\npri backup->fault peer-dead 1700000000000000123\n"
        );
        let _ = std::fs::remove_file(&out);
    }

    #[test]
    fn slow_hook_is_killed_and_counted_and_never_blocks() {
        let h =
            HookRunner::with_queue(Some("sleep 10".into()), Duration::from_millis(100), 2).unwrap();
        let t = Instant::now();
        for _ in 0..6 {
            h.notify(job("active"));
        }
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "notify must not wait"
        );
        let stats = h.stats.clone();
        h.finish();
        // At most 3 ran (one taken by the worker, two queued), each killed at its timeout.
        let run = stats.run.load(Ordering::Relaxed);
        assert!((2..=3).contains(&run), "run {run}");
        assert_eq!(stats.failed.load(Ordering::Relaxed), 6);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "killed, not waited for"
        );
    }

    #[test]
    fn no_command_is_a_no_op() {
        let h = HookRunner::new(None, Duration::from_secs(1)).unwrap();
        h.notify(job("active"));
        assert_eq!(h.stats().run.load(Ordering::Relaxed), 0);
        h.finish();
    }
}
