#!/usr/bin/env python3
"""Start-up footprint of the attnpool tool: wall time and peak resident memory of a command,
median of N runs, each a fresh process (os.wait4 gives each child's own rusage).

    python3 bench/cli/startup.py BINARY [N] [-- ARGS...]     (default ARGS: --version)

Prints one line per binary: median and min wall time, median peak RSS, and whether the
command still succeeds under a 256 MiB address-space limit (RLIMIT_AS), a small container's.
"""
import os
import resource
import statistics
import subprocess
import sys
import time


def run_once(argv, limit_as=None):
    def pre():
        if limit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=pre)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss, p.returncode


def main():
    args = sys.argv[1:]
    extra = ["--version"]
    if "--" in args:
        i = args.index("--")
        args, extra = args[:i], args[i + 1:]
    binary = args[0]
    n = int(args[1]) if len(args) > 1 else 21
    argv = [binary] + extra
    runs = [run_once(argv) for _ in range(n)]
    if any(rc != 0 for _, _, rc in runs):
        sys.exit(f"{argv}: failed (exit status {runs[0][2]})")
    times = [t * 1e3 for t, _, _ in runs]
    rss = [r / 1024 for _, r, _ in runs]
    _, _, rc = run_once(argv, 256 << 20)
    print(f"{' '.join(argv)}: median {statistics.median(times):.1f} ms (min {min(times):.1f}), "
          f"peak RSS {statistics.median(rss):.1f} MiB, under a 256 MiB RLIMIT_AS: "
          f"{'ok' if rc == 0 else f'fails (status {rc})'}  [{n} runs]")


if __name__ == "__main__":
    main()
