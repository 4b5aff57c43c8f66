#!/usr/bin/env python3
"""Where the extra CPU of one profile goes, against another: two output folders of
bench/profile_predict.sh (say traces off and on), each sample turned into microseconds of
CPU per request (perf samples at 499 Hz over 6 s, divided by the requests wrk counted in
that folder's run), totals per thread name, then the symbols that grew and shrank most.

    BENCH_WORK=/tmp/prof-off TRACES=off bench/profile_predict.sh
    BENCH_WORK=/tmp/prof-on  TRACES=on  bench/profile_predict.sh
    bench/profile_diff.py /tmp/prof-off /tmp/prof-on

Needs perf (linux-perf). The requests per second are wrk's over its whole 10 s run, of
which perf sampled 6 s: a close enough count for comparing two runs made the same way.
"""
import re
import subprocess
import sys

HZ, SECONDS = 499, 6  # as bench/profile_predict.sh records


def load(folder):
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", open(f"{folder}/wrk.txt").read())[1])
    report = subprocess.run(
        ["perf", "report", "-i", f"{folder}/perf.data", "--no-children", "--stdio",
         "-F", "sample,comm,sym"],
        capture_output=True, text=True, check=True).stdout
    us = {}
    for line in report.splitlines():
        m = re.match(r"\s+(\d+)\s+(\S+)\s+\[.\]\s+(.*?)\s*$", line)
        if m:
            key = (m[2], m[3][:90])
            us[key] = us.get(key, 0.0) + int(m[1]) * 1e6 / HZ / (rps * SECONDS)
    return us


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: profile_diff.py BASE_FOLDER OTHER_FOLDER")
    base, other = load(sys.argv[1]), load(sys.argv[2])
    for thread in sorted({k[0] for k in base} | {k[0] for k in other}):
        b = sum(v for k, v in base.items() if k[0] == thread)
        o = sum(v for k, v in other.items() if k[0] == thread)
        if max(b, o) >= 0.05:
            print(f"{thread}: {b:.2f} -> {o:.2f} µs/request")
    keys = sorted(set(base) | set(other), key=lambda k: other.get(k, 0) - base.get(k, 0))
    print("\ngrew most (µs/request, other minus base):")
    for k in reversed(keys[-25:]):
        print(f"  {other.get(k, 0) - base.get(k, 0):+.3f}  {k[0]}  {k[1]}")
    print("shrank most:")
    for k in keys[:8]:
        print(f"  {other.get(k, 0) - base.get(k, 0):+.3f}  {k[0]}  {k[1]}")


main()
