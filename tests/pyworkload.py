"""A second workload to learn scenarios from (issue 29): python3 interpreters doing work.

`python3 tests/pyworkload.py SECONDS K` keeps, for SECONDS: 64 pages every interpreter fills
alike (KSM merges them across interpreters), 64 pages of its own (seeded by K: unique), 32 pages
it rewrites every 50 ms, 32 more every 500 ms, and the interpreter's own heap, which changes as
it runs. Started several times under merge-any by tests/test_learn.py.
"""

import random
import sys
import time

seconds, k = float(sys.argv[1]), int(sys.argv[2])
same = bytearray(b"ksmtui-" * (4096 * 64 // 7 + 1))
mine = bytearray(random.Random(k).randbytes(4096 * 64))
fast = [bytearray(4096) for _ in range(32)]
slow = [bytearray(4096) for _ in range(32)]
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end:
    for page in fast:
        page[i % 4096] = (page[i % 4096] + 1) & 255
    if i % 10 == 0:
        for page in slow:
            page[i % 4096] = (page[i % 4096] + 1) & 255
    i += 1
    time.sleep(0.05)
