//! Running a check's program, hardened, with a timeout and an output
//! limit.
//!
//! - **Environment.** Cleared: the program gets exactly `PATH` =
//!   [`COMMAND_PATH`], `LANG=C`, `LC_ALL=C` and `HOME` (the home directory
//!   of the user it runs as, or `/` when it runs as the agent's own user),
//!   nothing of the agent's environment, and starts in `/`. A bare program
//!   name is looked up in that `PATH`.
//! - **Process group.** The program leads a process group of its own, and
//!   the whole group is killed with SIGKILL whenever the program ends: it
//!   exits, it runs past its timeout, its output floods, or the caller
//!   drops the future. Nothing it started in the background outlives the
//!   check, and a background child that still holds stdout open does not
//!   hold up the result: the program's own exit decides, then the group is
//!   killed and the rest of the output read. The group is always killed
//!   before the leader is reaped, while its pid (the group's id) cannot
//!   have been reused. A child that left the group (`setsid`, a double
//!   fork) is found by the run's marker in its environment and killed too
//!   ([`super::stray`], which says what can still escape).
//! - **Capabilities.** The ambient capability set of the thread that
//!   starts the program is cleared first, so a program never inherits
//!   the capabilities an agent was given as ambient ones (systemd's
//!   `AmbientCapabilities=` for a non-root agent); the agent keeps its own
//!   permitted and effective sets. `no_new_privs` is not set: a check may
//!   rightly run a set-uid program (`sudo -n`, `ping` on old systems).
//! - **User.** With a user ([`Account`], `[checks] command_user`) other
//!   than the agent's, the program runs through coreutils `chroot
//!   --userspec=+UID:+GID --groups=+G1,+G2,... ROOT PROGRAM ARGS...`, with
//!   ROOT `/` on the live machine (chroot then does not change root) and
//!   `[node] host_root` in a container. `chroot` changes root first and
//!   then sets the supplementary groups, the group and the user, the order
//!   `host_root` needs: the user could not chroot. The standard library
//!   has no stable way to set supplementary groups (`CommandExt::groups`
//!   is unstable; its `uid` drops them all) and `pre_exec` is unsafe code,
//!   which the workspace forbids; `+` makes `chroot` take the ids as
//!   numbers, without looking names up. Only root can switch users: an
//!   agent running as another user refuses to start such a command.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::stray::{RunMarker, MARKER_VAR};
use super::{Account, CommandError, CommandOutput, CommandRequest};

/// The `PATH` every command gets.
pub const COMMAND_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The coreutils program that runs commands under `host_root` or as
/// another user.
pub const CHROOT: &str = "chroot";

/// Longest pause between two looks at whether the program exited when no
/// SIGCHLD says so (signals of several children can merge into one).
const EXIT_POLL_MAX: Duration = Duration::from_millis(50);

/// Kills the child's process group, and the processes of the run that
/// left it, unless disarmed.
struct GroupKill(Option<Pid>, RunMarker);

