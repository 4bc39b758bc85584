#!/usr/bin/env python3
"""Issue 2's figures: N real patrol-agent processes on loopback joined
through one seed; how long until every agent lists N alive members; then
idle RSS and CPU per agent over a window. Every process is stopped at the
end.

  python3 bench/mesh_footprint.py [--nodes 30] [--idle 30]
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import serf_vs_patrol as b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--idle", type=float, default=30.0)
    args = ap.parse_args()
    n = args.nodes
    work = tempfile.mkdtemp(prefix="patrol-mesh-")
    key = os.path.join(work, "cluster.key")
    subprocess.run([os.path.join(b.RELEASE, "patrol"), "keys", "generate", "--out", key], check=True,
                   capture_output=True)
    try:
        seed, controls, pids = None, [], []
        start = time.time()
        for i in range(n):
            cfg = os.path.join(work, f"m{i:03}.toml")
            seeds = f'["{seed}"]' if seed else "[]"
            with open(cfg, "w") as f:
                f.write(f'[node]\nname = "m{i:03}"\ncluster = "mesh"\nbind = "127.0.0.1:0"\nseeds = {seeds}\n'
                        f'key_file = "{key}"\n\n[control]\nlisten = "127.0.0.1:0"\n')
            p = b.spawn([os.path.join(b.RELEASE, "patrol-agent"), "--config", cfg], stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, PATROL_LOG="error"))
            fields = dict(w.split("=", 1) for w in p.stdout.readline().split() if "=" in w)
            seed = seed or fields["gossip"]
            controls.append(fields["control"])
            pids.append(p.pid)
        started = time.time() - start
        cfg0 = os.path.join(work, "m000.toml")
        pending = set(controls)
        while pending and time.time() - start < 120:
            for c in list(pending):
                out = subprocess.run([os.path.join(b.RELEASE, "patrol"), "members", "--seed", c, "--config", cfg0,
                                      "--format", "json"], capture_output=True, text=True)
                try:
                    if sum(1 for m in json.loads(out.stdout) if m["state"] == "alive") == n:
                        pending.discard(c)
                except ValueError:
                    pass
            time.sleep(0.05)
        converged = time.time() - start
        if pending:
            raise SystemExit(f"{len(pending)} agents never listed {n} alive members")
        time.sleep(5)
        rss_med, rss_max, cpu_mean, cpu_max = b.idle_footprint(pids, args.idle)
        print(f"{n} agents: all started (ready lines) after {started:.2f} s; every agent listed {n} alive "
              f"after {converged:.2f} s (from the first spawn, polling with `patrol members`)")
        print(f"idle over {args.idle:.0f} s: RSS median {rss_med:.1f} MiB (max {rss_max:.1f}); "
              f"CPU mean {cpu_mean:.2f}% of a core (max {cpu_max:.2f}%)")
    finally:
        b.stop_all()


if __name__ == "__main__":
    main()
