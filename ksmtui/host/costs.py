"""This machine's ksmd as measured here: the cost profile every model run uses, and the bench's
per-workload costs for `ksmtui estimate`.

The files are in $XDG_CACHE_HOME/ksmtui/ (~/.cache/ksmtui/ when XDG_CACHE_HOME is not set).
ksmd-profile.json is what `ksmtui calibrate` measured (engine/cost.py CostProfile: ns per operation
by group, the kernel's HZ, ksmd's wait for a CPU, and a label naming the machine and the date):
run, sweep, estimate, parity and the UI use it when present, and say so ("costs: ..."), unless
--costs reference or --costs FILE pins one. (A file of its own: older ksmtui versions rewrite
ksmd-costs.json whole.) ksmd-costs.json's "workloads" are ns of ksmd CPU per scanned page, by bench
workload ("settled", "unique", "changing", ...) and by the number of pages it was measured on,
with the kernel and the date. The cost of a path grows with the trees (the unique path walks
~log2(pages) levels), so each size is kept and an estimate takes, per workload, the measurement
whose size is nearest its own.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from engine.cost import REFERENCE, CostProfile, CostProfileError


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ksmtui" / "ksmd-costs.json"


def profile_file() -> Path:
    return cache_file().with_name("ksmd-profile.json")


def _read() -> dict:
    try:
        data = json.loads(cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(data: dict, path: Path | None = None) -> Path:
    path = path or cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def save_profile(profile: CostProfile) -> Path:
    """The calibrated profile, beside the bench's workloads."""
    return _write(profile.to_json(), profile_file())


def load_profile(choice: str | None = None) -> CostProfile:
    """The profile a model run uses: choice "reference" (the built-in constants), a FILE (one
    calibrate saved), or None: this machine's calibrated one when saved, else the reference. A bad
    file raises CostProfileError (one line: the file, what was expected)."""
    if choice == "reference":
        return REFERENCE
    if choice is None:
        path = profile_file()
        if not path.exists():
            return REFERENCE
    else:
        path = Path(choice)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise CostProfileError(f"--costs: cannot read {path}: {err.strerror}") from None
    except ValueError as err:
        raise CostProfileError(f"{path}: not JSON ({err})") from None
    if isinstance(data, dict) and "ns" not in data:
        raise CostProfileError(f"{path}: expected a cost profile (ksmtui calibrate writes one)")
    return CostProfile.from_json(data, str(path))


def _entries() -> dict[str, dict[int, dict]]:
    """workload -> pages -> {"ns_per_page", "kernel", "measured_at"}; {} if none or unreadable."""
    try:
        data = _read()
        out: dict[str, dict[int, dict]] = {}
        for w, sizes in data["workloads"].items():
            out[w] = {int(pages): {"ns_per_page": float(e["ns_per_page"]), "kernel": str(e.get("kernel", "?")),
                                   "measured_at": str(e.get("measured_at", "?"))} for pages, e in sizes.items()}
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save(ns_per_page: dict, pages: int) -> Path:
    """Add (or replace) the measurements of one size, keeping the others."""
    entries = _entries()
    stamp = {"kernel": os.uname().release, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for w, ns in ns_per_page.items():
        if ns:
            entries.setdefault(w, {})[pages] = {"ns_per_page": float(ns), **stamp}
    data = _read()
    data["workloads"] = {w: {str(p): e for p, e in sorted(sizes.items())} for w, sizes in entries.items()}
    return _write(data)


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
