"""Scenario files (TOML): the data model. The loader and its validation live below the model.

The format is docs/scenarios.md. Every value here has been validated: the engine and
the real-kernel runner take a Scenario as it is. Below the loader: the scenario a capture makes
(docs/capture.md); this module reads capture files (engine.capture), never the other way round.
"""

from __future__ import annotations

import difflib
import enum
import fnmatch
import importlib.resources
import json
import os
import re
import stat
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import overload

import numpy as np

from engine.capture import CAPTURED_REASONS, MERGEABLE, Capture, CaptureError, comparable
from engine.capture import load as load_capture
from engine.knobs import ALL_KNOBS, ENGINE_KNOBS, KSM_KNOBS, KnobError
from engine.memory import MemInfo, MemPoint


class ScenarioError(Exception):
    """A bad scenario or option: one line naming the file, the table, the key and what was expected."""

    def __init__(self, file: str, table: str, key: str, message: str):
        self.file, self.table, self.key, self.message = file, table, key, message
        where = ".".join(p for p in (table, key) if p)
        # File names, keys and values come from the user: shown escaped, the line stays one line
        # and cannot drive the terminal.
        super().__init__(printable(f"{file}: {where}: {message}" if where else f"{file}: {message}"))


# C0 and C1 controls and DEL: what a terminal would act on instead of showing.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, keep: str = "") -> str:
    """text with every control character but those in `keep` shown as its escape (\\x1b, \\n)."""
    return _CONTROLS.sub(lambda m: m.group() if m.group() in keep else repr(m.group())[1:-1], text)


@dataclass(frozen=True)
class Fill:
    kind: str = "random"  # "random", "zero", "byte", "pool", "file"
    byte: int = 0  # kind == "byte"
    pool: str | None = None  # kind == "pool"
    order: str = "sequential"  # kind == "pool": "sequential" or "shuffled"
    offset: int = 0  # kind == "pool"
    path: Path | None = None  # kind == "file": resolved against the scenario's folder
    capture: Path | None = None  # kind == "capture": the capture file, resolved like path
    pid: int | None = None  # kind == "capture": the captured process
    vma: int | None = None  # kind == "capture": the start address of its VMA


@dataclass(frozen=True)
class Pool:
    name: str
    pages: int


