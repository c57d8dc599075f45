"""This machine's ksmd, per path, as `ksmtui bench` measured it: saved for `ksmtui estimate`.

The file is $XDG_CACHE_HOME/ksmtui/ksmd-costs.json (~/.cache/ksmtui/ when XDG_CACHE_HOME is not
set): ns of ksmd CPU per scanned page, by bench workload ("settled", "unique", "changing", ...)
and by the number of pages it was measured on, with the kernel and the date. The cost of a path
grows with the trees (the unique path walks ~log2(pages) levels), so each size is kept and an
estimate takes, per workload, the measurement whose size is nearest its own.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ksmtui" / "ksmd-costs.json"


def _entries() -> dict[str, dict[int, dict]]:
    """workload -> pages -> {"ns_per_page", "kernel", "measured_at"}; {} if none or unreadable."""
    try:
        data = json.loads(cache_file().read_text())
        out: dict[str, dict[int, dict]] = {}
        for w, sizes in data["workloads"].items():
            out[w] = {int(pages): {"ns_per_page": float(e["ns_per_page"]), "kernel": str(e.get("kernel", "?")),
                                   "measured_at": str(e.get("measured_at", "?"))} for pages, e in sizes.items()}
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save(ns_per_page: dict, pages: int) -> Path:
    """Add (or replace) the measurements of one size, keeping the others."""
    path = cache_file()
    entries = _entries()
    stamp = {"kernel": os.uname().release, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for w, ns in ns_per_page.items():
        if ns:
            entries.setdefault(w, {})[pages] = {"ns_per_page": float(ns), **stamp}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = {"workloads": {w: {str(p): e for p, e in sorted(sizes.items())} for w, sizes in entries.items()}}
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def load(pages: int) -> tuple[dict, str]:
    """(ns per page by workload, where they come from in words) for an estimate of `pages` pages:
    per workload the measurement of the nearest size (by ratio); ({}, "") when never measured."""
    costs, used = {}, []
    for w, sizes in sorted(_entries().items()):
        if not sizes:
            continue
        size = min(sizes, key=lambda n: (abs(math.log(max(n, 1) / max(pages, 1))), -n))
        e = sizes[size]
        costs[w] = e["ns_per_page"]
        used.append(f"{w} at {size:,} pages ({e['kernel']}, {e['measured_at']})")
    if not costs:
        return {}, ""
    return costs, f"ksmtui bench on this machine: {'; '.join(used)}; from {cache_file()}"
