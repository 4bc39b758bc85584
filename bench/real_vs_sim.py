#!/usr/bin/env python3
"""Real agents against the simulator (issue 25): the same sweep over N real
patrol-agent processes on loopback and over N simulated nodes in
`patrol-sim`, printed side by side.

For each N (default 200 and 500) it starts N release agents on 127.0.0.1
(ephemeral ports, one seed, the `pid-max` sysctl check; the cluster set-up
is `serf_vs_patrol.patrol_cluster`), waits until every agent lists N alive
members, and runs RUNS sweeps from one agent with

  patrol sweep --checks pid-max --format json --deadline DEADLINE

taking from each sweep's document the request's reach (p50 / p99 / max),
the last answer, the completion time and the counts, and from /proc:

  coordinator CPU  the coordinating agent's CPU over the sweep command:
                   the sum over its threads of /proc/PID/task/TID/schedstat
                   (time on a CPU, ns), read just before and just after
                   the command (a thread that exits in between is missed;
                   the agent's threads are its 2 tokio workers, the main
                   thread and blocking threads, which live on for 10 s).
                   Its utime+stime in clock ticks is printed as a check.
  all agents CPU   the same sum over every agent's threads (the machine's
                   whole sweep cost), less what the agents use idle over the
                   same time (measured over 5 s before the sweeps); their
                   context switches; and the run queue (`procs_running` in
                   /proc/stat, every process on the machine) sampled every
                   ms during the command.

Then, with the agents stopped, it runs `patrol-sim` with the same N and
sweep settings (the shipped defaults in both; the same deadline; every
node holds every member, `--view N`), a loopback-like network (0.02-0.05 ms
one way, no loss), checks of 0-1 ms and a one-check answer
(`--result-bytes 100`), for RUNS seeds, with `--cpu model` and
`--cpu measured`, and prints medians (min-max) side by side.

  cargo build --release -p patrol-agent -p patrol-cli -p patrol-tests --bins
  python3 bench/real_vs_sim.py [--nodes 200,500] [--runs 5] [--deadline-ms 5000]

Every agent is stopped and every temporary directory removed at the end,
also on error or ctrl-c.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import serf_vs_patrol as b

PATROL = os.path.join(b.RELEASE, "patrol")
SIM = os.path.join(b.RELEASE, "patrol-sim")


# ------------------------------------------------------------ measuring


def thread_cpu_ns(pid):
    """Time on a CPU of every live thread of `pid`, ns (schedstat)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread exited meanwhile
    return total


class RunQueue:
    """Samples `procs_running` from /proc/stat every millisecond until stopped."""

    def __init__(self):
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            with open("/proc/stat") as f:
                for line in f:
                    if line.startswith("procs_running"):
                        self.samples.append(int(line.split()[1]))
                        break
            time.sleep(0.001)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()