@dataclass(frozen=True)
class Region:
    name: str
    pages: int
    mergeable: bool = True
    fill: Fill = field(default_factory=Fill)
    thp: float = 0.0  # the share of its PMD-aligned extents faulted in as transparent huge pages
    # thp = "capture": (first page, pages) of each large folio as the capture recorded it
    folios: tuple[tuple[int, int], ...] = ()

    @property
    def maps_thp(self) -> bool:
        return bool(self.thp or self.folios)

    def huge_extents(self, hpage_pmd_nr: int) -> list[int]:
        """Which extents of hpage_pmd_nr pages (counted from the region's start, which is
        PMD-aligned when thp > 0) are THPs: a share `thp` of them, spread evenly, the same in the
        model and on the real kernel."""
        thp = self.thp
        return [k for k in range(self.pages // hpage_pmd_nr) if int((k + 1) * thp) > int(k * thp)]

    def folio_extents(self, hpage_pmd_nr: int) -> list[tuple[int, int]]:
        """(first page, pages) of each large folio the region starts with: the captured ones, or
        the PMD-sized extents of `thp`."""
        if self.folios:
            return list(self.folios)
        return [(k * hpage_pmd_nr, hpage_pmd_nr) for k in self.huge_extents(hpage_pmd_nr)] if self.thp else []


@dataclass(frozen=True)
class Process:
    name: str
    regions: tuple[Region, ...]
    count: int = 1
    node: int = 0
    merge_any: bool = False
    cmdline: str = ""  # [memory] extension: the command line controllers match ("" = the name)

    def instance_names(self) -> list[str]:
        if self.count == 1:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(self.count)]


@dataclass(frozen=True)
class Event:
    index: int  # position in the file: ties at the same moment run in file order
    action: str  # "write", "fork", "exit", "madvise", "set", "migrate"
    at_ms: int | None = None
    at_full_scans: int | None = None
    repeat_ms: int | None = None
    until_ms: int | None = None
    process: str = "*"  # glob over process names
    region: str | None = None
    pages: int | tuple[int, int] | None = None  # first N pages, or [start, end)
    fraction: float | None = None
    fill: Fill = field(default_factory=Fill)  # write
    child: str | None = None  # fork
    advice: str | None = None  # madvise: "mergeable" or "unmergeable"
    knob: str | None = None  # set
    value: int | str | None = None  # set: already validated for the knob
    to_node: int | None = None  # migrate


@dataclass(frozen=True)
class Stop:
    full_scans: int | None = None
    after_ms: int | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    processes: tuple[Process, ...]
    description: str = ""
    seed: int = 0
    page_size: int = 4096
    ksm: dict = field(default_factory=dict)  # every [ksm] knob, defaults filled in
    engine: dict = field(default_factory=dict)  # every [engine] knob, defaults filled in
    pools: tuple[Pool, ...] = ()
    events: tuple[Event, ...] = ()
    stop: Stop = field(default_factory=Stop)
    path: Path | None = None
    memory: int = 0  # bytes one simulation of it needs at its peak (the loader's estimate)
    meminfo: MemInfo | None = None  # the [memory] table (engine/memory.py), None without one


# ---------------------------------------------------------------------------------------------------
# The loader. Everything is checked before a Scenario exists, so a bad file never half-starts a run:
# the first problem found raises ScenarioError naming the file, the table (`process[2].region[0]`),
# the key, what was wrong and what was expected.

# Package data of the top-level `scenarios` package: found the same way from a checkout, an editable
# install or a wheel.
BUILTIN_DIR = Path(str(importlib.resources.files("scenarios")))

# A scenario must fit in this machine: the model keeps every mapped page and every pool page.
MAX_PAGES = 4_194_304  # 16 GiB of 4 KiB pages
MAX_BYTES = 16 << 30

FILLS = ("random", "zero", "byte", "pool", "file", "capture")
FILL_KEYS = {"random": (), "zero": (), "byte": ("byte",), "pool": ("pool", "order", "offset"), "file": ("path",),
             "capture": ("capture", "pid", "vma")}
ALL_FILL_KEYS = ("fill", "byte", "pool", "order", "offset", "path", "capture", "pid", "vma")
ORDERS = ("sequential", "shuffled")
ACTIONS = ("write", "fork", "exit", "madvise", "set", "migrate")
ADVICE = ("mergeable", "unmergeable")
TRIGGER_KEYS = ("at_ms", "at_full_scans", "repeat_ms", "until_ms")
# The keys each action takes besides `action` and the trigger keys.
ACTION_KEYS = {
    "write": ("process", "region", "pages", "fraction", *ALL_FILL_KEYS),
    "fork": ("process", "child"),
    "exit": ("process",),
    "madvise": ("process", "region", "advice"),
    "set": ("knob", "value"),
    "migrate": ("process", "region", "to_node", "pages", "fraction"),
}
ALL_EVENT_KEYS = ("action", *TRIGGER_KEYS, *dict.fromkeys(k for keys in ACTION_KEYS.values() for k in keys))
GLOB_CHARS = set("*?[]")
MAX_SEED = 2**64 - 1  # the engine's generators take 64 bits: a larger seed would collide with one below

class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING  # a key with no default: required


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _show(value: object) -> str:
    return f"{_type_name(value)} ({value!r})" if not isinstance(value, (dict, list)) else _type_name(value)


class _Table:
    """One TOML table being read: typed getters that name the table and key in every error."""

    def __init__(self, file: str, name: str, data: object, allowed: tuple[str, ...]):
        self.file, self.name = file, name
        if not isinstance(data, dict):
            raise ScenarioError(file, "", name, f"expected a table, got {_show(data)}")
        self.data = data
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise self.error(key, f"unknown key{hint}; expected one of {', '.join(allowed)}")

    def error(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(self.file, self.name, key, message)

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: object, expected: str) -> object:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise self.error(key, f"missing; expected {expected}")
        return default

    def string(self, key: str, default: str | _Missing = _MISSING, choices: tuple[str, ...] = ()) -> str:
        expected = _choices(choices) if choices else "a string"
        value = self._get(key, default, expected)
        if not isinstance(value, str) or (choices and value not in choices):
            raise self.error(key, f"expected {expected}, got {_show(value)}")
        return value

    def shown_name(self, key: str = "name") -> str:
        """A name the UI and the reports show: a control character in it would drive the terminal."""
        value = self.string(key)
        if _CONTROLS.search(value):
            raise self.error(key, f"expected a name without control characters, got {value!r}")
        return value

    def name_(self, key: str = "name") -> str:
        """A name that globs match: none of * ? [ ] in it."""
        value = self.shown_name(key)
        if not value or value.strip() != value or GLOB_CHARS & set(value):
            raise self.error(key, f"expected a non-empty name without spaces at its ends or any of * ? [ ], got "
                                  f"{value!r}")
        return value

    @overload
    def integer(self, key: str, default: int | _Missing = _MISSING, low: int | None = None,
                high: int | None = None) -> int: ...
    @overload
    def integer(self, key: str, default: None, low: int | None = None, high: int | None = None) -> int | None: ...

    def integer(self, key: str, default: int | _Missing | None = _MISSING, low: int | None = None,
                high: int | None = None) -> int | None:
        """An integer low..high; a missing key is `default` (None: no value), or an error if it has none."""
        if low is not None and high is not None:
            expected = f"an integer {low}..{high}"
        elif low is not None:
            expected = f"an integer >= {low}"
        else:
            expected = "an integer"
        value = self._get(key, default, expected)
        if value is None:
            return value
        # bool is an int in Python, never in a scenario: `pages = true` is a mistake, not 1.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"expected {expected}, got {_show(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(key, f"expected {expected}, got {value}")
        return value

    def boolean(self, key: str, default: bool | _Missing = _MISSING) -> bool:
        value = self._get(key, default, "true or false")
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_show(value)}")
        return value

    def tables(self, key: str, header: str = "") -> list:
        """The array of tables `[[header]]` (by default `[[key]]`)."""
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, f"expected an array of tables ([[{header or key}]]), got {_show(value)}")
        return value


def _glob(names: Collection[str], glob: str) -> list[str]:
    """The names (a dict or set: looked up, not scanned, when the glob is a plain name) it matches."""
    if not GLOB_CHARS & set(glob):
        return [glob] if glob in names else []
    # Case-sensitive on every platform, as the engine matches them.
    return [n for n in names if fnmatch.fnmatchcase(n, glob)]


