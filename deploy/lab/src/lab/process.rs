//! Processes in a lab's namespaces: the data planes and whatever [`Lab::spawn`] starts,
//! tracked until they end, signalled, stopped and restarted.

use std::{
    ffi::OsStr,
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::{net::UnixStream, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{
    Lab,
    topology::{interface_state, link_exists},
    write_file,
};
use crate::{
    LabError,
    cmd::{self, tail},
    config, netns,
    spec::{OURS_INTERFACE, Overlay},
};

/// How many log lines a readiness error carries.
const LOG_TAIL_LINES: usize = 40;
/// How long a stopped process gets between SIGTERM and SIGKILL.
pub(super) const TERM_GRACE: Duration = Duration::from_secs(3);

/// Signals the lab sends to processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
    Int,
    Hup,
    /// Freezes a process (e.g. a data plane that hangs without dying).
    Stop,
    Cont,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Int => libc::SIGINT,
            Signal::Hup => libc::SIGHUP,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

pub(super) fn send_signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions. The pid is our unreaped child or
        // was just listed by `ip netns pids`, so it names the process we mean.
        unsafe { libc::kill(pid, sig.raw()) };
    }
}

/// A process started with [`Lab::spawn`]; the lab kills it at the latest when it goes down.
#[derive(Clone, Debug)]
pub struct Spawned {
    pub host: String,
    pub pid: u32,
    /// Its stdout and stderr.
    pub log: PathBuf,
    index: usize,
}

#[derive(Debug)]
pub(super) struct Proc {
    child: Child,
    exit: Option<ExitStatus>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once it has ended (reaping it).
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.exit = Some(st);
        }
        self.exit
    }

    pub(super) fn signal(&mut self, sig: Signal) {
        // Never signal a reaped child: its pid may belong to someone else by now.
        if self.poll().is_none() {
            send_signal(self.pid(), sig);
        }
    }

    pub(super) fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.poll() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; always reaps.
    fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(Signal::Term);
        // A frozen (SIGSTOPped) process only acts on the SIGTERM once it runs again.
        self.signal(Signal::Cont);
        if let Some(st) = self.wait_for(grace) {
            return Some(st);
        }
        self.signal(Signal::Kill);
        self.wait_for(Duration::from_secs(5))
    }
}

impl Lab {
    pub(super) fn start_dataplanes(&mut self, progress: &dyn Fn(&str)) -> Result<(), LabError> {
        let ours: Vec<String> = self
            .spec
            .hosts
            .iter()
            .filter(|h| matches!(h.overlay, Overlay::Ours { .. }))
            .map(|h| h.name.clone())
            .collect();
        // Start them all, then wait: they come up in parallel.
        for host in &ours {
            progress(&format!(
                "host {}: starting {} run",
                self.spec.ns(host),
                self.spec.dataplane_bin.display()
            ));
            self.launch_dataplane(host)?;
        }
        let deadline = Instant::now() + self.spec.ready_timeout;
        for host in &ours {
            self.wait_ready(host, deadline)?;
            progress(&format!("host {}: data plane ready", self.spec.ns(host)));
        }
        Ok(())
    }