impl GroupKill {
    /// Kill the group and the strays now, and not again on drop.
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // ESRCH: the group is gone already.
            let _ = kill_process_group(pid, Signal::KILL);
            self.1.kill_all();
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why `account` cannot be switched to by an agent running as `euid`, if
/// it cannot.
pub(crate) fn switch_refused(account: &Account, euid: u32) -> Option<String> {
    (euid != 0 && account.uid != euid).then(|| {
        format!(
            "cannot run as user `{}` (uid {}): only root can switch users and the agent runs as uid {euid} (run the agent as root, or remove [checks] command_user and the check's `user`)",
            account.name, account.uid
        )
    })
}

/// Run `path` (the resolved program) as `req` says; `root` is `[node]
/// host_root` when the program is to run chrooted into it.
pub(super) async fn run(
    path: String,
    root: Option<PathBuf>,
    req: CommandRequest,
) -> Result<CommandOutput, CommandError> {
    let program = req.program.clone();
    let euid = rustix::process::geteuid().as_raw();
    let switch = req.run_as.as_ref().filter(|a| a.uid != euid);
    if let Some(reason) = switch.and_then(|a| switch_refused(a, euid)) {
        return Err(CommandError::Spawn { program, reason });
    }
    let through_chroot = root.is_some() || switch.is_some();
    let mut cmd = if through_chroot {
        let mut c = Command::new(CHROOT);
        if let Some(a) = switch {
            let groups: Vec<String> = a.groups.iter().map(|g| format!("+{g}")).collect();
            c.arg(format!("--userspec=+{}:+{}", a.uid, a.gid))
                .arg(format!("--groups={}", groups.join(",")));
        }
        c.arg(root.as_deref().unwrap_or(Path::new("/")))
            .arg(&path)
            .args(&req.args);
        c
    } else {
        let mut c = Command::new(&path);
        c.args(&req.args);
        c
    };
    let home = req.run_as.as_ref().map_or("/", |a| a.home.as_str());
    let marker = RunMarker::new();
    cmd.env_clear()
        .env(MARKER_VAR, marker.value())
        .env("PATH", COMMAND_PATH)
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("HOME", home)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let out = supervise(cmd, &req, marker).await;
    if !through_chroot {
        return out;
    }
    match out {
        Err(CommandError::NotFound(_)) => Err(CommandError::Spawn {
            program,
            reason: format!(
                "`{CHROOT}` is not installed (coreutils), needed to run commands under host_root or as another user"
            ),
        }),
        // chroot's own failures: 125 it could not chroot or switch user,
        // 126 the program cannot run, 127 it does not exist.
        Ok(o) if o.stderr.starts_with("chroot:") && o.exit_code == Some(127) => {
            Err(CommandError::NotFound(program))
        }
        Ok(o) if o.stderr.starts_with("chroot:") && matches!(o.exit_code, Some(125 | 126)) => {
            Err(CommandError::Spawn {
                program,
                reason: o.stderr.trim().to_string(),
            })
        }
        other => other,
    }
}

/// Start `cmd` and see it through: read its output, wait for it within
/// the timeout, and kill its process group whatever happens.
async fn supervise(
    mut cmd: Command,
    req: &CommandRequest,
    marker: RunMarker,
) -> Result<CommandOutput, CommandError> {
    let program = req.program.as_str();
    let io_error = |e: std::io::Error| CommandError::Io {
        program: program.to_string(),
        reason: e.to_string(),
    };
    let deadline = tokio::time::Instant::now() + req.timeout;
    // Ambient capabilities are per thread, and the child is forked from
    // this one. EINVAL: a kernel without ambient capabilities (before
    // 4.3), which has none to pass on.
    let _ = rustix::thread::clear_ambient_capability_set();
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CommandError::NotFound(program.to_string()),
        _ => CommandError::Spawn {
            program: program.to_string(),
            reason: e.to_string(),
        },
    })?;
    let Some(pid) = child.id().and_then(|id| Pid::from_raw(id as i32)) else {
        return Err(CommandError::Io {
            program: program.to_string(),
            reason: "the started process has no id".into(),
        });
    };
    let mut group = GroupKill(Some(pid), marker);
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ended = {
        let reading = async {
            tokio::try_join!(
                read_into(stdout, &mut out, req.max_output, program),
                read_into(stderr, &mut err, req.max_output, program),
            )
            .map(|_| ())
        };
        tokio::pin!(reading);
        let exited = leader_exit(pid);
        tokio::pin!(exited);
        let first = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                read = &mut reading => {
                    // Both pipes closed: the program may still run.
                    read?;
                    (&mut exited).await.map_err(io_error)
                }
                exit = &mut exited => {
                    exit.map_err(io_error)?;
                    // The program is gone: end its group, whose members
                    // may hold the pipes open, then read what is left.
                    group.kill();
                    match tokio::time::timeout_at(deadline, &mut reading).await {
                        Ok(read) => read,
                        // A member stuck in the kernel survives SIGKILL
                        // for a while and keeps a pipe open: the program's
                        // own output is read by now.
                        Err(_) => Ok(()),
                    }
                }
            }
        })
        .await;
        match first {
            Ok(r) => r,
            Err(_) => Err(CommandError::TimedOut {
                program: program.to_string(),
                secs: req.timeout.as_secs_f64(),
            }),
        }
    };
    // Always, and before the leader is reaped (its pid is the group's id).
    group.kill();
    ended?;
    // The leader has exited: this only reaps it.
    let status = child.wait().await.map_err(io_error)?;
    Ok(CommandOutput {
        exit_code: status.code(),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// Read `r` to its end into `buf`; more than `limit` bytes is a flood.
async fn read_into<R: AsyncRead + Unpin>(
    r: Option<R>,
    buf: &mut Vec<u8>,
    limit: usize,
    program: &str,
) -> Result<(), CommandError> {
    let Some(mut r) = r else {
        return Ok(());
    };
    let mut chunk = [0u8; 8192];
    loop {
        let n = r.read(&mut chunk).await.map_err(|e| CommandError::Io {
            program: program.to_string(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            return Ok(());
        }
        if buf.len() + n > limit {
            return Err(CommandError::OutputFlood {
                program: program.to_string(),
                limit,
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Resolves when the child `pid` has exited, without reaping it (it stays
/// a zombie, so its pid is not reused until `Child::wait`): looks with
/// `waitid(WNOWAIT)` at every SIGCHLD, and at least every
/// [`EXIT_POLL_MAX`] in case a signal is missed. (A pidfd would say it
/// without signals, but tokio can watch one only through `unsafe`
/// registration, which the workspace forbids.)
async fn leader_exit(pid: Pid) -> std::io::Result<()> {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    use tokio::signal::unix::{signal, SignalKind};
    // Listening before the first look: an exit between the look and the
    // wait still wakes it.
    let mut sigchld = signal(SignalKind::child()).ok();
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    let mut pause = Duration::from_millis(1);
    loop {
        if waitid(WaitId::Pid(pid), options)?.is_some() {
            return Ok(());
        }
        match &mut sigchld {
            Some(chld) => {
                tokio::select! {
                    _ = chld.recv() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
            None => tokio::time::sleep(pause).await,
        }
        pause = (pause * 2).min(EXIT_POLL_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exit_is_seen_and_the_child_is_left_to_reap() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 0.1"])
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id().unwrap() as i32).unwrap();
        tokio::time::timeout(Duration::from_secs(20), leader_exit(pid))
            .await
            .expect("the exit was seen")
            .unwrap();
        // Not reaped by the look: the exit status is still there.
        assert_eq!(child.wait().await.unwrap().code(), Some(0));
    }

    #[test]
    fn only_root_may_switch_users() {
        let nobody = Account {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
            home: "/nonexistent".into(),
        };
        assert_eq!(switch_refused(&nobody, 0), None);
        // Already that user: nothing to switch.
        assert_eq!(switch_refused(&nobody, 65534), None);
        assert_eq!(
            switch_refused(&nobody, 1000).as_deref(),
            Some("cannot run as user `nobody` (uid 65534): only root can switch users and the agent runs as uid 1000 (run the agent as root, or remove [checks] command_user and the check's `user`)")
        );
    }
}
