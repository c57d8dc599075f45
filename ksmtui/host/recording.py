"""Host-mode recordings: JSON Lines, a header line then one HostSample per line (as `--json` prints
them, tracepoint events included).

    {"format": "ksmtui-host-recording", "version": 1, "kernel": "6.18.4", "interval": 1.0}
    {"time": 1795981557.119, "ksm": {...}, "knobs": {...}, "vmstat": {...}, "ksmd": {...},
     "processes": {...}, "trace": {...} | null, "trace_note": "..."}
    ...

A reader of version 1 accepts keys it does not know (kept, and written back as they were) and
refuses a newer version; a line that is not JSON or a sample missing what the UI needs is one error
naming the file and the line. A last line cut short (no end of line: the host was killed mid-write)
is refused by read_recording and left out, with a note, by read_for_replay.
"""

from __future__ import annotations

import errno
import json
import os
import zipfile
from typing import IO, Iterator

from ksmtui.host.sampler import HostSample

REPLAY_SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0)  # samples per recorded second


FORMAT = "ksmtui-host-recording"
VERSION = 1
_SAMPLE_KEYS = ("time", "ksm", "knobs", "vmstat", "ksmd", "processes", "trace", "trace_note")


class RecordingError(Exception):
    def __init__(self, path: str, line: int | None, what: str) -> None:
        super().__init__(f"{path}: {what}" if line is None else f"{path}: line {line}: {what}")


def header(interval: float) -> dict:
    return {"format": FORMAT, "version": VERSION, "kernel": os.uname().release, "interval": interval}


class Recorder:
    """Writes a recording as samples arrive; every line is flushed, so a recording cut short by a
    crash reads back up to its last whole line (and says where it was cut)."""

    def __init__(self, path: str, interval: float) -> None:
        self.path = path
        self._f: IO[str] = open(path, "w")
        self._write(header(interval))

    def _write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._f.flush()

    def add(self, sample: HostSample) -> None:
        self._write(sample.to_json())

    def close(self) -> None:
        self._f.close()


def _expect(cond: bool, path: str, line: int, what: str) -> None:
    if not cond:
        raise RecordingError(path, line, what)


def _int_map(obj, path: str, line: int, key: str, values=(int,)) -> None:
    _expect(isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, values) and not isinstance(v, bool)
                                          for k, v in obj.items()),
            path, line, f'"{key}": expected an object of names to {"numbers" if values == (int,) else "values"}')