def context_switches(pid):
    """Voluntary and involuntary context switches of every live thread of `pid`."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass  # the thread exited meanwhile
    return total


def members_alive(control, cfg):
    out = subprocess.run([PATROL, "members", "--seed", control, "--config", cfg, "--format", "json"],
                         capture_output=True, text=True)
    try:
        return sum(1 for m in json.loads(out.stdout) if m["state"] == "alive")
    except ValueError:
        return -1


def wait_every_agent_sees_all(controls, cfg, n, timeout):
    pending = set(controls)
    deadline = time.time() + timeout
    while pending:
        if time.time() > deadline:
            some = ", ".join(f"{c}: {members_alive(c, cfg)}" for c in sorted(pending)[:5])
            raise SystemExit(f"real: {len(pending)} of {n} agents did not list {n} alive members within "
                             f"{timeout:.0f} s (control address: alive seen, first five: {some})")
        for c in list(pending):
            if members_alive(c, cfg) == n:
                pending.discard(c)
        time.sleep(0.2)


# ------------------------------------------------------------ real agents


def real_sweep(n, control, cfg, coord_pid, pids, deadline_ms):
    hz = os.sysconf("SC_CLK_TCK")
    all_before = sum(thread_cpu_ns(p) for p in pids)
    switches = sum(context_switches(p) for p in pids)
    c_ticks, c_ns = b.cpu_ticks(coord_pid), thread_cpu_ns(coord_pid)
    start = time.time()
    with RunQueue() as rq:
        out = subprocess.run([PATROL, "sweep", "--seed", control, "--config", cfg, "--checks", "pid-max",
                              "--format", "json", "--deadline", f"{deadline_ms}ms"],
                             capture_output=True, text=True)
    wall = time.time() - start
    c_ns, c_ticks = thread_cpu_ns(coord_pid) - c_ns, b.cpu_ticks(coord_pid) - c_ticks
    all_ns = sum(thread_cpu_ns(p) for p in pids) - all_before
    switches = sum(context_switches(p) for p in pids) - switches
    try:
        doc = json.loads(out.stdout)
    except ValueError:
        raise SystemExit(f"real: `patrol sweep` gave no document (exit {out.returncode}): {out.stderr.strip()}")
    t, c = doc["timing"], doc["counts"]
    checks_ms = [e["checks_ms"] for e in doc["nodes"] if e.get("checks_ms") is not None]
    return {
        "reach_p50": t.get("reached_p50_ms"),
        "reach_p99": t.get("reached_p99_ms"),
        "reach_max": t.get("reached_max_ms"),
        "last_answer": t.get("last_answer_ms"),
        "completed": t.get("completed_ms"),
        "answered": c["ok"] + c["failing"],
        "accounted": c["ok"] + c["failing"] + c["down"],
        "expected": c["expected"],
        "no_answer": c["no_answer"],
        "coord_cpu": c_ns / 1e6,
        "coord_cpu_ticks": 1000.0 * c_ticks / hz,
        "all_cpu": all_ns / 1e6,
        "wall": wall * 1000.0,
        "switches": switches,
        "runq_max": max(rq.samples, default=0),
        "runq_mean": statistics.mean(rq.samples) if rq.samples else 0.0,
        "checks_ms_median": statistics.median(checks_ms) if checks_ms else None,
        "checks_ms_max": max(checks_ms, default=None),
    }


def run_real(n, runs, deadline_ms, converge_timeout):
    work = tempfile.mkdtemp(prefix=f"patrol-real-{n}-")
    try:
        t0 = time.time()
        controls, pids, cfg = b.patrol_cluster(n, work, converge_timeout)
        wait_every_agent_sees_all(controls, cfg, n, converge_timeout)
        print(f"  real: {n} agents, every one lists {n} alive after {time.time() - t0:.1f} s", flush=True)
        time.sleep(3)
        # The mesh's own CPU with no sweep, to tell the sweep's cost from SWIM's.
        idle_window = 5.0
        before = sum(thread_cpu_ns(p) for p in pids)
        time.sleep(idle_window)
        idle_rate = (sum(thread_cpu_ns(p) for p in pids) - before) / 1e6 / (idle_window * 1000.0)
        print(f"  real: idle, all agents together use {100 * idle_rate:.1f}% of a core "
              f"({100 * idle_rate / n:.3f}% each)", flush=True)
        idx = n // 2  # not the seed, which every agent joined through
        results = []
        for r in range(runs):
            res = real_sweep(n, controls[idx], cfg, pids[idx], pids, deadline_ms)
            res["all_cpu_less_idle"] = res["all_cpu"] - idle_rate * res["wall"]
            results.append(res)
            print(f"  real run {r}: reach p50 {res['reach_p50']} p99 {res['reach_p99']} max {res['reach_max']} ms, "
                  f"last answer {res['last_answer']} ms, completed {res['completed']} ms, "
                  f"{res['answered']}/{res['expected']} answered ({res['no_answer']} no_answer); "
                  f"coordinator CPU {res['coord_cpu']:.1f} ms ({res['coord_cpu_ticks']:.0f} ms in ticks), "
                  f"all agents {res['all_cpu']:.0f} ms over {res['wall']:.0f} ms of command "
                  f"(idle they would use {idle_rate * res['wall']:.0f} ms), {res['switches']} context switches; "
                  f"run queue max {res['runq_max']} mean {res['runq_mean']:.1f}; "
                  f"checks took {res['checks_ms_median']} ms median, {res['checks_ms_max']} ms max", flush=True)
            time.sleep(1)
        return results
    finally:
        b.stop_all()
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------ simulator


def sim_args(n, runs, deadline_ms, cpu):
    return [SIM, "--nodes", str(n), "--view", str(n), "--runs", str(runs), "--seed", "1", "--cpu", cpu,
            "--latency-min-ms", "0.02", "--latency-max-ms", "0.05", "--loss", "0",
            "--check-min-ms", "0", "--check-max-ms", "1", "--failing", "0", "--result-bytes", "100",
            "--deadline-ms", str(deadline_ms), "--json"]


def run_sim(n, runs, deadline_ms, cpu):
    args = sim_args(n, runs, deadline_ms, cpu)
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode not in (0, 2):  # 2: a run's accounting check failed, still reported
        raise SystemExit(f"sim: {' '.join(args)} failed (exit {out.returncode}): {out.stderr.strip()}")
    dec, text, pos, results = json.JSONDecoder(), out.stdout, 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        rep, pos = dec.raw_decode(text, pos)
        s, st = rep["settings"], rep["states"]
        results.append({
            "reach_p50": rep["reach"]["p50_ms"],
            "reach_p99": rep["reach"]["p99_ms"],
            "reach_max": rep["reach"]["p100_ms"],
            "last_answer": rep["completion"]["last_answer_ms"],
            "completed": rep["completion"]["completed_ms"],
            "answered": st["ok"] + st["failing"],
            "accounted": st["ok"] + st["failing"] + st["down"],
            "expected": st["expected"],
            "no_answer": st["no_answer"],
            "coord_cpu": rep["cpu"]["coordinator_ms"],
            "all_cpu": rep["cpu"]["coordinator_ms"] + (n - 1) * rep["cpu"]["node_mean_us"] / 1000.0,
            "busy": rep["cpu"]["coordinator_busy_share"],
            "accounting_ok": rep["accounting"]["ok"],
            "foca": (s["max_transmissions"], s["fanout"], s["gossip_every_ms"]),
        })
    if len(results) != runs:
        raise SystemExit(f"sim: expected {runs} reports, got {len(results)}")
    r0 = results[0]
    busy = ", ".join(f"{100 * r['busy']:.0f}%" for r in results)
    print(f"  sim --cpu {cpu}: {runs} seeds; foca max_transmissions {r0['foca'][0]}, fan-out {r0['foca'][1]}, "
          f"gossip every {r0['foca'][2]} ms; accounting ok in {sum(r['accounting_ok'] for r in results)}/{runs}; "
          f"coordinator busy {busy}", flush=True)
    return results


# ------------------------------------------------------------ table


def spread(results, key, digits=1):
    xs = [r[key] for r in results if r.get(key) is not None]
    if not xs:
        return "-"
    if len(xs) < len(results):
        note = f" ({len(results) - len(xs)} missing)"
    else:
        note = ""
    med, lo, hi = statistics.median(xs), min(xs), max(xs)
    f = f"{{:.{digits}f}}"
    return f"{f.format(med)} ({f.format(lo)}-{f.format(hi)}){note}"


def table(rows, runs):
    lines = [
        f"Median (min-max) of {runs} sweeps (real) or seeds (simulator), ms.",
        "",
        "| N | run | reach p50 | reach p99 | reach max | last answer | completed | answered / expected "
        "| coordinator CPU | all nodes' CPU (real: less idle) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, label, results in rows:
        all_key = "all_cpu_less_idle" if "all_cpu_less_idle" in results[0] else "all_cpu"
        answered = f"{min(r['answered'] for r in results)}-{max(r['answered'] for r in results)} / {n}"
        lines.append(
            f"| {n} | {label} | {spread(results, 'reach_p50')} | {spread(results, 'reach_p99')} | "
            f"{spread(results, 'reach_max')} | {spread(results, 'last_answer')} | {spread(results, 'completed')} | "
            f"{answered} | {spread(results, 'coord_cpu')} | {spread(results, all_key, 0)} |"
        )
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="200,500", help="mesh sizes, comma-separated")
    ap.add_argument("--runs", type=int, default=5, help="sweeps (real) and seeds (simulator) per size")
    ap.add_argument("--deadline-ms", type=int, default=5000, help="the sweep deadline, real and simulated")
    ap.add_argument("--converge-timeout", type=float, default=300.0,
                    help="seconds to wait for every agent to list every member")
    ap.add_argument("--no-measured", action="store_true", help="skip the simulator's --cpu measured runs")
    args = ap.parse_args()
    for path, how in ((PATROL, "-p patrol-cli"), (os.path.join(b.RELEASE, "patrol-agent"), "-p patrol-agent"),
                      (SIM, "-p patrol-tests --bins")):
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: cargo build --release {how}")
    rows = []
    try:
        for n in [int(x) for x in args.nodes.split(",")]:
            print(f"== N = {n} (load {os.getloadavg()[0]:.2f})", flush=True)
            rows.append((n, "real agents", run_real(n, args.runs, args.deadline_ms, args.converge_timeout)))
            print(f"  (load before the simulator {os.getloadavg()[0]:.2f})", flush=True)
            rows.append((n, "sim, --cpu model", run_sim(n, args.runs, args.deadline_ms, "model")))
            if not args.no_measured:
                rows.append((n, "sim, --cpu measured", run_sim(n, args.runs, args.deadline_ms, "measured")))
    finally:
        b.stop_all()
    print()
    print(table(rows, args.runs))
    print("simulator: " + " ".join(os.path.basename(a) if i == 0 else a
                                    for i, a in enumerate(sim_args("N", args.runs, args.deadline_ms, "model|measured"))))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: every agent was stopped and its directory removed")