def _choices(choices: tuple[str, ...]) -> str:
    quoted = [f'"{c}"' for c in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _names(names: list[str], most: int = 5) -> str:
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")


def _parse_knob(name: str, value: object) -> int | str:
    """A knob's value from TOML: the knob's own type (no strings for numbers, no booleans) and range."""
    knob = ALL_KNOBS[name]
    if isinstance(value, bool) or not isinstance(value, str if isinstance(knob.default, str) else int):
        raise KnobError(f"expected {knob.expected}, got {_show(value)}")
    return knob.parse(value)


def _read_knobs(file: str, name: str, data: object, knobs: dict) -> dict:
    table = _Table(file, name, data, tuple(knobs))
    values = {k: knob.default for k, knob in knobs.items()}
    for key, value in table.data.items():
        try:
            values[key] = _parse_knob(key, value)
        except KnobError as e:
            raise table.error(key, str(e)) from None
    if name == "ksm" and values["advisor_mode"] == "scan-time":
        # The kernel refuses pages_to_scan while the advisor runs, and selecting scan-time starts
        # it at advisor_min_pages_to_scan.
        if table.has("pages_to_scan"):
            raise table.error("pages_to_scan", 'the kernel refuses pages_to_scan while advisor_mode is "scan-time" '
                                               '(EINVAL); leave it out')
        values["pages_to_scan"] = values["advisor_min_pages_to_scan"]
    return values


class _Loader:
    def __init__(self, file: str, base_dir: Path):
        self.file, self.base_dir = file, base_dir
        self.random_written = 0  # pages that random writes can give new contents
        self.captures: dict[Path, Capture] = {}  # loaded once per file
        self.page_size = 4096

    # -- fills ------------------------------------------------------------------------------------
    def fill(self, table: _Table, pools: dict[str, Pool], region_pages: int | None = None) -> Fill:
        """A region's fill (region_pages: its size) or a write event's (None)."""
        kind = table.string("fill", "random", FILLS)
        for key in ALL_FILL_KEYS[1:]:
            if table.has(key) and key not in FILL_KEYS[kind]:
                owner = next(k for k, keys in FILL_KEYS.items() if key in keys)
                raise table.error(key, f'belongs to fill = "{owner}", not fill = "{kind}"')
        if kind == "byte":
            return Fill("byte", byte=table.integer("byte", low=0, high=255))
        if kind == "pool":
            pool = table.string("pool")
            if pool not in pools:
                known = ", ".join(pools) or "none declared"
                raise table.error("pool", f"no [[pool]] named {pool!r} (pools: {known})")
            order = table.string("order", "sequential", ORDERS)
            return Fill("pool", pool=pool, order=order, offset=table.integer("offset", 0, low=0))
        if kind == "file":
            path = self.base_dir / table.string("path")
            try:
                fd, _ = open_regular(path)
                try:
                    os.pread(fd, 1, 0)  # what run will do: /proc/self/mem opens, and fails here (EIO)
                finally:
                    os.close(fd)
            except OSError as e:
                raise table.error("path", f"cannot read {str(path)!r}: {e.strerror or e}") from None
            except ValueError as e:
                raise table.error("path", f"cannot read {str(path)!r}: {e}") from None
            return Fill("file", path=path.resolve())
        if kind == "capture":
            return self.capture_fill(table, region_pages)
        return Fill(kind)

    def capture_fill(self, table: _Table, region_pages: int | None) -> Fill:
        if region_pages is None:
            raise table.error("fill", 'fill = "capture" fills a region from a capture; a write cannot use it')
        path = (self.base_dir / table.string("capture")).resolve()
        if path not in self.captures:
            try:
                self.captures[path] = load_capture(path)
            except CaptureError as e:
                raise table.error("capture", str(e)) from None
            other = next((q for q, c in self.captures.items() if not comparable(c, self.captures[path])), None)
            if other is not None:  # hashes under two keys: equal pages would look distinct
                raise table.error("capture", f"{path.name} and {other.name} were captured with different keys: "
                                             "their hashes do not compare (capture both with one --key-file)")
        cap = self.captures[path]
        pid = table.integer("pid", low=1)
        text = table.string("vma")
        try:
            start = int(text, 16)
        except ValueError:
            raise table.error("vma", f"expected the VMA's start address in hex (\"0x7f...\"), got {text!r}") from None
        if pid not in cap.proc_pid:
            raise table.error("pid", f"{path.name} has no process {pid} (it has "
                                     f"{_names([str(p) for p in cap.proc_pid.tolist()])})")
        v = cap.vma_index(pid, start)
        if v is None:
            raise table.error("vma", f"process {pid} in {path.name} has no VMA starting at {start:#x}")
        if cap.vma_reason[v] not in CAPTURED_REASONS:
            raise table.error("vma", f"the VMA at {start:#x} of process {pid} holds no captured pages (KSM cannot "
                                     "merge it)")
        have = len(cap.vma_contents(v))
        if have != region_pages:
            raise table.error("pages", f"the VMA at {start:#x} of process {pid} has {have:,} pages ksmd scans; "
                                       f"expected pages = {have}, got {region_pages}")
        page_size = int(cap.meta["page_size"])
        if page_size != self.page_size:
            raise table.error("capture", f"{path.name} has {page_size}-byte pages, the scenario's page_size is "
                                         f"{self.page_size}")
        return Fill("capture", capture=path, pid=pid, vma=start)

    # -- the whole file ---------------------------------------------------------------------------
    def scenario(self, data: dict) -> Scenario:
        file = self.file
        top = _Table(file, "", data, ("name", "description", "seed", "page_size", "ksm", "engine", "pool", "process",
                                      "event", "stop", "memory"))
        name = top.shown_name("name")
        if not name.strip():
            raise top.error("name", "expected a non-empty string")
        # Shown as written but for control characters, escaped: they would drive the terminal.
        description = printable(top.string("description", ""), keep="\n\t")
        seed = top.integer("seed", 0, low=0, high=MAX_SEED)
        page_size = top.integer("page_size", 4096, low=64, high=65536)
        if page_size & (page_size - 1):
            raise top.error("page_size", f"expected a power of two 64..65536, got {page_size}")
        self.page_size = page_size
        ksm = _read_knobs(file, "ksm", data.get("ksm", {}), KSM_KNOBS)
        engine = _read_knobs(file, "engine", data.get("engine", {}), ENGINE_KNOBS)

        pools: dict[str, Pool] = {}
        for i, raw in enumerate(top.tables("pool")):
            t = _Table(file, f"pool[{i}]", raw, ("name", "pages"))
            pool = Pool(t.name_(), t.integer("pages", low=1))
            _check_pages(t, "pages", 0, pool.pages)
            if pool.name in pools:
                raise t.error("name", f"duplicate pool name {pool.name!r}")
            pools[pool.name] = pool

        processes = self.processes(top, pools, engine["numa_nodes"])
        events = self.events(top, processes, pools, engine["numa_nodes"])
        stop_t = _Table(file, "stop", data.get("stop", {}), ("full_scans", "after_ms"))
        stop = Stop(stop_t.integer("full_scans", None, low=1), stop_t.integer("after_ms", None, low=1))

        memory = self.check_size(top, processes, events, pools, page_size)
        meminfo = self.meminfo(data["memory"], processes) if "memory" in data else None
        return Scenario(
            name=name, processes=processes, description=description, seed=seed, page_size=page_size,
            ksm=ksm, engine=engine, pools=tuple(pools.values()), events=events, stop=stop, memory=memory,
            meminfo=meminfo,
        )

    # -- [memory]: the host's /proc/meminfo for controllers (docs/controllers.md) -----------------
    _POINT_KEYS = ("mem_free_kb", "buffers_kb", "cached_kb", "mem_available_kb", "rss_extra_kb")

    def meminfo(self, raw: object, processes: tuple[Process, ...]) -> MemInfo:
        t = _Table(self.file, "memory", raw, ("mem_total_kb", *self._POINT_KEYS, "point"))
        total = t.integer("mem_total_kb", low=1, high=2**50)
        names = {n for p in processes for n in p.instance_names()}
        first = self.mem_point(t, 0, None, total, names)
        points = [first]
        for i, raw_p in enumerate(t.tables("point", "memory.point")):
            pt = _Table(self.file, f"memory.point[{i}]", raw_p, ("at_ms", *self._POINT_KEYS))
            at = pt.integer("at_ms", low=0)
            if at < points[-1].at_ms or (i == 0 and at == 0):
                raise pt.error("at_ms", f"expected a time after the previous point's ({points[-1].at_ms} ms), got {at}")
            points.append(self.mem_point(pt, at, points[-1], total, names))
        return MemInfo(total, tuple(points))

    def mem_point(self, t: _Table, at: int, prev: MemPoint | None, total: int, names: set[str]) -> MemPoint:
        def kb(key: str, default: int | _Missing) -> int:
            return t.integer(key, default, low=0, high=total)
        # a point changes what it names; the rest holds from the point before
        free = kb("mem_free_kb", prev.mem_free_kb if prev else _MISSING)
        buffers = kb("buffers_kb", prev.buffers_kb if prev else 0)
        cached = kb("cached_kb", prev.cached_kb if prev else 0)
        moved = prev is None or any(t.has(k) for k in ("mem_free_kb", "buffers_kb", "cached_kb"))
        # MemAvailable, when not given: what is free, in buffers or cached (the kernel's estimate
        # takes a part of the caches' reclaimable share; a scenario that cares gives it)
        available = kb("mem_available_kb", min(free + buffers + cached, total) if moved or prev is None
                       else prev.mem_available_kb)
        raw_rss = t.data.get("rss_extra_kb", {})
        if not isinstance(raw_rss, dict):
            raise t.error("rss_extra_kb", f"expected a table of process name = kB, got {_show(raw_rss)}")
        rss = []
        for name, value in raw_rss.items():
            if name not in names:
                raise t.error("rss_extra_kb", f"no process {name!r} (processes: {_names(sorted(names))})")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise t.error("rss_extra_kb", f"expected an integer >= 0 (kB) for {name!r}, got {_show(value)}")
            rss.append((name, value))
        return MemPoint(at, free, buffers, cached, available, tuple(rss))

    def processes(self, top: _Table, pools: dict[str, Pool], numa_nodes: int) -> tuple[Process, ...]:
        raw_list = top.tables("process")
        if not raw_list:
            raise top.error("process", "missing; expected at least one [[process]] with at least one "
                                       "[[process.region]]")
        processes, names, mapped = [], set(), 0
        for i, raw in enumerate(raw_list):
            t = _Table(self.file, f"process[{i}]", raw, ("name", "count", "node", "merge_any", "region", "cmdline"))
            pname = t.name_()
            count = t.integer("count", 1, low=1)
            node = t.integer("node", 0, low=0)
            if node >= numa_nodes:
                raise t.error("node", f"expected a node below [engine] numa_nodes = {numa_nodes}, got {node}")
            merge_any = t.boolean("merge_any", False)
            raw_regions = t.tables("region", "process.region")
            if not raw_regions:
                raise t.error("region", "missing; expected at least one [[process.region]]")
            regions: dict[str, Region] = {}
            for j, raw_r in enumerate(raw_regions):
                r = _Table(self.file, f"process[{i}].region[{j}]", raw_r,
                           ("name", "pages", "mergeable", "thp", *ALL_FILL_KEYS))
                rname, rpages = r.name_(), r.integer("pages", low=1)
                fill = self.fill(r, pools, rpages)
                region = Region(rname, rpages, r.boolean("mergeable", True), fill, *self.thp(r, rpages, fill))
                if region.name in regions:
                    raise r.error("name", f"duplicate region name {region.name!r} in process {pname!r}")
                regions[region.name] = region
            mapped += count * sum(r.pages for r in regions.values())
            # Checked here, before count names are made: count = 10**12 must not exhaust memory.
            _check_pages(t, "count" if count > 1 else "region", mapped)
            cmdline = printable(t.string("cmdline", ""))
            process = Process(pname, tuple(regions.values()), count, node, merge_any, cmdline)
            for instance in process.instance_names():
                if instance in names:
                    raise t.error("name", f"duplicate process name {instance!r}")
                names.add(instance)
            processes.append(process)
        return tuple(processes)

    # -- events -----------------------------------------------------------------------------------
    def events(self, top: _Table, processes: tuple[Process, ...], pools: dict[str, Pool],
               numa_nodes: int) -> tuple[Event, ...]:
        raw_list = top.tables("event")
        tables = []
        for i, raw in enumerate(raw_list):
            t = _Table(self.file, f"event[{i}]", raw, ALL_EVENT_KEYS)
            action = t.string("action", choices=ACTIONS)
            for key in t.data:
                if key != "action" and key not in TRIGGER_KEYS and key not in ACTION_KEYS[action]:
                    raise t.error(key, f'does not go with action = "{action}" (it takes '
                                       f'{", ".join(ACTION_KEYS[action])})')
            tables.append((t, action))

        # Every process that can ever exist, with its regions: the declared ones, then fork children,
        # who have their parent's regions. Globs are matched against all of them.
        regions: dict[str, tuple[Region, ...]] = {}
        for p in processes:
            for instance in p.instance_names():
                regions[instance] = p.regions
        children: dict[str, tuple[_Table, str]] = {}
        for t, action in tables:
            if action == "fork":
                child = t.name_("child")
                if child in regions or child in children:
                    raise t.error("child", f"duplicate process name {child!r}")
                children[child] = (t, t.string("process", "*"))
        all_names = [*regions, *children]
        parent_of = {}
        for child, (t, glob) in children.items():
            matched = _glob(all_names, glob)
            if len(matched) != 1:
                found = f"matches {len(matched)} ({_names(matched)})" if matched else "matches no process"
                raise t.error("process", f"{glob!r} {found}; a fork needs exactly one parent so that its child's name "
                                         "is unique")
            parent_of[child] = matched[0]
        for child, (t, _) in children.items():
            # Up the forks to a process whose regions are known (declared, or a child done before):
            # each child is walked once, however long the chain of forks.
            path, name = [child], parent_of[child]
            while name not in regions:
                if name in path:
                    raise t.error("process", f"fork of {child!r} does not lead back to a declared [[process]] (a "
                                             "cycle of forks)")
                path.append(name)
                name = parent_of[name]
            for c in path:
                regions[c] = regions[name]
        self.regions = regions
        self.region_index: dict[int, dict[str, Region]] = {}  # by id of a regions tuple: forks share it

        events = []
        for i, (t, action) in enumerate(tables):
            events.append(self.event(i, t, action, regions, pools, numa_nodes))
        return tuple(events)

    def event(self, index: int, t: _Table, action: str, regions: dict[str, tuple[Region, ...]], pools: dict[str, Pool],
              numa_nodes: int) -> Event:
        at_ms = t.integer("at_ms", None, low=0)
        at_full_scans = t.integer("at_full_scans", None, low=0)
        if at_ms is not None and at_full_scans is not None:
            raise t.error("at_full_scans", "both at_ms and at_full_scans given; expected exactly one trigger")
        if at_ms is None and at_full_scans is None:
            raise t.error("at_ms", "missing; expected exactly one trigger: at_ms or at_full_scans")
        repeat_ms = t.integer("repeat_ms", None, low=1)
        until_ms = t.integer("until_ms", None, low=0)
        for key in ("repeat_ms", "until_ms"):
            if t.has(key) and at_ms is None:
                raise t.error(key, "repeats an at_ms event; expected at_ms, not at_full_scans")
        if until_ms is not None and repeat_ms is None:
            raise t.error("until_ms", "ends a repeat; expected repeat_ms with it")
        if until_ms is not None and at_ms is not None and until_ms < at_ms:
            raise t.error("until_ms", f"expected until_ms >= at_ms ({at_ms}), got {until_ms}")
        if repeat_ms is not None and action in ("fork", "exit"):
            raise t.error("repeat_ms", f"a process can {action} only once; expected no repeat_ms on {action}")

        event = partial(Event, index=index, action=action, at_ms=at_ms, at_full_scans=at_full_scans,
                        repeat_ms=repeat_ms,
                        until_ms=until_ms)
        if action == "set":
            knob = t.string("knob")
            if knob not in ALL_KNOBS:
                raise t.error("knob", f"unknown knob {knob!r}; expected one of {', '.join(ALL_KNOBS)}")
            if knob == "numa_nodes":
                raise t.error("knob", "numa_nodes is the machine's shape and cannot change while it runs; set it in "
                                      "[engine]")
            if not t.has("value"):
                raise t.error("value", f"missing; expected {ALL_KNOBS[knob].expected}")
            try:
                value = _parse_knob(knob, t.data["value"])
            except KnobError as e:
                raise t.error("value", f"for {knob}: {e}") from None
            return event(knob=knob, value=value)

        glob = t.string("process", "*")
        matched = _glob(regions, glob)
        if not matched:
            raise t.error("process", f"{glob!r} matches no process (declared, or named as some fork's child)")
        if action == "fork":
            return event(process=glob, child=t.data["child"])
        if action == "exit":
            return event(process=glob)

        region_name = t.string("region")
        sizes = []
        for name in matched:
            own = regions[name]
            by_name = self.region_index.get(id(own))
            if by_name is None:
                by_name = self.region_index[id(own)] = {r.name: r for r in own}
            if region_name not in by_name:
                have = _names([r.name for r in own])
                raise t.error("region", f"process {name!r} has no region {region_name!r} (it has {have})")
            sizes.append(by_name[region_name].pages)
        if action == "madvise":
            return event(process=glob, region=region_name, advice=t.string("advice", choices=ADVICE))

        pages, fraction = self.which_pages(t, min(sizes), region_name)
        if action == "migrate":
            to_node = t.integer("to_node", low=0)
            if to_node >= numa_nodes:
                raise t.error("to_node", f"expected a node below [engine] numa_nodes = {numa_nodes}, got {to_node}")
            return event(process=glob, region=region_name, pages=pages, fraction=fraction, to_node=to_node)
        fill = self.fill(t, pools)
        if fill.kind == "random":  # new contents, at most one per page of the regions it writes
            self.random_written += sum(sizes)
        return event(process=glob, region=region_name, pages=pages, fraction=fraction, fill=fill)

    def thp(self, t: _Table, pages: int, fill: Fill) -> tuple[float, tuple[tuple[int, int], ...]]:
        """A region's `thp` as (share, folios): true (every PMD-aligned extent huge), false, the
        share 0..1 of them, or "capture" (fill = "capture" only: the large folios as captured)."""
        value = t.data.get("thp", False)
        if value == "capture":
            if fill.kind != "capture":
                raise t.error("thp", f'thp = "capture" takes the huge pages of a captured VMA; expected fill = '
                                     f'"capture", got fill = "{fill.kind}"')
            assert fill.capture is not None and fill.pid is not None and fill.vma is not None
            cap = self.captures[fill.capture]
            v = cap.vma_index(fill.pid, fill.vma)
            assert v is not None  # capture_fill found it
            return 0.0, tuple(cap.vma_folios(v))
        if isinstance(value, bool):
            share = 1.0 if value else 0.0
        elif isinstance(value, (int, float)) and 0 <= value <= 1:
            share = float(value)
        else:
            raise t.error("thp", "expected true, false or a number 0..1 (the share of its huge extents), or "
                                 f'"capture" with fill = "capture", got {_show(value)}')
        nr = self.page_size // 8  # PTRS_PER_PTE: the pages a PMD maps
        if share and pages < nr:
            raise t.error("thp", f"a transparent huge page is {nr} pages of {self.page_size} bytes; "
                                 f"the region has {pages}")
        return share, ()

    def which_pages(self, t: _Table, pages: int, region: str) -> tuple[int | tuple[int, int] | None, float | None]:
        if t.has("pages") and t.has("fraction"):
            raise t.error("fraction", "expected pages or fraction, not both")
        if t.has("fraction"):
            f = t.data["fraction"]
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not (0 < f <= 1):
                raise t.error("fraction", f"expected a number 0 < fraction <= 1, got {_show(f)}")
            return None, float(f)
        if not t.has("pages"):
            return None, None
        value = t.data["pages"]
        if isinstance(value, list):
            if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
                raise t.error("pages", f"expected [start, end) as two integers, got {value!r}")
            start, end = value
            if not 0 <= start < end <= pages:
                raise t.error("pages", f"expected [start, end) with 0 <= start < end <= {pages} (the pages of region "
                                       f"{region!r}), got {value!r}")
            return (start, end), None
        if isinstance(value, bool) or not isinstance(value, int):
            raise t.error("pages", f"expected an integer N (the first N pages) or [start, end), got {_show(value)}")
        if not 1 <= value <= pages:
            raise t.error("pages", f"expected 1 <= pages <= {pages} (the pages of region {region!r}), got {value}")
        return value, None

    # -- size ---------------------------------------------------------------------------------------
    def check_size(self, top: _Table, processes: tuple[Process, ...], events: tuple[Event, ...], pools: dict[str, Pool],
                   page_size: int) -> int:
        """The memory a simulation needs (ScenarioError when it exceeds a limit or this machine's memory)."""
        mapped = sum(sum(r.pages for r in regions) for regions in self.regions.values())
        pool_pages = sum(p.pages for p in pools.values())
        _check_pages(top, "process", mapped, pool_pages)
        fills = [r.fill for p in processes for r in p.regions] + [e.fill for e in events]
        files = {f.path: f.path.stat().st_size for f in fills if f.path is not None}  # fill = "file"
        total = (mapped + pool_pages) * page_size + sum(-(-size // page_size) * page_size for size in files.values())
        if total > MAX_BYTES:
            raise top.error("page_size", f"too large: {total / 2**30:.1f} GiB of page contents at page_size "
                                         f"{page_size}; expected at most {MAX_BYTES >> 30} GiB")
        # Pages of their own contents: random fills, and captured ones (one content per hash at most).
        random = sum(p.count * r.pages for p in processes for r in p.regions if r.fill.kind in ("random", "capture"))
        need = memory_needed(page_size, mapped, min(mapped, random + self.random_written), pool_pages,
                             list(files.values()))
        have = available_memory()
        if have is not None and need > have:
            raise ScenarioError(self.file, "", "", f"needs about {need / 1e9:.1f} GB of memory to run ({mapped:,} "
                                                   "pages mapped, "
                                f"page_size {page_size}), this machine has {have / 1e9:.1f} GB available")
        return need


# What a simulation holds, calibrated on peak RSS of `ksmtui run --full-scans 2` (docs/limits.md):
# every mapped page costs its page table entry, frame, rmap_item and tree node; every distinct
# content its bytes; a fill file is read whole once more while it is cut into pages.
MEMORY_BASE = 50_000_000  # the interpreter, numpy and the engine's code (measured: 30-36 MB)
MEMORY_PER_MAPPED_PAGE = 500  # measured: 330-400 B; the margin is for other builds of Python and numpy
MEMORY_PER_CONTENT = 64  # besides page_size: the bytes object and its references


def memory_needed(page_size: int, mapped: int, random: int, pool_pages: int, file_sizes: list[int]) -> int:
    """Bytes a simulation of this shape needs at its peak: `random` pages of unique contents
    (random fills and random writes), pool pages, fill files of these sizes."""
    file_pages = sum(-(-size // page_size) for size in file_sizes)
    contents = (random + pool_pages + file_pages) * (page_size + MEMORY_PER_CONTENT)
    return MEMORY_BASE + mapped * MEMORY_PER_MAPPED_PAGE + contents + max(file_sizes, default=0)


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_pages(table: _Table, key: str, mapped: int, pool_pages: int = 0) -> None:
    if mapped + pool_pages > MAX_PAGES:
        parts = [f"{mapped:,} pages mapped by processes (forked children included)"] if mapped else []
        parts += [f"{pool_pages:,} pool pages"] if pool_pages else []
        raise table.error(key, f"too large: {' plus '.join(parts)}; expected at most {MAX_PAGES:,} pages in all (16 "
                               "GiB of 4 KiB pages)")


# What cannot be a scenario is refused before the TOML parser sees it: tomllib recurses once per
# level of arrays and inline tables (RecursionError at ~1,000) and is quadratic in the depth of a
# dotted key (a 60 KB key 30,000 deep takes GBs), and a file is read whole.
MAX_FILE_BYTES = 4 << 20  # 30,000 regions take 1.2 MB
MAX_DEPTH = 20  # tables, arrays, inline tables and dotted-key parts, nested; a scenario needs 4
_TOKENS = re.compile(
    r'"""(?:\\.|[^\\])*?"""|\'\'\'.*?\'\'\'|"(?:\\.|[^"\\\n])*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}=,.\n]',
    re.S,
)


def _nesting_error(text: str) -> str | None:
    """Where the text nests deeper than MAX_DEPTH, or None. A lexer of just what nests: strings and
    comments are skipped, dots count only in keys (a header's, or left of `=`)."""
    stack: list[str] = []
    in_key, header, dots, line = True, False, 0, 1
    for m in _TOKENS.finditer(text):
        token = m.group()
        c = token[0]
        if c == "\n":
            line += 1
            if not stack:
                in_key, header, dots = True, False, 0
            continue
        if c in "\"'":
            line += token.count("\n")
            continue
        if c == "#":
            continue
        if header:
            if c == ".":
                dots += 1
            elif c == "]":
                header = False
        elif c == "." and in_key:
            dots += 1
        elif c == "=":
            in_key, dots = False, 0
        elif c == "[" and not stack and in_key:
            header, in_key, dots = True, False, 0
        elif c in "[{":
            stack.append(c)
            in_key, dots = c == "{", 0
        elif c in "]}" and stack:
            stack.pop()
        elif c == "," and stack and stack[-1] == "{":
            in_key, dots = True, 0
        if len(stack) + dots + 1 > MAX_DEPTH:
            return (f"line {line}: nested more than {MAX_DEPTH} deep (arrays, tables and dotted keys); "
                    f"expected a scenario (at most {MAX_DEPTH})")
    return None


def parse_scenario(text: str, file: str, base_dir: Path) -> Scenario:
    """A Scenario from TOML text; `file` names it in errors, `base_dir` resolves fill = "file" paths."""
    problem = _nesting_error(text)
    if problem:
        raise ScenarioError(file, "", "", f"not a scenario: {problem}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(file, "", "", f"not valid TOML: {e}") from None
    return _Loader(file, Path(base_dir)).scenario(data)


def builtin_scenarios() -> list[tuple[str, Path]]:
    """The built-in scenarios as (name, path), sorted by name."""
    return sorted((p.stem, p) for p in BUILTIN_DIR.glob("*.toml"))


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def open_regular(path: Path, limit: int | None = None) -> tuple[int, int]:
    """An open descriptor of a regular file and its size, or OSError / ValueError (the reason in
    words). Opened without blocking, so that a FIFO is refused instead of waited on; a file whose
    size its stat does not tell (/proc, /sys) is refused, as is one over `limit` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{_file_kind(st.st_mode)}; expected a regular file")
        if limit is not None and st.st_size > limit:
            raise ValueError(f"{st.st_size:,} bytes; expected at most {limit:,}")
        if st.st_size == 0 and os.pread(fd, 1, 0):
            raise ValueError("its size is not known (a file of /proc or /sys?); expected a regular file")
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def _read_scenario_file(path: Path, file: str) -> str:
    try:
        fd, size = open_regular(path, MAX_FILE_BYTES)
        try:
            data = os.read(fd, size + 1)  # one byte more: a file that grew is refused below
        finally:
            os.close(fd)
    except OSError as e:
        raise ScenarioError(file, "", "", f"cannot read: {e.strerror or e}") from None
    except ValueError as e:
        raise ScenarioError(file, "", "", f"cannot read: {e}") from None
    if len(data) > size:
        raise ScenarioError(file, "", "", "cannot read: the file changes while it is read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(file, "", "", f"not valid TOML: not UTF-8 text (byte {e.start})") from None


def load_scenario(arg: str | Path) -> Scenario:
    """A scenario from a .toml path or a built-in name (a file stem in scenarios/)."""
    path, file = Path(arg), str(arg)
    # os.path.isfile, not Path.is_file: it says False (not OSError) for a name over 255 bytes.
    if isinstance(arg, str) and not os.path.isfile(arg) and "/" not in arg and path.suffix != ".toml":
        builtins = dict(builtin_scenarios())
        if arg not in builtins:
            raise ScenarioError(file, "", "", f"no such file and no built-in scenario of that name (built-ins: "
                                              f"{', '.join(builtins)})")
        path = builtins[arg]
        file = str(path)
    text = _read_scenario_file(path, file)
    return replace(parse_scenario(text, file, path.parent), path=path.resolve())


# ---------------------------------------------------------------------------------------------------
# The scenario a capture makes: its text (`ksmtui capture --scenario` writes it) and its Scenario.

def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def process_name(comm: str, pid: int) -> str:
    clean = "".join(ch if ch.isalnum() or ch in "-_.:" else "_" for ch in comm).strip("_") or "proc"
    return f"{clean}-{pid}"


def scenario_toml(capture: Capture, capture_ref: str, name: str, merge_any: bool = False) -> str:
    """The scenario that runs a capture's workload: per process, one region per VMA KSM may merge
    (with merge_any, also the VMAs no one marked mergeable), holding exactly the pages ksmd would
    scan there, in the same order, with `fill = "capture"` (and `thp = "capture"` where some of
    them were subpages of large folios, so the model meets the same THPs). KSM zero pages mapped at capture time
    (their places are not visible in /proc) follow as one zero region. Knobs are the host's at
    capture time. capture_ref is the capture's path as the scenario should name it."""
    description = (f"Captured on Linux {capture.meta.get('kernel', '?')} at {capture.meta.get('captured_at', '?')}: "
                   "the shape of real memory (which pages are equal, which are zero), not its bytes.")
    lines = [
        f"name = {_toml_str(name)}",
        f"description = {_toml_str(description)}",
        f"page_size = {capture.page_size}",
        "",
        "[ksm]",
    ]
    knobs = capture.meta.get("knobs", {})
    for knob in ("pages_to_scan", "sleep_millisecs", "max_page_sharing", "use_zero_pages", "smart_scan"):
        if knob in knobs:
            lines.append(f"{knob} = {int(knobs[knob])}")
    wanted = CAPTURED_REASONS if merge_any else (MERGEABLE,)
    processes = 0
    for p, pid in enumerate(capture.proc_pid.tolist()):
        regions = []
        for v in np.flatnonzero(capture.vma_proc == p).tolist():
            if capture.vma_reason[v] not in wanted:
                continue
            pages = len(capture.vma_contents(v))
            if pages:
                regions.append((f"{int(capture.vma_start[v]):x}", pages, int(capture.vma_start[v]),
                                bool(capture.vma_folios(v))))
        zero = int(capture.proc_ksm_zero_pages[p])
        if not regions and not zero:
            continue
        processes += 1
        lines += ["", "[[process]]", f"name = {_toml_str(process_name(str(capture.proc_comm[p]), pid))}"]
        for rname, pages, start, huge in regions:
            lines += ["[[process.region]]", f"name = {_toml_str(rname)}", f"pages = {pages}",
                      'fill = "capture"', f"capture = {_toml_str(capture_ref)}", f"pid = {pid}",
                      f'vma = "0x{start:x}"'] + (['thp = "capture"'] if huge else [])
        if zero:
            lines += ["[[process.region]]", 'name = "ksm-zero-pages"', f"pages = {zero}", 'fill = "zero"']
    if not processes:
        raise CaptureError(f"{capture_ref}: no process has memory KSM may merge"
                           + ("" if merge_any else " (--merge-any counts memory no one marked mergeable)"))
    return "\n".join(lines) + "\n"


def scenario_from_capture(path: str | Path, merge_any: bool = False, name: str | None = None) -> Scenario:
    """The Scenario of a capture file (for `ksmtui sweep` and the like): the same scenario that
    `ksmtui capture --scenario` writes, without writing it."""
    path = Path(path).resolve()
    capture = load_capture(path)
    text = scenario_toml(capture, path.name, name or path.stem, merge_any)
    return parse_scenario(text, str(path), path.parent)


def parse_set_option(option: str) -> tuple[str, int | str]:
    """`--set KNOB=VALUE`: the knob and its value, validated like the same key in [ksm] or [engine]."""
    knob, sep, value = option.partition("=")
    knob = knob.strip()
    if not sep or not knob:
        raise ScenarioError("--set", "", "", f"expected KNOB=VALUE, got {option!r}")
    if knob not in ALL_KNOBS:
        raise ScenarioError("--set", "", knob, f"unknown knob; expected one of {', '.join(ALL_KNOBS)}")
    try:
        return knob, ALL_KNOBS[knob].parse(value)
    except KnobError as e:
        raise ScenarioError("--set", _knob_table(knob), knob, str(e)) from None


def _knob_table(knob: str) -> str:
    return "ksm" if knob in KSM_KNOBS else "engine"


@dataclass(frozen=True)
class RunConfig:
    """What the command line puts over a scenario file: its flow, seed, knobs and stop."""

    flow: str | None = None
    seed: int | None = None
    overrides: Mapping[str, int | str] = field(default_factory=dict)  # --set KNOB=VALUE, parsed
    full_scans: int | None = None
    after_ms: int | None = None
    costs: str | None = None  # --costs: "reference", a FILE, or None (this machine's when calibrated)


def apply_overrides(scenario: Scenario, flow: str | None = None, seed: int | None = None,
                    overrides: Mapping[str, int | str] | None = None) -> Scenario:
    """The scenario with command-line choices applied (--flow, --seed, --set), each validated."""
    ksm, engine = dict(scenario.ksm), dict(scenario.engine)
    if flow is not None:
        try:
            engine["flow"] = ENGINE_KNOBS["flow"].parse(flow)
        except KnobError as e:
            raise ScenarioError("--flow", "", "", str(e)) from None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise ScenarioError("--seed", "", "", f"expected an integer 0..{MAX_SEED}, got {seed!r}")
    overrides = overrides or {}
    for knob, value in overrides.items():
        if knob not in ALL_KNOBS:
            raise ScenarioError("--set", "", knob, f"unknown knob; expected one of {', '.join(ALL_KNOBS)}")
        try:
            (ksm if knob in KSM_KNOBS else engine)[knob] = ALL_KNOBS[knob].parse(value)
        except KnobError as e:
            raise ScenarioError("--set", _knob_table(knob), knob, str(e)) from None
    if ksm["advisor_mode"] == "scan-time":
        if "pages_to_scan" in overrides:
            raise ScenarioError("--set", "ksm", "pages_to_scan", 'the kernel refuses pages_to_scan while advisor_mode '
                                                                 'is "scan-time" (EINVAL)')
        if scenario.ksm["advisor_mode"] != "scan-time":
            ksm["pages_to_scan"] = ksm["advisor_min_pages_to_scan"]
    elif scenario.ksm["advisor_mode"] == "scan-time" and "pages_to_scan" not in overrides:
        ksm["pages_to_scan"] = KSM_KNOBS["pages_to_scan"].default  # selecting "none" restores 100
    nodes = engine["numa_nodes"]
    for p in scenario.processes:
        if p.node >= nodes:
            raise ScenarioError("--set", "engine", "numa_nodes", f"process {p.name!r} is on node {p.node}; expected "
                                                                 f"numa_nodes > {p.node}")
    for ev in scenario.events:
        if ev.to_node is not None and ev.to_node >= nodes:
            raise ScenarioError("--set", "engine", "numa_nodes", f"event[{ev.index}] migrates to node {ev.to_node}; "
                                                                 f"expected numa_nodes > {ev.to_node}")
    return replace(scenario, ksm=ksm, engine=engine, seed=scenario.seed if seed is None else seed)
