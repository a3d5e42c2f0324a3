//! Background processes owned by the stack: started detached with their output
//! in a log file, remembered by PID, stopped by PID and nothing else.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// One service's folder in the state directory: its PID file and its log.
pub struct ProcessSlot {
    name: &'static str,
    dir: PathBuf,
    /// A string that appears in the command line of the process we started
    /// (by default the state folder's path), so a recycled PID is never
    /// mistaken for ours.
    marker: String,
}

impl ProcessSlot {
    pub fn new(name: &'static str, state_dir: &Path) -> Self {
        Self::with_marker(name, state_dir, state_dir.display().to_string())
    }

    /// A slot whose process is recognised by `marker` in its command line.
    pub fn with_marker(name: &'static str, state_dir: &Path, marker: String) -> Self {
        Self {
            name,
            dir: state_dir.join(name),
            marker,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join(format!("{}.pid", self.name))
    }

    /// The PID of the process this stack started, if it is still alive.
    pub fn running_pid(&self) -> Option<Pid> {
        let text = fs::read_to_string(self.pid_file()).ok()?;
        let pid = Pid::from_raw(text.trim().parse().ok()?);
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        cmdline.contains(&self.marker).then_some(pid)
    }

    /// Starts `command` detached from this process (own process group, no
    /// terminal, output appended to the log file) and records its PID.
    pub fn spawn(&self, mut command: Command) -> Result<Pid> {
        fs::create_dir_all(&self.dir)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .with_context(|| format!("cannot open {}", self.log_file().display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {} ({program})", self.name))?;
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("PIDs fit in i32"));
        fs::write(self.pid_file(), format!("{pid}\n"))?;
        Ok(pid)
    }

    /// Stops the recorded process with `signal`, escalating to SIGKILL after
    /// `grace`. Returns the PID that was stopped, if one was running.
    pub fn stop(&self, signal: Signal, grace: Duration) -> Result<Option<Pid>> {
        let Some(pid) = self.running_pid() else {
            let _ = fs::remove_file(self.pid_file());
            return Ok(None);
        };
        kill(pid, signal).with_context(|| format!("cannot signal {} (pid {pid})", self.name))?;
        let deadline = Instant::now() + grace;
        loop {
            // A process this xtask started itself would linger as a zombie
            // until we exit; reap it (for any other process this is a no-op).
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            if self.running_pid().is_none() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "{} (pid {pid}) did not stop within {}s; killing it",
                    self.name,
                    grace.as_secs()
                );
                let _ = kill(pid, Signal::SIGKILL);
                // SIGKILL cannot be ignored; give the kernel a moment to end it.
                let killed = Instant::now();
                while killed.elapsed() < Duration::from_secs(5) {
                    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                    if self.running_pid().is_none() {
                        break;
                    }
                    sleep(Duration::from_millis(100));
                }
                break;
            }
            sleep(Duration::from_millis(200));
        }
        fs::remove_file(self.pid_file()).ok();
        Ok(Some(pid))
    }

    /// Byte length of the log now, so a later tail can show only new lines.
    pub fn log_len(&self) -> u64 {
        fs::metadata(self.log_file()).map(|m| m.len()).unwrap_or(0)
    }

    /// The log from byte `from` on, at most the last `lines` lines of it.
    pub fn log_since(&self, from: u64, lines: usize) -> String {
        let Ok(mut file) = File::open(self.log_file()) else {
            return String::new();
        };
        if file.seek(SeekFrom::Start(from)).is_err() {
            return String::new();
        }
        last_lines(BufReader::new(file), lines)
    }
}

fn last_lines(reader: impl BufRead, lines: usize) -> String {
    let all: Vec<String> = reader.lines().map_while(Result::ok).collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Who listens on `port`, as `ss` tells it (for "port taken" errors).
pub fn port_holder(port: u16) -> String {
    let output = Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            // `users:(("postgres",pid=6818,fd=5),("postgres",pid=6818,fd=6))`
            // -> `postgres (pid 6818)`
            let mut users: Vec<String> = text
                .lines()
                .filter_map(|line| line.split_once("users:"))
                .flat_map(|(_, users)| users.split("(\"").skip(1))
                .filter_map(|user| {
                    let (name, rest) = user.split_once("\",pid=")?;
                    let pid = rest.split([',', ')']).next()?;
                    Some(format!("{name} (pid {pid})"))
                })
                .collect();
            users.dedup();
            if users.is_empty() {
                "an unknown process (ss shows no owner; try `ss -ltnp` as root)".to_owned()
            } else {
                users.join(", ")
            }
        }
        _ => "an unknown process (`ss` is not available)".to_owned(),
    }
}

/// Fails with a clear message when any of `ports` is already taken.
pub fn ensure_ports_free(service: &str, ports: &[u16]) -> Result<()> {
    for &port in ports {
        if port_answers(port) {
            bail!(
                "cannot start {service}: port {port} on 127.0.0.1 is already in use by {}.\n\
                 Stop that process, or run `cargo xtask stack status` to see whether it is \
                 a stack started from another checkout.",
                port_holder(port)
            );
        }
    }
    Ok(())
}

/// Waits until nothing accepts connections on any of `ports` (a stopped
/// service's sockets close when its process has gone); after `timeout` the
/// error names who still holds a port.
pub fn wait_until_ports_free(ports: &[u16], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for &port in ports {
        while port_answers(port) {
            if Instant::now() >= deadline {
                bail!(
                    "port {port} on 127.0.0.1 is still in use by {}",
                    port_holder(port)
                );
            }
            sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Polls `probe` until it succeeds, the process dies, or `timeout` passes.
pub fn wait_until_ready(
    slot: &ProcessSlot,
    log_from: u64,
    timeout: Duration,
    mut probe: impl FnMut() -> std::result::Result<String, String>,
) -> Result<String> {
    let started = Instant::now();
    loop {
        let last_error = match probe() {
            Ok(detail) => return Ok(detail),
            Err(error) => error,
        };
        if slot.running_pid().is_none() {
            bail!(
                "{} exited while starting. Last lines of {}:\n{}",
                slot.name,
                slot.log_file().display(),
                slot.log_since(log_from, 30)
            );
        }
        if started.elapsed() > timeout {
            bail!(
                "{} did not answer within {}s ({last_error}). Last lines of {}:\n{}",
                slot.name,
                timeout.as_secs(),
                slot.log_file().display(),
                slot.log_since(log_from, 30)
            );
        }
        sleep(Duration::from_millis(250));
    }
}