    /// Writes the config and starts `dataplane run` on `host`, removing what a previous
    /// instance may have left (its `ovl0`, its socket) so readiness means the new one.
    fn launch_dataplane(&mut self, host: &str) -> Result<(), LabError> {
        let ns = self.ns_checked(host)?;
        let cfg_path = self.config_path(host);
        let sock = self.control_socket(host);
        let text = config::render(&self.spec, host, &sock)?;
        write_file(&cfg_path, &text)?;
        match fs::remove_file(&sock) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io(format!("remove {}", sock.display()), e)),
        }
        if link_exists(&ns, OURS_INTERFACE) {
            cmd::ip_ns(&ns, &["link", "del", OURS_INTERFACE])?;
        }
        let log_path = self.dataplane_log_path(host);
        let mut log = open_log(&log_path, true)?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &ns])
            .arg(&self.spec.dataplane_bin)
            .arg("run")
            .arg("--config")
            .arg(&cfg_path)
            // Its log is a file: no colour escapes in it.
            .env("NO_COLOR", "1");
        let line = cmd::describe(&command);
        // The marker separates restarts in the one log file.
        writeln!(log, "--- ovl-lab: {line}")
            .map_err(|e| LabError::io(format!("write {}", log_path.display()), e))?;
        let child = spawn_logged(&mut command, log, &log_path)?;
        write_file(
            &self.dir.join(format!("{host}.pid")),
            &child.id().to_string(),
        )?;
        tracing::debug!(host, pid = child.id(), "data plane started");
        self.dataplanes
            .insert(host.to_string(), Proc { child, exit: None });
        Ok(())
    }

    /// Waits until `ovl0` is up with its address and the control socket accepts.
    fn wait_ready(&mut self, host: &str, deadline: Instant) -> Result<(), LabError> {
        let ns = self.spec.ns(host);
        let want = self
            .spec
            .host(host)
            .and_then(|(_, h)| h.overlay.addr())
            .ok_or_else(|| LabError::NotOurs(host.to_string()))?;
        let sock = self.control_socket(host);
        loop {
            let exited = match self.dataplanes.get_mut(host) {
                Some(p) => p.poll(),
                None => return Err(LabError::NotOurs(host.to_string())),
            };
            if let Some(st) = exited {
                return Err(self.not_ready(host, format!("it exited ({st}) before it was ready")));
            }
            let reason = match interface_state(&ns, OURS_INTERFACE) {
                None => format!("no {OURS_INTERFACE} in {ns}"),
                Some(s) if !s.up => format!("{OURS_INTERFACE} is down"),
                Some(s) if !s.addrs.contains(&want.addr) => {
                    format!("{OURS_INTERFACE} has no address {}", want.addr)
                }
                Some(_) => match UnixStream::connect(&sock) {
                    Ok(_) => return Ok(()),
                    Err(e) => format!("control socket {}: {e}", sock.display()),
                },
            };
            if Instant::now() >= deadline {
                return Err(self.not_ready(
                    host,
                    format!(
                        "still not ready after {:?}: {reason}",
                        self.spec.ready_timeout
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn not_ready(&self, host: &str, reason: String) -> LabError {
        let log = fs::read_to_string(self.dataplane_log_path(host)).unwrap_or_default();
        LabError::DataplaneNotReady {
            host: host.to_string(),
            reason,
            log_tail: tail(log.trim_end(), LOG_TAIL_LINES),
        }
    }

    /// Starts `args` in `host`'s namespace in the background, stdout and stderr to
    /// `{state dir}/{log_name}.log`. The lab kills it when it goes down.
    pub fn spawn<S: AsRef<OsStr>>(
        &mut self,
        host: &str,
        args: &[S],
        log_name: &str,
    ) -> Result<Spawned, LabError> {
        let ns = self.ns_checked(host)?;
        if log_name.is_empty() || log_name.contains('/') || log_name.starts_with('.') {
            return Err(LabError::InvalidSpec(format!("log name `{log_name}`")));
        }
        let log_path = self.dir.join(format!("{log_name}.log"));
        let log = open_log(&log_path, false)?;
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &ns]).args(args);
        let child = spawn_logged(&mut command, log, &log_path)?;
        let pid = child.id();
        self.spawned.push(Proc { child, exit: None });
        Ok(Spawned {
            host: host.to_string(),
            pid,
            log: log_path,
            index: self.spawned.len() - 1,
        })
    }

    fn proc_of(&mut self, p: &Spawned) -> Option<&mut Proc> {
        self.spawned.get_mut(p.index).filter(|x| x.pid() == p.pid)
    }

    /// Sends `sig` to a spawned process (nothing if it has ended).
    pub fn signal(&mut self, p: &Spawned, sig: Signal) {
        if let Some(proc) = self.proc_of(p) {
            proc.signal(sig);
        }
    }

    /// Waits up to `timeout` for a spawned process to end; `None` if it still runs.
    pub fn wait(&mut self, p: &Spawned, timeout: Duration) -> Option<ExitStatus> {
        self.proc_of(p).and_then(|x| x.wait_for(timeout))
    }

    /// Stops a spawned process (SIGTERM, SIGKILL after a grace period) and reaps it.
    pub fn stop(&mut self, p: &Spawned) -> Option<ExitStatus> {
        self.proc_of(p).and_then(|x| x.stop(TERM_GRACE))
    }

    /// Pid of `host`'s data plane while it runs.
    pub fn dataplane_pid(&mut self, host: &str) -> Option<u32> {
        let p = self.dataplanes.get_mut(host)?;
        p.poll().is_none().then(|| p.pid())
    }

    /// Pids of every process in `host`'s namespace (`ip netns pids`: the data plane, whatever
    /// [`Lab::spawn`] started there, anything else run in it), never the caller's own.
    pub fn host_pids(&self, host: &str) -> Result<Vec<u32>, LabError> {
        netns::pids(&self.ns_checked(host)?)
    }

    /// Sends `sig` to every process in `host`'s namespace, one right after the other, as a
    /// hypervisor freezes ([`Signal::Stop`]) and resumes ([`Signal::Cont`]) all a VM runs.
    /// Returns the pids signalled. Only the lab's own namespaces are looked at; as in the
    /// teardown, a process that ends between the listing and the signal is the one risk.
    pub fn signal_host(&self, host: &str, sig: Signal) -> Result<Vec<u32>, LabError> {
        let pids = self.host_pids(host)?;
        for &pid in &pids {
            send_signal(pid, sig);
        }
        Ok(pids)
    }

    /// Sends `sig` to `host`'s data plane (nothing if it has ended). It is not restarted.
    pub fn kill_dataplane(&mut self, host: &str, sig: Signal) -> Result<(), LabError> {
        self.ours(host)?;
        if let Some(p) = self.dataplanes.get_mut(host) {
            p.signal(sig);
        }
        Ok(())
    }

    /// Waits up to `timeout` for `host`'s data plane to end; `None` if it still runs.
    pub fn wait_dataplane(
        &mut self,
        host: &str,
        timeout: Duration,
    ) -> Result<Option<ExitStatus>, LabError> {
        self.ours(host)?;
        Ok(self
            .dataplanes
            .get_mut(host)
            .and_then(|p| p.wait_for(timeout)))
    }

    /// Stops `host`'s data plane (SIGTERM, SIGKILL after a grace period) if it runs, starts
    /// it again with a freshly written config and waits until it is ready.
    pub fn restart_dataplane(&mut self, host: &str) -> Result<(), LabError> {
        self.ours(host)?;
        if let Some(mut old) = self.dataplanes.remove(host) {
            old.stop(TERM_GRACE);
        }
        self.launch_dataplane(host)?;
        let deadline = Instant::now() + self.spec.ready_timeout;
        self.wait_ready(host, deadline)
    }

    /// Everything `host`'s data plane wrote (all runs, separated by `--- ovl-lab:` lines).
    pub fn dataplane_log(&self, host: &str) -> Result<String, LabError> {
        self.ours(host)?;
        let path = self.dataplane_log_path(host);
        fs::read_to_string(&path).map_err(|e| LabError::io(format!("read {}", path.display()), e))
    }

    fn ours(&self, host: &str) -> Result<(), LabError> {
        match self.spec.host(host) {
            None => Err(LabError::UnknownHost(host.to_string())),
            Some((_, h)) if matches!(h.overlay, Overlay::Ours { .. }) => Ok(()),
            Some(_) => Err(LabError::NotOurs(host.to_string())),
        }
    }
}

fn open_log(path: &Path, append: bool) -> Result<File, LabError> {
    OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(path)
        .map_err(|e| LabError::io(format!("open {}", path.display()), e))
}

/// Starts `command` with stdout and stderr to `log`, in its own process group (a Ctrl-C for
/// the caller's terminal does not reach it; the lab stops it).
fn spawn_logged(command: &mut Command, log: File, log_path: &Path) -> Result<Child, LabError> {
    let err = log
        .try_clone()
        .map_err(|e| LabError::io(format!("open {}", log_path.display()), e))?;
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::io(format!("start `{}`", cmd::describe(command)), e))
}
