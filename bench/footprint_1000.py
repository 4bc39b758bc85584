#!/usr/bin/env python3
"""Footprint of one real patrol-agent process in a 1,000-member mesh on
loopback: the other 999 members are real agents (real UDP sockets, the
same agent code) run in-process by the `mesh_load` example. Measures the
real agent's RSS and CPU while idle, and during sweeps it coordinates.
Every process is stopped at the end.

  cargo build --release -p patrol-agent -p patrol-cli -p patrol-tests --examples --bins
  python3 bench/footprint_1000.py [--members 1000] [--idle 30]
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

import serf_vs_patrol as b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--sweeps", type=int, default=5)
    args = ap.parse_args()
    n = args.members
    load_bin = os.path.join(b.RELEASE, "examples", "mesh_load")
    if not os.path.exists(load_bin):
        raise SystemExit("build first: cargo build --release -p patrol-tests --examples")
    work = tempfile.mkdtemp(prefix="patrol-1000-")
    key = os.path.join(work, "cluster.key")
    patrol = os.path.join(b.RELEASE, "patrol")
    subprocess.run([patrol, "keys", "generate", "--out", key], check=True, capture_output=True)
    cfg = os.path.join(work, "real.toml")
    with open(cfg, "w") as f:
        f.write(f'[node]\nname = "real"\ncluster = "big"\nbind = "127.0.0.1:0"\nkey_file = "{key}"\n\n'
                '[control]\nlisten = "127.0.0.1:0"\n\n'
                '[[check]]\nid = "pid-max"\ntype = "sysctl"\nkey = "kernel.pid_max"\nexpect = { min = 1 }\n')
    try:
        real = b.spawn([os.path.join(b.RELEASE, "patrol-agent"), "--config", cfg], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, PATROL_LOG="error"))
        fields = dict(w.split("=", 1) for w in real.stdout.readline().split() if "=" in w)
        hold = 120 + args.idle + 30 * args.sweeps
        b.spawn([load_bin, fields["gossip"], key, "big", str(n - 1), str(int(hold))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.time()
        alive = 0
        while time.time() - start < 120:
            out = subprocess.run([patrol, "members", "--seed", fields["control"], "--config", cfg, "--format",
                                  "json"], capture_output=True, text=True)
            try:
                alive = sum(1 for m in json.loads(out.stdout) if m["state"] == "alive")
            except ValueError:
                alive = 0
            if alive == n:
                break
            time.sleep(1)
        print(f"real agent lists {alive}/{n} alive after {time.time() - start:.1f} s")
        time.sleep(5)
        rss, _, cpu, _ = b.idle_footprint([real.pid], args.idle)
        print(f"idle in a {n}-member mesh over {args.idle:.0f} s: RSS {rss:.1f} MiB, CPU {cpu:.2f}% of a core")
        hz = os.sysconf("SC_CLK_TCK")
        for i in range(args.sweeps):
            t0, c0 = time.time(), b.cpu_ticks(real.pid)
            out = subprocess.run([patrol, "sweep", "--seed", fields["control"], "--config", cfg, "--format", "json",
                                  "--deadline", "10s"], capture_output=True, text=True)
            dt, dc = time.time() - t0, b.cpu_ticks(real.pid) - c0
            doc = json.loads(out.stdout)
            c, t = doc["counts"], doc["timing"]
            print(f"sweep {i}: {c['ok']}/{c['expected']} ok, {c['no_answer']} no answer, {c['down']} down; "
                  f"reached all {t['reached_max_ms']} ms, last answer {t['last_answer_ms']} ms, "
                  f"command {dt:.2f} s; coordinator CPU {100.0 * dc / hz / dt:.1f}% of a core over the command, "
                  f"RSS after {b.rss_kib(real.pid) / 1024:.1f} MiB")
            time.sleep(2)
    finally:
        b.stop_all()


if __name__ == "__main__":
    main()
