//! Blocking host calls are capped per check kind: a `statvfs` on a hung
//! NFS mount never returns, and each sweep used to leave one more thread
//! of the blocking pool stuck on it. A fixture host whose `fs_usage`
//! blocks until a gate opens stands in for the hung mount.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use patrol_checks::host::{
    BoxFuture, CommandError, CommandOutput, CommandRequest, FileStat, FsUsage, HttpError,
    HttpRequest, HttpResponse,
};
use patrol_checks::{FixtureHost, Host, Runner, Status};
use support::{specs, Fixture};

/// A gate `fs_usage` waits at, counting the calls inside it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    inside: AtomicUsize,
    most_inside: AtomicUsize,
    calls: AtomicUsize,
}

impl Gate {
    fn pass(&self, slow: Duration) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_inside.fetch_max(now, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        drop(open);
        std::thread::sleep(slow);
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Opens the gate when the test ends, even when it fails, so that the
/// runtime's blocking threads can finish and the test process can exit.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// A fixture machine whose `fs_usage` hangs until the gate opens, and
/// then takes `slow` more.
struct HungMount {
    inner: FixtureHost,
    gate: Arc<Gate>,
    slow: Duration,
}

impl Host for HungMount {
    fn read_file(&self, path: &str, limit: usize) -> std::io::Result<String> {
        self.inner.read_file(path, limit)
    }
    fn list_dir(&self, path: &str) -> std::io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn fs_usage(&self, mount: &str) -> std::io::Result<FsUsage> {
        self.gate.pass(self.slow);
        self.inner.fs_usage(mount)
    }
    fn kernel_log(&self) -> std::io::Result<String> {
        self.inner.kernel_log()
    }
    fn run_command(&self, req: CommandRequest) -> BoxFuture<Result<CommandOutput, CommandError>> {
        self.inner.run_command(req)
    }
    fn http_get(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
        self.inner.http_get(req)
    }
    fn stat(&self, path: &str, follow: bool) -> std::io::Result<FileStat> {
        self.inner.stat(path, follow)
    }
    fn read_bytes(&self, path: &str, limit: usize) -> std::io::Result<Vec<u8>> {
        self.inner.read_bytes(path, limit)
    }
    fn resolve(&self, name: &str) -> std::io::Result<Vec<std::net::IpAddr>> {
        self.inner.resolve(name)
    }
    fn tcp_connect(&self, addr: &str, timeout: Duration) -> std::io::Result<Duration> {
        self.inner.tcp_connect(addr, timeout)
    }
}

fn nfs_fixture() -> Fixture {
    let f = Fixture::new();
    f.file(
        "/proc/self/mounts",
        "/dev/sda1 / ext4 rw 0 0\nfiler:/export /mnt/shared nfs4 rw 0 0\n",
    )
    .file(
        "/fs_usage",
        "/ 1000 500 450 100 90\n/mnt/shared 1000 500 500 100 90\n",
    );
    f
}

fn disk_check(timeout: &str) -> String {
    format!(
        "[[check]]\nid = \"shared\"\ntype = \"disk\"\nmounts = [\"/mnt/shared\"]\nexpect = {{ max = 90 }}\ntimeout = \"{timeout}\"\n"
    )
}

const CAP: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_mount_holds_at_most_the_cap_of_threads_and_later_runs_fail_at_once() {
    let f = nfs_fixture();
    let gate = Arc::new(Gate::default());
    let _open_at_the_end = OpenOnDrop(Arc::clone(&gate));
    let host = HungMount {
        inner: f.host(),
        gate: Arc::clone(&gate),
        slow: Duration::ZERO,
    };
    let runner = Runner::new(Arc::new(host), 8);

    // Nightly sweeps, one after the other: each disk call hangs and its
    // check is cut off at the timeout.
    let short = specs(&disk_check("150ms"));
    for sweep in 0..CAP {
        let out = runner.run(&short).await;
        assert_eq!(out[0].status, Status::Error, "sweep {sweep}: {:?}", out[0]);
        assert!(
            out[0]
                .message
                .contains("no result within the 150ms timeout"),
            "sweep {sweep}: {:?}",
            out[0]
        );
    }
    // Every slot is now held by a call nobody waits for any more: a later
    // run does not start another thread and does not wait for its long
    // timeout either.
    assert_eq!(runner.blocking_calls().blocked("disk"), CAP);
    let long = specs(&disk_check("60s"));
    for sweep in 0..6 {
        let started = Instant::now();
        let out = runner.run(&long).await;
        assert_eq!(out[0].status, Status::Error, "{:?}", out[0]);
        assert_eq!(
            out[0].message,
            "4 earlier disk calls are still blocked; not starting another"
        );
        // Not a timing target: proof that the 60 s timeout did not run.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sweep {sweep} took {:?}",
            started.elapsed()
        );
    }
    // A burst of disk checks in one sweep does not get past the cap either.
    let burst: Vec<_> = (0..10)
        .map(|i| disk_check("300ms").replace("\"shared\"", &format!("\"shared-{i}\"")))
        .collect();
    let out = runner.run(&specs(&burst.join("\n"))).await;
    assert!(out.iter().all(|o| o.status == Status::Error), "{out:#?}");
    assert_eq!(gate.calls.load(Ordering::SeqCst), CAP, "calls started");
    assert_eq!(
        gate.most_inside.load(Ordering::SeqCst),
        CAP,
        "most in flight"
    );

    // The mount comes back: the hung calls return and free their slots.
    gate.open();
    let freed = Instant::now();
    loop {
        let out = runner.run(&long).await;
        if out[0].status == Status::Pass {
            assert_eq!(out[0].message, "space used %: /mnt/shared=50");
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "slots still taken after the mount came back: {:?}",
            out[0]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every hung call returns and gives its slot back (the pass above
    // needed only one of them).
    while runner.blocking_calls().blocked("disk") > 0 || gate.inside.load(Ordering::SeqCst) > 0 {
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "{} disk calls still blocked after the mount came back",
            runner.blocking_calls().blocked("disk")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gate.calls.load(Ordering::SeqCst), CAP + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_healthy_disk_checks_waits_for_slots_instead_of_failing() {
    let f = nfs_fixture();
    let gate = Arc::new(Gate::default());
    gate.open();
    let host = HungMount {
        inner: f.host(),
        gate: Arc::clone(&gate),
        // Long enough that the twelve calls overlap.
        slow: Duration::from_millis(50),
    };
    let checks: Vec<_> = (0..12)
        .map(|i| disk_check("30s").replace("\"shared\"", &format!("\"shared-{i}\"")))
        .collect();
    let out = Runner::new(Arc::new(host), 12)
        .run(&specs(&checks.join("\n")))
        .await;
    assert!(out.iter().all(|o| o.status == Status::Pass), "{out:#?}");
    assert_eq!(gate.calls.load(Ordering::SeqCst), 12);
    let most = gate.most_inside.load(Ordering::SeqCst);
    assert!(most <= CAP, "{most} calls in flight at once");
}
