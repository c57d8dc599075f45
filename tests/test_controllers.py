"""Controllers (engine/controllers.py): KubeVirt's rules from ksm_test.go's own cases, ksmtuned's
arithmetic, the closed loop in the model, and the real ksmtuned against the real kernel."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.controllers import ControllerError, Ksmtuned, Kubevirt, control_loop, make_controller
from engine.scenario import ScenarioError, parse_scenario
from engine.sim import Simulation

# ksm_test.go: "Arbitrary values, with memAvailablePressure below 20% of memTotal"
MEM_TOTAL = 65680332
AVAILABLE_PRESSURE = 5183928
AVAILABLE_NO_PRESSURE = 39207804


class FakeHost:
    """A node as ksm_test.go fakes it: run, pages_to_scan and sleep_millisecs files, a meminfo."""

    def __init__(self, available: int, run: int = 0):
        self.knobs = {"run": run, "sleep_millisecs": 20, "pages_to_scan": 100}
        self.available = available
        self.writes: list[tuple[str, int | str]] = []
        self.notes: list[str] = []

    def meminfo(self):
        return {"MemTotal": MEM_TOTAL, "MemAvailable": self.available, "MemFree": self.available,
                "Buffers": 0, "Cached": 0}

    def processes(self):
        return []

    def read(self, knob):
        return self.knobs[knob]

    def write(self, knob, value):
        self.knobs[knob] = value
        self.writes.append((knob, value))

    def note(self, text):
        self.notes.append(text)


def spin(ctl, host, times=1):
    for _ in range(times):
        ctl.tick(host)


def test_kubevirt_adapts_to_memory_pressure():
    """ksm_test.go "should adapt to memory pressure", step by step."""
    host = FakeHost(AVAILABLE_NO_PRESSURE)
    ctl = Kubevirt({})
    spin(ctl, host, 2)  # "running a first HandleKSMUpdate and expecting no change"
    assert host.knobs["run"] == 0 and host.writes[-1] == ("run", 0)
    host.available = AVAILABLE_PRESSURE  # "inducing memory pressure and expecting KSM to start running"
    spin(ctl, host)
    sleep = 100 * (16 * 1024 * 1024) // (MEM_TOTAL - AVAILABLE_PRESSURE)
    assert host.knobs == {"run": 1, "pages_to_scan": 100, "sleep_millisecs": sleep}
    spin(ctl, host)
    assert host.knobs["pages_to_scan"] == 100 + 300
    spin(ctl, host, 3)
    assert host.knobs["pages_to_scan"] == 1250
    host.available = AVAILABLE_NO_PRESSURE  # "cancelling memory pressure ..."
    spin(ctl, host)
    assert host.knobs == {"run": 1, "pages_to_scan": 1250 - 50,
                          "sleep_millisecs": 100 * (16 * 1024 * 1024) // (MEM_TOTAL - AVAILABLE_NO_PRESSURE)}
    spin(ctl, host, 15)
    assert host.knobs["pages_to_scan"] == 1250 - 16 * 50 and host.knobs["run"] == 1
    spin(ctl, host, 30)  # "expecting KSM to stop running after enough time without memory pressure"
    assert host.knobs["run"] == 0
    assert host.writes[-1] == ("run", 0) and host.writes[-2] == ("run", 0)  # stopped: run=0 alone


def test_kubevirt_override_values():
    """ksm_test.go "should use override values if provided": out-of-bound overrides fall back as
    boundCheck says (decay 45 -> -50; init 1011 above max -> the lower bound, min)."""
    settings = {"pages_boost": "123", "pages_decay": "45", "npages_min": "166", "npages_max": "789",
                "npages_init": "1011", "sleep_ms_baseline": "1213", "free_percent": "1.0"}
    host = FakeHost(AVAILABLE_NO_PRESSURE)
    ctl = Kubevirt(settings)
    assert (ctl.pages_decay, ctl.npages_init) == (-50, 166)
    spin(ctl, host)
    assert host.knobs == {"run": 1, "pages_to_scan": 166,
                          "sleep_millisecs": 1213 * (16 * 1024 * 1024) // (MEM_TOTAL - AVAILABLE_NO_PRESSURE)}
    spin(ctl, host)
    assert host.knobs["pages_to_scan"] == 166 + 123
    spin(ctl, host, 5)
    assert host.knobs["pages_to_scan"] == 789
    ctl = Kubevirt({**settings, "free_percent": "0.1"})  # the annotation patched to 0.1
    spin(ctl, host)
    assert host.knobs["pages_to_scan"] == 789 - 50 and host.knobs["run"] == 1
    spin(ctl, host, 16)
    assert host.knobs["run"] == 0


def test_ksmtuned_arithmetic_and_branches():
    """/usr/sbin/ksmtuned: sleep = KSM_SLEEP_MSEC x 16 GiB / total in kB, integer, at least 10;
    thres = total x COEF / 100, at least CONST; boost or decay within MIN..MAX."""
    host = FakeHost(0)
    ctl = Ksmtuned({"KSM_SLEEP_MSEC": "100", "KSM_THRES_COEF": "20"})
    ctl.start(host)
    assert ctl.sleep == 100 * 16 * 1024 * 1024 // MEM_TOTAL == 25
    assert ctl.thres == MEM_TOTAL * 20 // 100
    host.available = 0  # free 0 < thres: boost from 0
    ctl.tick(host)
    assert host.writes == [("pages_to_scan", 300), ("sleep_millisecs", 25), ("run", 1)]
    ctl.tick(host)
    ctl.tick(host)
    ctl.tick(host)
    ctl.tick(host)
    assert host.knobs["pages_to_scan"] == 1250  # KSM_NPAGES_MAX
    host.available = MEM_TOTAL  # free > thres and nothing committed: stop
    host.writes.clear()
    ctl.tick(host)
    assert host.writes == [("run", 0)]
    small = Ksmtuned({})
    small.start(FakeHost(0))
    assert small.sleep == 10  # 10 x 16 GiB / 64 GiB = 2, raised to 10


def test_ksmtuned_first_start_decays_to_min():
    """npages starts at 0: a first start with free >= thres decays to KSM_NPAGES_MIN."""
    host = FakeHost(MEM_TOTAL)
    host.processes = lambda: [("qemu-system-x86_64 -enable-kvm -m 64G", MEM_TOTAL)]  # type: ignore[method-assign]
    ctl = Ksmtuned({})
    ctl.start(host)
    ctl.tick(host)
    assert host.writes[0] == ("pages_to_scan", 64)


def test_controller_settings_refused():
    with pytest.raises(ControllerError, match="KSM_NPAGES_BOOST: expected an integer"):
        make_controller("ksmtuned", {"KSM_NPAGES_BOOST": "1.5"})
    with pytest.raises(ControllerError, match="unknown ksmtuned setting 'KSM_FOO'"):
        make_controller("ksmtuned", {"KSM_FOO": "1"})
    with pytest.raises(ControllerError, match="unknown controller 'mom'"):
        make_controller("mom")


SCENARIO = """
name = "loop"
[memory]
mem_total_kb = 1048576
mem_free_kb = 100000
[[memory.point]]
at_ms = 5000
mem_free_kb = 900000
[[pool]]
name = "img"
pages = 2000
[[process]]
name = "vm"
count = 2
cmdline = "qemu-system-x86_64 -enable-kvm"
[[process.region]]
name = "os"
pages = 2000
fill = "pool"
pool = "img"
[stop]
after_ms = 8000
"""


def run_loop(name, settings, text=SCENARIO):
    scenario = parse_scenario(text, "loop.toml", Path("."))
    loop = control_loop(scenario, name, settings)
    sim = Simulation(scenario, control=loop)
    sim.run()
    return sim, loop


def test_closed_loop_saving_feeds_free_memory():
    sim, loop = run_loop("ksmtuned", {"KSM_MONITOR_INTERVAL": "1"})
    # merging 2000 duplicated pages frees 2000 x 4 KiB: MemFree rises by it
    assert loop.samples[-1].saving_kb == 2000 * 4
    assert loop.samples[-1].mem_free_kb == 900000 + 8000
    # under pressure: boosts at 1 s .. 4 s, each at its time; at 5 s free is above thres: stop
    starts = [w.value for w in loop.writes if w.knob == "pages_to_scan"]
    assert starts == [300, 600, 900, 1200]
    assert [w.at_ms for w in loop.writes if w.knob == "run"][:5] == [1000, 2000, 3000, 4000, 5000]
    assert sim.ksm.knobs["run"] == 0
    again, loop2 = run_loop("ksmtuned", {"KSM_MONITOR_INTERVAL": "1"})
    assert [w.as_dict() for w in loop2.writes] == [w.as_dict() for w in loop.writes]  # deterministic


def test_refusals_are_the_kernels():
    """ksmtuned writes pages_to_scan while the scan-time advisor owns it: EINVAL, noted."""
    text = SCENARIO.replace("[stop]", '[ksm]\nadvisor_mode = "scan-time"\n[stop]')
    sim, loop = run_loop("ksmtuned", {"KSM_MONITOR_INTERVAL": "1"}, text)
    refused = [w for w in loop.writes if w.error]
    assert refused and refused[0].knob == "pages_to_scan"
    assert any("ksmtuned: write pages_to_scan=300" in n for n in sim.notes)


def test_advisor_and_none():
    sim, loop = run_loop("advisor", {"advisor_max_cpu": "20"})
    assert [(w.knob, w.value) for w in loop.writes] == [("advisor_max_cpu", "20"), ("advisor_mode", "scan-time")]
    assert sim.ksm.knobs["advisor_mode"] == "scan-time"
    sim, loop = run_loop("none", {})
    assert loop.writes == [] and loop.samples[-1].saving_kb == 8000


def test_memory_table_errors():
    bad = SCENARIO.replace("mem_free_kb = 900000", "mem_free_kb = 2000000")
    with pytest.raises(ScenarioError, match=r"memory.point\[0\].mem_free_kb: expected an integer 0..1048576"):
        parse_scenario(bad, "loop.toml", Path("."))
    bad = SCENARIO.replace("at_ms = 5000", "at_ms = 5000\nrss_extra_kb = { nobody = 1 }")
    with pytest.raises(ScenarioError, match="no process 'nobody'"):
        parse_scenario(bad, "loop.toml", Path("."))


@pytest.mark.kernel
def test_real_ksmtuned_matches_the_model(kernel):
    """The real ksmtuned script, on the real kernel, makes the model's knob writes, decision for
    decision, on the inputs it read (ksmtui/kernel/ksmtuned.py)."""
    from ksmtui.kernel import ksmtuned

    reason = ksmtuned.unavailable_reason()
    if reason:
        pytest.skip(reason)
    real = ksmtuned.run_real(interval_s=0.25, adjusts_per_phase=4)
    assert len(real.reads) >= 12, real.reads
    assert all(error is None for _, _, error in real.writes)
    kinds = {v for k, v, _ in real.writes if k == "run"}
    assert kinds == {0, 1}, real.writes  # the idle phases stop KSM, the others start it
    assert ksmtuned.model_writes(real) == real.writes


# ------------------------------------------------------- a host recording's memory, replayed --

def recorded(path: Path, points: list[tuple[float, int, int]], meminfo: bool = True) -> Path:
    """A recording whose samples (at seconds t, MemFree kB, pages_sharing) hold a 1 GiB host's
    meminfo, written by the recorder `ksmtui host --record` uses."""
    from ksmtui.host.recording import Recorder
    from ksmtui.host.sampler import HostSample

    rec = Recorder(str(path), 1.0)
    for t, free, sharing in points:
        mem = {"MemTotal": 1048576, "MemFree": free, "MemAvailable": free, "Buffers": 0, "Cached": 0}
        rec.add(HostSample(time=t, ksm={"pages_sharing": sharing, "ksm_zero_pages": 0}, knobs={"run": 1},
                           vmstat={}, ksmd={}, processes={}, trace=None, meminfo=mem if meminfo else {}))
    rec.close()
    return path


def test_a_recordings_memory_replays_under_a_controller_as_the_same_memory_table(tmp_path, capsys):
    """The scenario's [memory] (100000 kB free, 900000 from 5 s) recorded on a host whose KSM saved
    50 pages then: the replay takes that saving off and makes the same decisions."""
    from ksmtui.cli import main

    rec = recorded(tmp_path / "afternoon.jsonl", [(1000.0 + s, 100000 + 200, 50) for s in range(5)]
                   + [(1005.0, 900000 + 200, 50), (1006.0, 900000 + 200, 50)])
    with_table = tmp_path / "table.toml"
    with_table.write_text(SCENARIO)
    without = tmp_path / "bare.toml"
    without.write_text(SCENARIO.replace(SCENARIO[SCENARIO.index("[memory]"):SCENARIO.index("[[pool]]")], ""))
    args = ["--controller", "ksmtuned", "--controller-set", "KSM_MONITOR_INTERVAL=1", "--json"]
    assert main(["run", str(with_table), *args]) == 0
    expected = json.loads(capsys.readouterr().out)["controller"]
    assert main(["run", str(without), *args, "--memory-from", str(rec)]) == 0
    replayed = json.loads(capsys.readouterr().out)["controller"]
    assert replayed == expected
    assert [w["value"] for w in replayed["writes"] if w["knob"] == "pages_to_scan"] == [300, 600, 900, 1200]
    from ksmtui.host.recording import memory_timeline
    info = memory_timeline(str(rec))
    assert [(p.at_ms, p.mem_free_kb) for p in info.points] == [(0, 100000), (5000, 900000)]  # changes only


@pytest.mark.parametrize("old,new,message", [
    (None, None, "no sample holds /proc/meminfo (MemTotal, MemFree, MemAvailable): recorded by a ksmtui before"),
    ('"MemFree":100200', '"MemFree":"many"', 'line 2: "meminfo": expected an object of names to integers'),
    ('"MemFree":100200', '"MemFree":-1', 'line 2: "meminfo": expected kB from 0 to 2**50'),
    ('"MemFree":100200', '"MemFree":1e400', 'line 2: "meminfo": expected an object of names to integers'),
    ('"MemFree":100200', '"MemFree":10000000000000000', 'line 2: "meminfo": expected kB from 0 to 2**50'),
    ('"meminfo":{', '"meminfo":[{', "line 2: not JSON"),
    ('"page_size":4096', '"page_size":3', 'line 1: "page_size": expected 4096, 16384 or 65536'),
])
def test_a_bad_memory_recording_is_one_line(tmp_path, capsys, old, new, message):
    from ksmtui.cli import main

    rec = recorded(tmp_path / "r.jsonl", [(1.0, 100200, 50), (2.0, 100200, 50)], meminfo=old is not None)
    if old is not None:
        text = rec.read_text()
        assert old in text
        rec.write_text(text.replace(old, new, 1))
    bare = tmp_path / "bare.toml"
    bare.write_text(SCENARIO.replace(SCENARIO[SCENARIO.index("[memory]"):SCENARIO.index("[[pool]]")], ""))
    assert main(["run", str(bare), "--controller", "ksmtuned", "--memory-from", str(rec)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"ksmtui run: error: --memory-from {rec}: {message}"), err


def test_memory_from_needs_a_controller(tmp_path, capsys):
    from ksmtui.cli import main

    rec = recorded(tmp_path / "r.jsonl", [(1.0, 100200, 50)])
    assert main(["run", "default", "--memory-from", str(rec)]) == 2
    assert "--memory-from: only a controller reads the host's memory" in capsys.readouterr().err


def test_a_real_hosts_recording_carries_meminfo_and_replays(tmp_path, capsys):
    """`ksmtui host --record` on this machine (reading only: no machine lock) records /proc/meminfo."""
    from ksmtui.cli import main
    from ksmtui.host.recording import memory_timeline, read_recording

    if not Path("/sys/kernel/mm/ksm/run").exists():
        pytest.skip("no /sys/kernel/mm/ksm")
    rec = tmp_path / "host.jsonl"
    assert main(["host", "--json", "--count", "2", "--interval", "0.1", "--no-trace", "--record", str(rec)]) == 0
    capsys.readouterr()
    head, samples = read_recording(str(rec))
    total = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal:")).split()[1])
    assert head["page_size"] == os.sysconf("SC_PAGE_SIZE")
    for s in samples:
        assert set(s.meminfo) == {"MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached"}
        assert s.meminfo["MemTotal"] == total and 0 < s.meminfo["MemFree"] <= s.meminfo["MemTotal"]
    info = memory_timeline(str(rec))
    assert info.mem_total_kb == total and info.points[0].at_ms == 0
    assert main(["run", "default", "--controller", "ksmtuned", "--controller-set", "KSM_MONITOR_INTERVAL=0.5",
                 "--memory-from", str(rec), "--after-ms", "2000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["controller"]["meminfo"]["MemTotal"] == total
