"""What registering one process with KSM would give (`ksmtui host --why PID`), for any pid, KSM
knows it or not: a capture of it and of the processes registered now (ksmtui.host.procmem), and
engine.estimate's settled state three ways: the process alone, the others alone, both together.

Registering means merge-any (prctl PR_SET_MEMORY_MERGE, systemd's MemoryKSM=): the only way to
register a running process from outside is to restart it so, and then every VMA KSM may merge is
scanned, not only the ones the program madvised. The others are taken as they are now (the VMAs
they madvised, or all of theirs with merge-any). Modelled: what ksmd settles to, not what it has.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

import numpy as np

from engine import capture as fmt
from engine.estimate import estimate
from engine.knobs import KSM_KNOBS, KnobError
from ksmtui.host import procmem


class NotInspectable(Exception):
    """The pid cannot be inspected: gone, a kernel thread, or its memory could not be read."""


@dataclass(frozen=True)
class Registering:
    pid: int
    comm: str
    unit: dict  # ksmtui.host.units.Unit.to_json of it
    registered: bool  # KSM knows it now (madvised, merge-any, or a VM_MERGEABLE VMA)
    others: list[int]  # the processes registered now, but it
    pages: int  # its pages ksmd would scan, registered with merge-any
    alone: int  # pages saved (pages_sharing + ksm_zero_pages) were it the only process registered
    others_saved: int  # pages the others save without it
    together: int  # pages saved with it and the others registered
    profit: int  # its ksm_process_profit (bytes) together with the others
    page_size: int
    knobs: dict
    notes: list[str]

    @property
    def gain(self) -> int:
        """Pages registering it would save on top of what the others save without it."""
        return self.together - self.others_saved

    def as_json(self) -> dict:
        return {"pid": self.pid, "comm": self.comm, "unit": self.unit, "registered": self.registered,
                "others": self.others, "pages": self.pages, "alone": self.alone, "others_saved": self.others_saved,
                "together": self.together, "gain": self.gain, "ksm_process_profit": self.profit,
                "page_size": self.page_size, "notes": self.notes}


def knobs_of(cap: fmt.Capture) -> dict:
    """The host's knobs at capture time, parsed (the model's defaults for what the kernel lacks)."""
    knobs = {k: v.default for k, v in KSM_KNOBS.items()}
    for k, v in cap.meta.get("knobs", {}).items():
        if k in KSM_KNOBS:
            try:
                knobs[k] = KSM_KNOBS[k].parse(v)
            except KnobError:
                pass  # a value this model does not know: its default
    return knobs


def _saved(cap: fmt.Capture, reasons: np.ndarray, knobs: dict):
    return estimate(replace(cap, vma_reason=reasons), knobs)


def inspect(pid: int) -> Registering:
    """Capture the pid and the processes registered now, and estimate (as root: other users'
    memory is not readable otherwise)."""
    if not os.path.exists(f"/proc/{pid}"):
        raise NotInspectable(f"pid {pid}: no such process")
    if procmem.is_kernel_thread(pid):
        raise NotInspectable(f"pid {pid} is a kernel thread: it has no user memory KSM could merge")
    registered = procmem.mergeable_pids()
    others = [p for p in registered if p != pid]
    try:
        # the others first: a process registered now joins the end of ksmd's list
        cap, notes = procmem.capture(others + [pid], explicit=False, show_progress=False,
                                     key=os.urandom(fmt.KEY_BYTES))
    except procmem.CaptureDenied as err:
        raise NotInspectable(f"pid {pid}: {err}") from None
    index = np.flatnonzero(cap.proc_pid == pid)
    if not len(index):
        why = next((n for n in notes if f"pid {pid}" in n), "its memory could not be read (root reads all)")
        raise NotInspectable(why if why.startswith("pid") else f"pid {pid}: {why}")
    me = int(index[0])
    mine = cap.vma_proc == me
    scannable = np.isin(cap.vma_reason, fmt.CAPTURED_REASONS)
    out_of_scope = np.uint8(fmt.NOT_MADVISED)
    merge_any = np.where(mine & scannable, np.uint8(fmt.MERGEABLE), cap.vma_reason)  # it registered with merge-any
    knobs = knobs_of(cap)
    together = _saved(cap, merge_any, knobs)
    alone = _saved(cap, np.where(~mine & (merge_any == fmt.MERGEABLE), out_of_scope, merge_any), knobs)
    without = _saved(cap, np.where(mine & scannable, out_of_scope, cap.vma_reason), knobs)
    unit = json.loads(str(cap.proc_unit[me]))
    return Registering(
        pid=pid, comm=str(cap.proc_comm[me]), unit=unit, registered=pid in registered, others=others,
        pages=alone.pages, alone=alone.saved_pages, others_saved=without.saved_pages, together=together.saved_pages,
        profit=int(together.processes[pid]["ksm_process_profit"]), page_size=cap.page_size, knobs=knobs,
        notes=notes)