def sample_from_json(obj, path: str, line: int) -> HostSample:
    _expect(isinstance(obj, dict), path, line, "expected a sample (a JSON object)")
    missing = [k for k in _SAMPLE_KEYS[:-1] if k not in obj]
    _expect(not missing, path, line, f"sample without {', '.join(repr(k) for k in missing)}")
    _expect(isinstance(obj["time"], (int, float)) and not isinstance(obj["time"], bool), path, line,
            f'"time": expected seconds since the epoch, got {obj["time"]!r}')
    _int_map(obj["ksm"], path, line, "ksm")
    _int_map(obj["knobs"], path, line, "knobs", (int, str))
    _int_map(obj["vmstat"], path, line, "vmstat")
    _int_map(obj["ksmd"], path, line, "ksmd")
    procs = obj["processes"]
    _expect(isinstance(procs, dict) and all(k.isdigit() and isinstance(v, dict) and isinstance(v.get("comm"), str)
                                            for k, v in procs.items()),
            path, line, '"processes": expected pids (as strings) to objects with a "comm"')
    for pid, row in procs.items():  # a row's unit (newer recordings; older ones have none)
        unit = row.get("unit", {})
        _expect(isinstance(unit, dict) and all(isinstance(v, str) for v in unit.values()), path, line,
                f'"processes.{pid}.unit": expected an object of names to strings')
    trace = obj["trace"]
    if trace is not None:
        _expect(isinstance(trace, dict), path, line, '"trace": expected an object or null')
        for key in ("counts", "merges", "errors"):
            _int_map(trace.get(key, {}), path, line, f"trace.{key}")
        lost = trace.get("lost", 0)
        _expect(isinstance(lost, int) and not isinstance(lost, bool) and lost >= 0, path, line,
                f'"trace.lost": expected a count, got {lost!r}')
        for key in ("passes", "advisor", "events"):
            _expect(isinstance(trace.get(key, []), list) and all(isinstance(x, list) for x in trace.get(key, [])),
                    path, line, f'"trace.{key}": expected a list of lists')
        for p in trace.get("passes", []):
            _expect(len(p) == 3 and all(isinstance(x, (int, float)) for x in p), path, line,
                    '"trace.passes": expected [seq, seconds, rmap_items] items')
        for a in trace.get("advisor", []):
            _expect(len(a) == 3 and all(isinstance(x, int) for x in a), path, line,
                    '"trace.advisor": expected [scan_time, pages_to_scan, cpu_percent] items')
    note = obj.get("trace_note", "")
    _expect(isinstance(note, str), path, line, '"trace_note": expected a string')
    extra = {k: v for k, v in obj.items() if k not in _SAMPLE_KEYS}
    return HostSample(time=float(obj["time"]), ksm=obj["ksm"], knobs=obj["knobs"], vmstat=obj["vmstat"],
                      ksmd=obj["ksmd"], processes=procs, trace=trace, trace_note=note, extra=extra)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        what = "no such file" if err.errno == errno.ENOENT else (err.strerror or str(err))
        raise RecordingError(path, None, what) from None
    if data.startswith(b"PK\x03\x04") and zipfile.is_zipfile(path):  # numpy's .npz is a zip archive
        raise RecordingError(path, None, "a capture (ksmtui capture, .npz), not a host recording: "
                                         f"`ksmtui estimate {path}` reads it")
    return data


def _lines(path: str, data: bytes, keep_cut: bool, cut: list[str]) -> Iterator[tuple[int, str]]:
    if not data:
        raise RecordingError(path, 1, "empty file, expected the recording's header")
    lines = data.split(b"\n")
    if lines[-1]:
        if not keep_cut or len(lines) < 3:  # the header or the only sample cut: nothing to replay
            raise RecordingError(path, len(lines), "cut short (no end of line): the recording is truncated")
        cut.append(f"line {len(lines)} cut short (the host stopped mid-write): "
                   f"the {len(lines) - 2} samples before it")
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


def read_recording(path: str) -> tuple[dict, list[HostSample]]:
    """The header and every sample, all checked; a RecordingError at the first fault."""
    head, samples, _ = _read_recording(path, keep_cut=False)
    return head, samples


def read_for_replay(path: str) -> tuple[dict, list[HostSample], str]:
    """As read_recording, but a last line cut short (a host killed mid-write) is left out: the
    samples before it, and a note saying so ("" for a whole recording)."""
    return _read_recording(path, keep_cut=True)


def _read_recording(path: str, keep_cut: bool) -> tuple[dict, list[HostSample], str]:
    cut: list[str] = []
    lines = _lines(path, _read(path), keep_cut, cut)
    n, text = next(lines)
    head = _json(path, n, text)
    _expect(isinstance(head, dict) and head.get("format") == FORMAT, path, n,
            f'expected the header {{"format": "{FORMAT}", "version": {VERSION}, ...}}: not a ksmtui host recording')
    version = head.get("version")
    _expect(isinstance(version, int) and 1 <= version, path, n, f"expected a format version >= 1, got {version!r}")
    _expect(version <= VERSION, path, n, f"format version {version} is newer than this ksmtui reads ({VERSION})")
    samples = [sample_from_json(_json(path, n, text), path, n) for n, text in lines]
    _expect(bool(samples), path, n + 1, "no samples after the header")
    for i in range(1, len(samples)):
        _expect(samples[i].time >= samples[i - 1].time, path, i + 2, "samples out of time order")
    return head, samples, cut[0] if cut else ""
