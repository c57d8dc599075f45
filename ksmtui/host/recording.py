"""Host-mode recordings: JSON Lines, a header line then one HostSample per line (as `--json` prints
them, tracepoint events included).

    {"format": "ksmtui-host-recording", "version": 1, "kernel": "6.18.4", "interval": 1.0}
    {"time": 1795981557.119, "ksm": {...}, "knobs": {...}, "vmstat": {...}, "ksmd": {...},
     "processes": {...}, "trace": {...} | null, "trace_note": "...", "meminfo": {"MemTotal": kB, ...}}
    ...

A reader of version 1 accepts keys it does not know (kept, and written back as they were) and
refuses a newer version; a line that is not JSON or a sample missing what the UI needs, or holding
what it cannot draw (numbers beyond 64 bits, a time of inf), is one error naming the file and the
line. A last line cut short (the recorder killed mid-write) is left out with a note. "meminfo"
(/proc/meminfo's MemTotal, MemFree, MemAvailable, Buffers, Cached in kB) is in newer recordings
only; the header's "page_size" too (4096 is taken without it).

A recording's meminfo is a host's memory over time: `memory_timeline` makes it a scenario's
[memory] (engine/memory.py), to replay that afternoon under a controller of the model.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from dataclasses import replace
from typing import IO, Iterator, TypeGuard

from engine.capture import memory_room
from ksmtui.host.sampler import HostSample

REPLAY_SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0)  # samples per recorded second


FORMAT = "ksmtui-host-recording"
VERSION = 1
_SAMPLE_KEYS = ("time", "ksm", "knobs", "vmstat", "ksmd", "processes", "trace", "trace_note", "meminfo")
_REQUIRED = _SAMPLE_KEYS[:7]


class RecordingError(Exception):
    def __init__(self, path: str, line: int | None, what: str) -> None:
        super().__init__(f"{path}: {what}" if line is None else f"{path}: line {line}: {what}")


def header(interval: float) -> dict:
    return {"format": FORMAT, "version": VERSION, "kernel": os.uname().release, "interval": interval,
            "page_size": os.sysconf("SC_PAGE_SIZE")}


class Recorder:
    """Writes a recording as samples arrive; every line is flushed, so a recording cut short by a
    crash reads back up to its last whole line (and says where it was cut). A write that fails
    (a full disk) stops the recording, keeps what was written, and says why in `error`: sampling
    goes on."""

    option = "--record"
    holds = "the recording holds the {n} sample{s} before"

    def __init__(self, path: str, interval: float) -> None:
        self.path = path
        self.error: str | None = None
        self._f: IO[str] | None = open(path, "w")
        self._write(header(interval))
        if self.error is not None:
            raise OSError(self.error)

    def _write(self, obj: dict) -> None:
        if self._f is None:
            return
        try:
            self._f.write(json.dumps(obj, separators=(",", ":")) + "\n")
            self._f.flush()
        except OSError as err:
            self.error = err.strerror or str(err)
            self.close()

    def add(self, sample: HostSample) -> None:
        self._write(sample.to_json())

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError as err:  # the last flush, on a full disk
                self.error = self.error or err.strerror or str(err)


def _expect(cond: bool, path: str, line: int, what: str) -> None:
    if not cond:
        raise RecordingError(path, line, what)


# Counters are u64 and ksm_process_profit an s64: anything beyond is no kernel's number (and a
# 400-digit one would overflow the UI's floats)
INT_LOW, INT_HIGH = -(2**63), 2**64 - 1
_PID = re.compile(r"[0-9]{1,10}")  # str.isdigit() takes "²" too


def _is_int(v) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool) and INT_LOW <= v <= INT_HIGH


def _is_number(v) -> bool:
    return _is_int(v) or isinstance(v, float) and math.isfinite(v)


def _int_map(obj, path: str, line: int, key: str, strings: bool = False) -> None:
    _expect(isinstance(obj, dict) and all(isinstance(k, str) and (_is_int(v) or strings and isinstance(v, str))
                                          for k, v in obj.items()),
            path, line, f'"{key}": expected an object of names to {"values" if strings else "integers"} '
                        f"(within 64 bits)")


def _show(v) -> str:
    return repr(v)[:40]


def sample_from_json(obj, path: str, line: int) -> HostSample:
    _expect(isinstance(obj, dict), path, line, "expected a sample (a JSON object)")
    missing = [k for k in _REQUIRED if k not in obj]
    _expect(not missing, path, line, f"sample without {', '.join(repr(k) for k in missing)}")
    t = obj["time"]
    _expect(_is_number(t) and 0 <= t < 1e11, path, line, f'"time": expected seconds since the epoch, got {_show(t)}')
    _int_map(obj["ksm"], path, line, "ksm")
    _int_map(obj["knobs"], path, line, "knobs", strings=True)
    _int_map(obj["vmstat"], path, line, "vmstat")
    _int_map(obj["ksmd"], path, line, "ksmd")
    procs = obj["processes"]
    _expect(isinstance(procs, dict) and all(_PID.fullmatch(k) and isinstance(v, dict) and isinstance(v.get("comm"), str)
                                            for k, v in procs.items()),
            path, line, '"processes": expected pids (as strings of digits) to objects with a "comm"')
    for pid, row in procs.items():
        for key, value in row.items():
            if key == "unit":  # a row's unit (newer recordings; older ones have none)
                _expect(isinstance(value, dict) and all(isinstance(v, str) for v in value.values()), path, line,
                        f'"processes.{pid}.unit": expected an object of names to strings')
            else:  # comm, error, ksm_merge_any "yes"/"no", the ksm_stat counts
                _expect(_is_int(value) or isinstance(value, str), path, line,
                        f'"processes.{pid}.{key}": expected an integer (within 64 bits) or a string, got '
                        f'{_show(value)}')
    trace = obj["trace"]
    if trace is not None:
        _expect(isinstance(trace, dict), path, line, '"trace": expected an object or null')
        for key in ("counts", "merges", "errors"):
            _int_map(trace.get(key, {}), path, line, f"trace.{key}")
        lost = trace.get("lost", 0)
        _expect(_is_int(lost) and lost >= 0, path, line, f'"trace.lost": expected a count, got {_show(lost)}')
        for key in ("passes", "advisor", "events"):
            _expect(isinstance(trace.get(key, []), list) and all(isinstance(x, list) for x in trace.get(key, [])),
                    path, line, f'"trace.{key}": expected a list of lists')
        for p in trace.get("passes", []):
            _expect(len(p) == 3 and all(_is_number(x) for x in p), path, line,
                    '"trace.passes": expected [seq, seconds, rmap_items] items')
        for a in trace.get("advisor", []):
            _expect(len(a) == 3 and all(_is_int(x) for x in a), path, line,
                    '"trace.advisor": expected [scan_time, pages_to_scan, cpu_percent] items')
        for e in trace.get("events", []):
            _expect(len(e) == 3 and _is_number(e[0]) and isinstance(e[1], str) and isinstance(e[2], str), path, line,
                    '"trace.events": expected [seconds, event, text] items')
    note = obj.get("trace_note", "")
    _expect(isinstance(note, str), path, line, '"trace_note": expected a string')
    meminfo = obj.get("meminfo", {})
    _int_map(meminfo, path, line, "meminfo")
    _expect(all(0 <= v < 2**50 for v in meminfo.values()), path, line,
            '"meminfo": expected kB from 0 to 2**50 (/proc/meminfo)')
    extra = {k: v for k, v in obj.items() if k not in _SAMPLE_KEYS}
    return HostSample(time=float(t), ksm=obj["ksm"], knobs=obj["knobs"], vmstat=obj["vmstat"],
                      ksmd=obj["ksmd"], processes=procs, trace=trace, trace_note=note, meminfo=meminfo, extra=extra)


# What a parsed recording holds per byte of its text (measured: tests/data/host-merge.jsonl, 12
# samples, 19.7 KB of text, peaks at 134 KB while parsed (tracemalloc): 6.8 B a byte)
MEMORY_PER_BYTE = 16


def _lines(path: str, notes: list[str]) -> Iterator[tuple[int, str]]:
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise RecordingError(path, None, "not a regular file, expected a recording (ksmtui host --record FILE)")
            room = memory_room()
            if room is not None and st.st_size * MEMORY_PER_BYTE > room:
                raise RecordingError(path, None, f"too large for this machine: {st.st_size / 2**20:,.0f} MiB of "
                                              f"samples need about {st.st_size * MEMORY_PER_BYTE / 2**30:,.1f} GiB "
                                              f"to replay, {room / 2**30:,.1f} GiB available")
            data = f.read(st.st_size)  # what it held when opened: a recording still growing is read to there
    except OSError as err:
        what = "no such file" if err.errno == errno.ENOENT else (err.strerror or str(err))
        raise RecordingError(path, None, what) from None
    if data.startswith(b"PK\x03\x04"):  # numpy's .npz is a zip archive
        raise RecordingError(path, None, "a capture (ksmtui capture, .npz), not a host recording: "
                                         f"`ksmtui estimate {path}` reads it")
    if not data:
        raise RecordingError(path, 1, "empty file, expected the recording's header")
    lines = data.split(b"\n")
    if lines[-1]:  # killed while writing its last line: what came before is whole
        notes.append(f"{path}: line {len(lines)} was cut short (the recording was stopped while writing it); "
                     f"replaying the {len(lines) - 2:,} samples before it")
    for n, raw in enumerate(lines[:-1], 1):
        try:
            yield n, raw.decode()
        except UnicodeDecodeError:
            raise RecordingError(path, n, "not UTF-8 text") from None


def _json(path: str, n: int, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordingError(path, n, f"not JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise RecordingError(path, n, "JSON nested too deeply") from None
    except ValueError as err:  # an integer of more digits than Python converts
        raise RecordingError(path, n, f"not JSON this reads ({str(err)[:80]})") from None


def read_recording(path: str, notes: list[str] | None = None) -> tuple[dict, list[HostSample]]:
    """The header and every sample, all checked; a RecordingError at the first fault. A last line
    cut short is left out, with a note in `notes`."""
    lines = _lines(path, notes if notes is not None else [])
    n, text = next(lines, (1, ""))
    head = _json(path, n, text) if text else None
    _expect(isinstance(head, dict) and head.get("format") == FORMAT, path, n,
            f'expected the header {{"format": "{FORMAT}", "version": {VERSION}, ...}}: not a ksmtui host recording')
    assert isinstance(head, dict)
    version = head.get("version")
    _expect(_is_int(version) and version >= 1, path, n, f"expected a format version >= 1, got {_show(version)}")
    assert isinstance(version, int)
    _expect(version <= VERSION, path, n, f"format version {version} is newer than this ksmtui reads ({VERSION})")
    interval = head.get("interval", 1.0)
    _expect(_is_number(interval) and 0 < interval <= 86400, path, n,
            f'"interval": expected seconds between samples (> 0), got {_show(interval)}')
    _expect(isinstance(head.get("kernel", ""), str), path, n, '"kernel": expected a string')
    page_size = head.get("page_size", 4096)
    _expect(_is_int(page_size) and page_size in (4096, 16384, 65536), path, n,
            f'"page_size": expected 4096, 16384 or 65536, got {_show(page_size)}')
    samples = [sample_from_json(_json(path, n, text), path, n) for n, text in lines]
    _expect(bool(samples), path, n + 1, "no samples after the header")
    for i in range(1, len(samples)):
        _expect(samples[i].time >= samples[i - 1].time, path, i + 2, "samples out of time order")
    return head, samples


class Sinks(list):
    """Where every sample goes besides the UI or stdout: the recording, the exporter."""

    def add(self, sample: HostSample) -> None:
        for sink in self:
            sink.add(sample)

    def close(self) -> None:
        for sink in self:
            sink.close()

    @property
    def failed(self):
        """The file sink (--record, --csv) whose write failed (a full disk), if one did: it stops,
        sampling goes on without it."""
        return next((s for s in self if getattr(s, "option", None) and s.error is not None), None)


def memory_timeline(path: str, notes: list[str] | None = None):
    """The recording's /proc/meminfo as a scenario's [memory] (engine.memory.MemInfo): MemTotal of
    the first sample, a point per sample whose values changed, at its time since the first one.

    What the recorded host's KSM saved then (pages_sharing + ksm_zero_pages) is taken off MemFree and
    MemAvailable: a point is the memory as it would have been without KSM, and the model's own saving
    goes on top (engine/memory.py), so a replay under another controller does not count that
    afternoon's saving twice."""
    from engine.memory import MemInfo, MemPoint

    head, samples = read_recording(path, notes)
    page_kb = head.get("page_size", 4096) // 1024
    with_mem = [s for s in samples if all(k in s.meminfo for k in ("MemTotal", "MemFree", "MemAvailable"))]
    if not with_mem:
        raise RecordingError(path, None, "no sample holds /proc/meminfo (MemTotal, MemFree, MemAvailable): "
                                         "recorded by a ksmtui before it recorded them")
    total = with_mem[0].meminfo["MemTotal"]
    if total < 1:
        raise RecordingError(path, None, '"meminfo": expected a MemTotal >= 1 kB, got 0')
    t0 = with_mem[0].time
    points: list[MemPoint] = []
    for s in with_mem:
        m = s.meminfo
        saved = (s.ksm.get("pages_sharing", 0) + s.ksm.get("ksm_zero_pages", 0)) * page_kb

        def kb(value: int) -> int:
            return min(max(value, 0), total)

        p = MemPoint(round((s.time - t0) * 1000), kb(m["MemFree"] - saved), kb(m.get("Buffers", 0)),
                     kb(m.get("Cached", 0)), kb(m["MemAvailable"] - saved))
        if points and p.at_ms == points[-1].at_ms:  # two samples within a ms: the later one
            points[-1] = p
        elif not points or replace(p, at_ms=0) != replace(points[-1], at_ms=0):  # only changes
            points.append(p)
    return MemInfo(total, tuple(points))
