"""Scenario files (TOML): the data model. The loader and its validation live below the model.

The contract is ../shared/scenario-format.md. Every value here has been validated: the engine and
the real-kernel runner take a Scenario as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class ScenarioError(Exception):
    """A bad scenario or option: one line naming the file, the table, the key and what was expected."""

    def __init__(self, file: str, table: str, key: str, message: str):
        self.file, self.table, self.key, self.message = file, table, key, message
        where = ".".join(p for p in (table, key) if p)
        super().__init__(f"{file}: {where}: {message}" if where else f"{file}: {message}")


@dataclass(frozen=True)
class Fill:
    kind: str = "random"  # "random", "zero", "byte", "pool", "file"
    byte: int = 0  # kind == "byte"
    pool: str | None = None  # kind == "pool"
    order: str = "sequential"  # kind == "pool": "sequential" or "shuffled"
    offset: int = 0  # kind == "pool"
    path: Path | None = None  # kind == "file": resolved against the scenario's folder


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


@dataclass(frozen=True)
class Process:
    name: str
    regions: tuple[Region, ...]
    count: int = 1
    node: int = 0
    merge_any: bool = False

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
