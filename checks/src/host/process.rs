//! Running a child process with a timeout and an output limit. The child
//! gets its own process group, and the whole group is killed when the
//! timeout runs out, the output floods, or the caller drops the future.

use std::process::Stdio;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{CommandError, CommandOutput, CommandRequest};

/// Kills the child's process group unless disarmed.
struct GroupKill(Option<Pid>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

async fn read_limited<R: AsyncRead + Unpin>(
    mut r: R,
    limit: usize,
    program: &str,
) -> Result<Vec<u8>, CommandError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = r.read(&mut chunk).await.map_err(|e| CommandError::Io {
            program: program.to_string(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            return Ok(buf);
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

/// Run `path` (the resolved program) as `req` says.
pub(super) async fn run(path: String, req: CommandRequest) -> Result<CommandOutput, CommandError> {
    let program = req.program.clone();
    let mut cmd = Command::new(&path);
    cmd.args(&req.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CommandError::NotFound(program.clone()),
        _ => CommandError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        },
    })?;
    let mut guard = GroupKill(child.id().and_then(|id| Pid::from_raw(id as i32)));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let out = async {
            match stdout {
                Some(s) => read_limited(s, req.max_output, &program).await,
                None => Ok(Vec::new()),
            }
        };
        let err = async {
            match stderr {
                Some(s) => read_limited(s, req.max_output, &program).await,
                None => Ok(Vec::new()),
            }
        };
        let (out, err) = tokio::try_join!(out, err)?;
        let status = child.wait().await.map_err(|e| CommandError::Io {
            program: program.clone(),
            reason: e.to_string(),
        })?;
        Ok::<_, CommandError>(CommandOutput {
            exit_code: status.code(),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    };
    let result = match tokio::time::timeout(req.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(CommandError::TimedOut {
            program: program.clone(),
            secs: req.timeout.as_secs_f64(),
        }),
    };
    if result.is_ok() {
        // The leader exited and was reaped: its pid may be reused.
        guard.0 = None;
    }
    result
}
