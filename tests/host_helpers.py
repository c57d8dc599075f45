"""Real processes with known pages for the host-mode tests, and the merges KSM makes of them.

Three children each map PAGES_EACH anonymous pages and madvise them MADV_MERGEABLE: SHARED
pages whose contents the three have in common (page i is the same in each, different from page j)
and ZEROS zero-filled pages. With use_zero_pages=1 and smart_scan=0, KSM's second pass merges
every shared content once into a new KSM page (an unstable-tree pairing of the first two copies)
and the third copy into that page (a stable-tree merge), and every zero page into the zero page.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

from ksmtui.host import sysfs
from ksmtui.host.sampler import HostSampler

CHILDREN = 3
SHARED = 8
ZEROS = 4
KNOBS = {"pages_to_scan": 1000, "sleep_millisecs": 5, "use_zero_pages": 1, "smart_scan": 0}
PREDICTED = {
    "ksm": {"pages_shared": SHARED, "pages_sharing": SHARED * (CHILDREN - 1), "ksm_zero_pages": ZEROS * CHILDREN},
    "merges": {"unstable_pairs": SHARED, "stable": SHARED * (CHILDREN - 2), "zero_page": ZEROS * CHILDREN},
}

CHILD = r"""
import mmap, sys
page, shared, zeros = mmap.PAGESIZE, int(sys.argv[1]), int(sys.argv[2])
buf = mmap.mmap(-1, (shared + zeros) * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(shared):
    buf[i * page:(i + 1) * page] = (f"ksmtui host test page {i} ".encode() * page)[:page]
for i in range(shared, shared + zeros):
    buf[i * page:(i + 1) * page] = bytes(page)
buf.madvise(mmap.MADV_MERGEABLE)
print("ready", flush=True)
sys.stdin.read()
"""


class Children:
    """The three children, alive until the block ends (closing their stdin ends them)."""

    def __enter__(self) -> list[int]:
        self.procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(SHARED), str(ZEROS)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True) for _ in range(CHILDREN)]
        for p in self.procs:
            assert p.stdout.readline().strip() == "ready"
        return [p.pid for p in self.procs]

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.stdin.close()
        for p in self.procs:
            p.wait(timeout=10)


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def merged() -> bool:
    return all(int(sysfs.ksm_read(k)) == v for k, v in PREDICTED["ksm"].items())


@contextlib.contextmanager
def merging(post=None, interval: float = 0.2, knobs=KNOBS, settle_passes: int = 0):
    """With the machine lock held and KSM at its defaults (the `kernel` fixture): sample while the
    children merge, until ksmd has stopped again (run=0) and the tracepoints have caught up. The
    block runs with the children still alive, ksmd stopped and the sampler closed; it gets the
    children's pids and the samples."""
    samples = []

    def keep(sample):
        samples.append(sample)
        if post is not None:
            post(sample)

    sampler = HostSampler(interval)
    try:
        sampler.start(keep)
        with Children() as pids:
            for name, value in knobs.items():
                sysfs.ksm_write(name, value)
            sysfs.ksm_write("run", 1)
            assert wait_until(merged), {k: sysfs.ksm_read(k) for k in PREDICTED["ksm"]}
            passes = int(sysfs.ksm_read("full_scans")) + settle_passes
            assert wait_until(lambda: int(sysfs.ksm_read("full_scans")) >= passes)
            sysfs.ksm_write("run", 0)
            seen = len(samples)
            assert wait_until(lambda: len(samples) > seen + 1 and traced(samples) == PREDICTED["merges"], 10), \
                traced(samples)
            sampler.close()
            yield pids, samples
    finally:
        sampler.close()


def traced(samples) -> dict:
    total = dict.fromkeys(PREDICTED["merges"], 0)
    for s in samples:
        for k in total:
            total[k] += (s.trace or {}).get("merges", {}).get(k, 0)
    return total



# regenerate the committed recording: python tests/host_helpers.py tests/data/host-merge.jsonl
if __name__ == "__main__":
    from ksmtui.host.recording import Recorder

    # slower than the tests' knobs, so that the recording shows the passes one by one
    recorder = Recorder(sys.argv[1], 0.1)
    with sysfs.machine_lock():
        sysfs.restore_defaults()
        try:
            with merging(recorder.add, 0.1, {**KNOBS, "pages_to_scan": 4, "sleep_millisecs": 20}, settle_passes=3):
                pass
        finally:
            sysfs.restore_defaults()
            recorder.close()
