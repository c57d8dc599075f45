"""This machine's ksmd, per path, as `ksmtui bench` measured it: saved for `ksmtui estimate`.

The file is $XDG_CACHE_HOME/ksmtui/ksmd-costs.json (~/.cache/ksmtui/ when XDG_CACHE_HOME is not
set): ns of ksmd CPU per scanned page, keyed by bench workload ("settled", "unique", "changing",
"fleet"), with the kernel, the page count and the date of the measurement. A later bench run
replaces the workloads it measured and keeps the others.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ksmtui" / "ksmd-costs.json"


def save(ns_per_page: dict, pages: int) -> Path:
    path = cache_file()
    old = load_raw() or {}
    entry = {"kernel": os.uname().release, "pages": pages, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    workloads = dict(old.get("workloads", {}))
    workloads.update({w: {"ns_per_page": ns, **entry} for w, ns in ns_per_page.items() if ns})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"workloads": workloads}, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def load_raw() -> dict | None:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("workloads"), dict) else None


def load() -> tuple[dict, str]:
    """(ns per page by workload, where they come from in words); ({}, "") when never measured."""
    data = load_raw()
    if not data:
        return {}, ""
    costs, sources = {}, set()
    for w, entry in data["workloads"].items():
        try:
            costs[w] = float(entry["ns_per_page"])
        except (KeyError, TypeError, ValueError):
            continue
        sources.add(f"kernel {entry.get('kernel', '?')}, {entry.get('pages', 0):,} pages, {entry.get('measured_at', '?')}")
    return costs, f"ksmtui bench on this machine ({'; '.join(sorted(sources))}), from {cache_file()}"
