#!/usr/bin/env python3
"""Patrol against HashiCorp Serf, side by side on this machine, loopback only.

For each N (default 20, 50, 100) it starts N Serf agents and N Patrol
agents, waits until each mesh has converged, measures idle RSS and CPU per
agent, then runs the same inspection RUNS times (default 7) through each:

  serf query patrol                 (a query handler reads one sysctl)
  patrol sweep --checks pid-max     (a sysctl check of kernel.pid_max)

and reports medians of:
  reach    time from the command's start until every node had the request
           (Serf: each handler writes its own arrival time; Patrol: the
           sweep document's per-node reached time)
  answers  time until every answer was in at the caller (Serf: the output
           line of the last response, timestamped as it is printed; Patrol:
           the document's last-answer time)
  wall     wall time of the command a user types

Every process is stopped at the end (also on error or ctrl-c).

  python3 bench/serf_vs_patrol.py [--sizes 20,50,100] [--runs 7] [--out bench/RESULTS.md]

Needs `serf` (Debian package `serf`) and release binaries
(`cargo build --release -p patrol-agent -p patrol-cli`).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
PROCS = []


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_serf_port():
    # Serf binds both TCP and UDP on its port.
    while True:
        p = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    PROCS.append(p)
    return p


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + 5
    for p in PROCS:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    PROCS.clear()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def idle_footprint(pids, seconds):
    hz = os.sysconf("SC_CLK_TCK")
    before = {p: cpu_ticks(p) for p in pids}
    time.sleep(seconds)
    after = {p: cpu_ticks(p) for p in pids}
    cpu = [100.0 * (after[p] - before[p]) / hz / seconds for p in pids]
    rss = [rss_kib(p) / 1024.0 for p in pids]
    return statistics.median(rss), max(rss), statistics.mean(cpu), max(cpu)


# ---------------------------------------------------------------- Serf


def serf_cluster(n, work):
    handler = os.path.join(work, "handler.sh")
    with open(handler, "w") as f:
        f.write(
            "#!/bin/sh\n"
            f'date +%s.%N > "{work}/recv.$SERF_SELF_NAME"\n'
            "cat /proc/sys/kernel/pid_max\n"
        )
    os.chmod(handler, 0o755)
    first = None
    rpcs, pids = [], []
    for i in range(n):
        port, rpc = free_serf_port(), free_port()
        args = [
            "serf", "agent", f"-node=s{i:03}", f"-bind=127.0.0.1:{port}",
            f"-rpc-addr=127.0.0.1:{rpc}", "-log-level=err",
            f"-event-handler=query:patrol={handler}",
        ]
        if first:
            args.append(f"-join=127.0.0.1:{first}")
        else:
            first = port
        p = spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rpcs.append(rpc)
        pids.append(p.pid)
        time.sleep(0.02)
    deadline = time.time() + 120
    while time.time() < deadline:
        out = subprocess.run(["serf", "members", f"-rpc-addr=127.0.0.1:{rpcs[-1]}", "-status=alive"],
                             capture_output=True, text=True)
        alive = len([l for l in out.stdout.splitlines() if l.strip()])
        out0 = subprocess.run(["serf", "members", f"-rpc-addr=127.0.0.1:{rpcs[0]}", "-status=alive"],
                              capture_output=True, text=True)
        alive0 = len([l for l in out0.stdout.splitlines() if l.strip()])
        if alive == n and alive0 == n:
            return rpcs, pids
        time.sleep(0.2)
    raise SystemExit(f"serf: {n} agents did not converge")


def serf_query(n, rpc, work):
    for f in os.listdir(work):
        if f.startswith("recv."):
            os.remove(os.path.join(work, f))
    start = time.time()
    p = subprocess.Popen(["serf", "query", f"-rpc-addr=127.0.0.1:{rpc}", "patrol", ""],
                         stdout=subprocess.PIPE, text=True, bufsize=1)
    responses = 0
    last = None
    for line in p.stdout:
        if line.startswith("Response from"):
            responses += 1
            last = time.time()
    p.wait()
    wall = time.time() - start
    recv = []
    for f in os.listdir(work):
        if f.startswith("recv."):
            with open(os.path.join(work, f)) as fh:
                recv.append(float(fh.read().strip()))
    reach = (max(recv) - start) if len(recv) == n else None
    answers = (last - start) if responses == n else None
    return reach, answers, wall, responses


# -------------------------------------------------------------- Patrol


def patrol_cluster(n, work, converge_timeout=120):
    key = os.path.join(work, "cluster.key")
    subprocess.run([os.path.join(RELEASE, "patrol"), "keys", "generate", "--out", key], check=True,
                   capture_output=True)
    seed = None
    controls, pids = [], []
    for i in range(n):
        cfg = os.path.join(work, f"p{i:03}.toml")
        seeds = f'["{seed}"]' if seed else "[]"
        with open(cfg, "w") as f:
            f.write(
                f'[node]\nname = "p{i:03}"\ncluster = "bench"\nbind = "127.0.0.1:0"\n'
                f'seeds = {seeds}\nkey_file = "{key}"\n\n[control]\nlisten = "127.0.0.1:0"\n\n'
                '[[check]]\nid = "pid-max"\ntype = "sysctl"\nkey = "kernel.pid_max"\n'
                'expect = { min = 1 }\n'
            )
        p = spawn([os.path.join(RELEASE, "patrol-agent"), "--config", cfg],
                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                  env=dict(os.environ, PATROL_LOG="error"))
        ready = p.stdout.readline().split()
        fields = dict(w.split("=", 1) for w in ready if "=" in w)
        seed = seed or fields["gossip"]
        controls.append(fields["control"])
        pids.append(p.pid)
    cfg0 = os.path.join(work, "p000.toml")
    deadline = time.time() + converge_timeout
    while time.time() < deadline:
        ok = True
        for c in (controls[0], controls[-1], controls[n // 2]):
            out = subprocess.run([os.path.join(RELEASE, "patrol"), "members", "--seed", c, "--config", cfg0,
                                  "--format", "json"], capture_output=True, text=True)
            try:
                members = json.loads(out.stdout)
            except ValueError:
                ok = False
                break
            if sum(1 for m in members if m["state"] == "alive") != n:
                ok = False
                break
        if ok:
            return controls, pids, cfg0
        time.sleep(0.2)
    raise SystemExit(f"patrol: {n} agents did not converge")


def patrol_sweep(n, control, cfg):
    start = time.time()
    out = subprocess.run([os.path.join(RELEASE, "patrol"), "sweep", "--seed", control, "--config", cfg,
                          "--checks", "pid-max", "--format", "json", "--deadline", "10s"],
                         capture_output=True, text=True)
    wall = time.time() - start
    doc = json.loads(out.stdout)
    t = doc["timing"]
    answered = doc["counts"]["ok"] + doc["counts"]["failing"]
    reach = t["reached_max_ms"] / 1000.0 if answered == n and t["reached_max_ms"] is not None else None
    answers = t["last_answer_ms"] / 1000.0 if answered == n and t["last_answer_ms"] is not None else None
    return reach, answers, wall, answered


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, unit="s"):
    return "-" if x is None else f"{x:.3f} {unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20,50,100")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of idle measurement")
    ap.add_argument("--out", default=None, help="append a markdown table to this file")
    args = ap.parse_args()
    if not shutil.which("serf"):
        raise SystemExit("serf is not installed: apt-get install serf")
    for b in ("patrol", "patrol-agent"):
        if not os.path.exists(os.path.join(RELEASE, b)):
            raise SystemExit("build first: cargo build --release -p patrol-agent -p patrol-cli")
    rows = []
    try:
        for n in [int(x) for x in args.sizes.split(",")]:
            work = tempfile.mkdtemp(prefix=f"patrol-bench-{n}-")
            print(f"== N = {n}", flush=True)
            rpcs, spids = serf_cluster(n, work)
            controls, ppids, cfg = patrol_cluster(n, work)
            time.sleep(3)
            s_idle = idle_footprint(spids, args.idle)
            p_idle = idle_footprint(ppids, args.idle)
            s_runs, p_runs = [], []
            for r in range(args.runs):
                # Alternate the order, and coordinate from a different node
                # each run.
                s = serf_query(n, rpcs[(r * 7) % n], work)
                p = patrol_sweep(n, controls[(r * 7) % n], cfg)
                s_runs.append(s)
                p_runs.append(p)
                print(f"  run {r}: serf reach {fmt(s[0])} answers {fmt(s[1])} wall {fmt(s[2])} ({s[3]}/{n}) | "
                      f"patrol reach {fmt(p[0])} answers {fmt(p[1])} wall {fmt(p[2])} ({p[3]}/{n})", flush=True)
            row = {
                "n": n,
                "serf": [med([x[i] for x in s_runs]) for i in range(3)] + [min(x[3] for x in s_runs)],
                "patrol": [med([x[i] for x in p_runs]) for i in range(3)] + [min(x[3] for x in p_runs)],
                "serf_idle": s_idle,
                "patrol_idle": p_idle,
            }
            rows.append(row)
            stop_all()
            shutil.rmtree(work, ignore_errors=True)
    finally:
        stop_all()
    lines = [
        f"Medians of {args.runs} runs, measured side by side on {socket.gethostname()} "
        f"({os.cpu_count()} cores), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| N | tool | all reached | all answers in | command wall time | fewest answers | idle RSS median (max) | idle CPU mean (max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for tool in ("serf", "patrol"):
            reach, answers, wall, fewest = r[tool]
            rss_med, rss_max, cpu_mean, cpu_max = r[f"{tool}_idle"]
            lines.append(
                f"| {r['n']} | {tool} | {fmt(reach)} | {fmt(answers)} | {fmt(wall)} | {fewest}/{r['n']} | "
                f"{rss_med:.1f} MiB ({rss_max:.1f}) | {cpu_mean:.2f}% ({cpu_max:.2f}%) |"
            )
        s, p = r["serf"], r["patrol"]
        if s[1] and p[1]:
            lines.append(f"|   | ratio patrol/serf | {p[0] / s[0]:.2f} | {p[1] / s[1]:.2f} | {p[2] / s[2]:.2f} | | | |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
