"""How long `ksmtui estimate` takes on a big capture: a synthetic one of a VM fleet.

    python benchmarks/estimate_16m.py [PAGES] [PROCESSES]

Builds a capture (default 16,777,216 pages = 64 GiB of 4 KiB pages, 64 processes): per process
half an OS image shared by all (copies in every process), a quarter private pages, a tenth zero
pages, the rest pages shared by pairs of processes; saves it, then times `ksmtui estimate` on the
file end to end (load, checks, estimate, JSON) in a fresh process, twice, and prints the times.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine import capture as fmt


def fleet(pages: int, processes: int) -> fmt.Capture:
    each = pages // processes
    image, private, zero = each // 2, each // 4, each // 10
    pairs = each - image - private - zero
    next_id = 1 + image
    procs = []
    rng = np.random.default_rng(0)
    for p in range(processes):
        ids = np.concatenate([
            np.arange(1, 1 + image),  # the OS image: the same contents in every process
            np.arange(next_id, next_id + private),  # private pages
            np.zeros(zero, np.int64),  # zero pages
            1 + image + processes * private + (p // 2) * pairs + np.arange(pairs),  # shared with a neighbour
        ])
        next_id += private
        rng.shuffle(ids)  # contents spread over the address space
        procs.append((10_000 + p, f"vm-{p}", [(fmt.MERGEABLE, ids)]))
    return fmt.from_contents(procs)


def main() -> int:
    pages = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 24
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.npz"
        t0 = time.perf_counter()
        fmt.save(fleet(pages, processes), path)
        print(f"built and saved a {pages:,}-page capture of {processes} processes in {time.perf_counter() - t0:.1f} s "
              f"({path.stat().st_size / 2**20:,.0f} MiB)")
        for run in range(2):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "ksmtui.cli", "estimate", str(path), "--json"],
                               capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            print(f"run {run + 1}: ksmtui estimate --json took {wall:.1f} s wall ({len(r.stdout):,} bytes of JSON)")
        print(r.stdout[:400])
    return 0


if __name__ == "__main__":
    sys.exit(main())
