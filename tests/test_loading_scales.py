"""Loading and running are linear in forks: a plain process name is looked up, never matched
against every process (10,000 forks took 10,000² glob matches: 81 s to check)."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from types import SimpleNamespace

import engine.scenario
import engine.sim
from engine.scenario import parse_scenario
from engine.sim import Simulation

FORKS = 2000


def chain_of_forks(n: int) -> str:
    """p forks c0, c0 forks c1, ...: each child found by name, and its regions up a chain n long."""
    events = "".join(f'[[event]]\naction = "fork"\nat_ms = {i + 1}\nprocess = "{"p" if i == 0 else f"c{i - 1}"}"\n'
                     f'child = "c{i}"\n' for i in range(n))
    return 'name = "forks"\n[[process]]\nname = "p"\n[[process.region]]\nname = "r"\npages = 1\n' + events


def test_forks_by_name_match_no_glob(monkeypatch):
    calls = []
    counting = SimpleNamespace(fnmatchcase=lambda name, glob: calls.append(glob) or fnmatch.fnmatchcase(name, glob))
    for module in (engine.scenario, engine.sim):
        monkeypatch.setattr(module, "fnmatch", counting)
    scenario = parse_scenario(chain_of_forks(FORKS), "forks.toml", Path("."))
    assert len(scenario.events) == FORKS and calls == []
    sim = Simulation(scenario)
    sim.run(after_ms=FORKS + 100)
    assert calls == []
    assert sum(mm.alive for mm in sim.machine.mms) == FORKS + 1


def test_a_glob_still_matches_every_process_it_names():
    text = chain_of_forks(3) + '[[event]]\naction = "exit"\nat_ms = 10\nprocess = "c*"\n'
    sim = Simulation(parse_scenario(text, "forks.toml", Path(".")))
    sim.run(after_ms=20)
    assert [mm.name for mm in sim.machine.mms if mm.alive] == ["p"]


def test_find_vma_is_a_lookup_that_knows_the_gaps():
    text = 'name = "vmas"\n[[process]]\nname = "p"\n' + "".join(
        f'[[process.region]]\nname = "r{i}"\npages = {1 + i % 3}\n' for i in range(500))
    sim = Simulation(parse_scenario(text, "vmas.toml", Path(".")))
    mm, ps = sim.machine.mms[0], sim.machine.page_size
    for i, vma in enumerate(mm.vmas):
        assert mm.find_vma(vma.vm_start) is vma and mm.find_vma(vma.vm_end - 1) is vma
        assert mm.find_vma(vma.vm_end) is None  # the guard page between two regions
        assert mm.first_vma(vma.vm_start) == i and mm.first_vma(vma.vm_end) == i + 1
    assert mm.find_vma(mm.vmas[0].vm_start - ps) is None and mm.find_vma(mm.vmas[-1].vm_end + ps) is None
    sim.step_full_scan()
    sim.step_full_scan()
    assert sim.ksm.counters()["pages_scanned"] >= 2 * sum(1 + i % 3 for i in range(500))
