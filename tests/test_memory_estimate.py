"""check and run refuse a scenario that does not fit this machine's memory, before building it;
the estimate is at least what a real run takes."""

from __future__ import annotations

import subprocess
import sys

import pytest

import engine.scenario as scenario_module
from engine.scenario import ScenarioError, load_scenario, memory_needed
from ksmtui.cli import main

RANDOM = 'name = "big"\n[[process]]\nname = "a"\ncount = {count}\n[[process.region]]\nname = "r"\npages = {pages}\n'


@pytest.fixture
def machine_of(monkeypatch):
    def set_available(nbytes: int) -> None:
        monkeypatch.setattr(scenario_module, "available_memory", lambda: nbytes)

    return set_available


def test_a_scenario_over_the_available_memory_is_refused_saying_need_and_have(tmp_path, machine_of):
    path = tmp_path / "big.toml"
    path.write_text(RANDOM.format(count=4, pages=65536))  # 262,144 unique pages: about 1.3 GB
    machine_of(1_000_000_000)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == (f"{path}: needs about 1.3 GB of memory to run (262,144 pages mapped, page_size 4096), "
                               "this machine has 1.0 GB available")
    machine_of(1_300_000_000)
    assert load_scenario(path).processes[0].count == 4


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_say_it_in_one_line_exit_2(tmp_path, machine_of, capsys, command):
    path = tmp_path / "big.toml"
    path.write_text(RANDOM.format(count=1, pages=65536))
    machine_of(100_000_000)
    assert main([command, str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"ksmtui {command}: error: {path}: needs about 0.4 GB of memory to run")


def test_writes_of_new_contents_and_pool_and_file_pages_count(tmp_path, machine_of):
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * (1 << 20))
    zero = RANDOM.format(count=1, pages=65536).replace('pages = 65536\n', 'pages = 65536\nfill = "zero"\n')
    needs = {}
    for name, extra in [("zero", ""), ("written", '[[event]]\naction = "write"\nat_ms = 1\nregion = "r"\n'),
                        ("pool", '[[pool]]\nname = "p"\npages = 1000\n'),
                        ("file", f'[[event]]\naction = "write"\nat_ms = 1\nregion = "r"\nfill = "file"\npath = '
                                 f'"{blob}"\n')]:
        path = tmp_path / f"{name}.toml"
        path.write_text(zero + extra)
        machine_of(0)
        with pytest.raises(ScenarioError) as info:
            load_scenario(path)
        needs[name] = str(info.value).split("needs about ")[1].split(" GB")[0]
    assert needs == {"zero": "0.1", "written": "0.4", "pool": "0.1", "file": "0.1"}
    assert memory_needed(4096, 65536, 0, 1000, []) - memory_needed(4096, 65536, 0, 0, []) == 1000 * (4096 + 64)
    assert memory_needed(4096, 65536, 0, 0, [1 << 20]) - memory_needed(4096, 65536, 0, 0, []) == 256 * 4160 + (1 << 20)


def test_a_real_run_peaks_below_the_estimate(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(RANDOM.format(count=2, pages=16384) + "[ksm]\npages_to_scan = 100000\nsleep_millisecs = 0\n")
    # VmHWM, not ru_maxrss: that one carries the peak of the process that forked this one (pytest's).
    script = (f"from ksmtui.cli import main\nmain(['run', {str(path)!r}, '--full-scans', '2'])\n"
              "print(next(int(line.split()[1]) * 1024 for line in open('/proc/self/status') if "
              "line.startswith('VmHWM')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
    peak = int(result.stdout.splitlines()[-1])
    estimate = memory_needed(4096, 32768, 32768, 0, [])
    assert peak <= estimate, f"peak RSS {peak:,} bytes over the estimate {estimate:,}"


def test_compare_mode_is_refused_when_two_runs_do_not_fit(monkeypatch):
    import ksmtui.ui.runner as runner_module
    from ksmtui.ui.runner import EngineError, Runner, ToggleCompare
    from tests.ui_helpers import scenario as ui_scenario

    posted = []
    runner = Runner(ui_scenario(), posted.append, paused=True)
    memory = runner._scenario.memory
    assert memory > 0
    monkeypatch.setattr(runner_module, "available_memory", lambda: memory // 2)  # the one run's room, half again
    runner.start()
    try:
        runner.send(ToggleCompare())
        assert runner.wait_idle()
    finally:
        runner.close()
    errors = [m.text for m in posted if isinstance(m, EngineError)]
    assert errors and errors[0].startswith("compare mode runs two simulations: about ")
    assert not posted[-1].view.compare
