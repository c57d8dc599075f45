"""The scenario loader: defaults, built-ins, forks and globs, --set, overrides, random valid files."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.knobs import ENGINE_KNOBS, KSM_KNOBS
from engine.scenario import (
    Fill,
    Region,
    Scenario,
    ScenarioError,
    Stop,
    apply_overrides,
    builtin_scenarios,
    load_scenario,
    parse_scenario,
    parse_set_option,
)

PROCESS = """
[[process]]
name = "p"
[[process.region]]
name = "r"
pages = 10
"""
MINIMAL = 'name = "minimal"\n' + PROCESS


def parse(text: str, base_dir: Path = Path(".")) -> Scenario:
    return parse_scenario(text, "test.toml", base_dir)


def with_tables(tables: str, after: str = "") -> Scenario:
    """A minimal scenario with more tables before its process and more after it (events)."""
    return parse('name = "t"\n' + tables + PROCESS + after)


def mapped_pages(s: Scenario) -> int:
    return sum(p.count * sum(r.pages for r in p.regions) for p in s.processes)


# -- defaults ---------------------------------------------------------------------------------------


def test_minimal_file_gets_every_default():
    s = parse(MINIMAL)
    assert (s.name, s.description, s.seed, s.page_size) == ("minimal", "", 0, 4096)
    assert s.ksm == {k: knob.default for k, knob in KSM_KNOBS.items()}
    assert s.ksm["run"] == 1  # a scenario runs ksmd; the kernel boots with run = 0
    assert s.engine == {"flow": "optimized", "numa_nodes": 1, "latency": "model", "hz": 0}  # 0: the cost profile's
    (p,) = s.processes
    assert (p.name, p.count, p.node, p.merge_any) == ("p", 1, 0, False)
    assert p.regions == (Region("r", 10, True, Fill("random")),)
    assert (s.pools, s.events, s.stop) == ((), (), Stop(None, None))


def test_knobs_given_override_only_themselves():
    s = with_tables('[ksm]\npages_to_scan = 7\n[engine]\nflow = "legacy"\n')
    assert s.ksm == {**{k: knob.default for k, knob in KSM_KNOBS.items()}, "pages_to_scan": 7}
    assert s.engine == {**{k: knob.default for k, knob in ENGINE_KNOBS.items()}, "flow": "legacy"}


def test_scan_time_advisor_starts_at_its_minimum_like_the_kernel():
    s = with_tables('[ksm]\nadvisor_mode = "scan-time"\nadvisor_min_pages_to_scan = 123\n')
    assert s.ksm["pages_to_scan"] == 123


def test_loading_twice_gives_equal_scenarios():
    assert load_scenario("default") == load_scenario("default")


# -- built-ins --------------------------------------------------------------------------------------


BUILTINS = builtin_scenarios()


def test_builtins_are_listed_sorted_and_cover_the_workloads():
    names = [n for n, _ in BUILTINS]
    assert names == sorted(names)
    for wanted in ("default", "hackbench", "fleet", "zero-pages", "zero-pages-use-zero", "chains",
                   "fork-heavy", "numa", "smart-scan", "advisor", "large"):
        assert wanted in names


@pytest.mark.parametrize("name,path", BUILTINS, ids=[n for n, _ in BUILTINS])
def test_builtin_loads_by_name_and_by_path(name, path):
    s = load_scenario(name)
    assert s == load_scenario(path)
    assert s.name == name and s.path == path.resolve()
    assert len(s.description) > 100, "a built-in says what it shows and why"
    if name != "large":
        assert mapped_pages(s) <= 20_480, "built-ins run headless in a few seconds"


def test_builtins_use_every_fill_kind():
    kinds = set()
    for name, _ in BUILTINS:
        s = load_scenario(name)
        kinds |= {r.fill.kind for p in s.processes for r in p.regions}
        kinds |= {e.fill.kind for e in s.events if e.action == "write"}
    assert kinds == {"random", "zero", "byte", "pool", "file"}


def test_file_fill_resolves_against_the_scenario_folder(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "disk.bin").write_bytes(b"x" * 5000)
    text = MINIMAL + 'fill = "file"\npath = "img/disk.bin"\n'
    (tmp_path / "s.toml").write_text(text)
    s = load_scenario(tmp_path / "s.toml")
    assert s.processes[0].regions[0].fill == Fill("file", path=(tmp_path / "img" / "disk.bin").resolve())


def test_unknown_name_lists_the_builtins():
    with pytest.raises(ScenarioError) as info:
        load_scenario("no-such-scenario")
    assert str(info.value).startswith("no-such-scenario: no such file")
    assert "fleet" in str(info.value)


def test_missing_path_is_one_line(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "gone.toml")
    assert str(info.value) == f"{tmp_path / 'gone.toml'}: cannot read: No such file or directory"


# -- events, forks and globs ------------------------------------------------------------------------


FORKS = """
name = "forks"
[[process]]
name = "zygote"
[[process.region]]
name = "heap"
pages = 10
[[process]]
name = "other"
[[process.region]]
name = "data"
pages = 4
[[event]]
action = "fork"
process = "zygote"
child = "app-1"
at_ms = 1
[[event]]
action = "fork"
process = "app-1"
child = "app-1-svc"
at_full_scans = 2
[[event]]
action = "write"
process = "app-*"
region = "heap"
pages = [2, 10]
at_ms = 5
repeat_ms = 10
until_ms = 100
"""


def test_globs_match_forked_children_and_grandchildren_with_their_parents_regions():
    s = parse(FORKS)
    fork1, fork2, write = s.events
    assert (fork1.child, fork2.process, fork2.child) == ("app-1", "app-1", "app-1-svc")
    assert (write.process, write.region, write.pages) == ("app-*", "heap", (2, 8 + 2))
    assert (write.at_ms, write.repeat_ms, write.until_ms, write.at_full_scans) == (5, 10, 100, None)
    assert [e.index for e in s.events] == [0, 1, 2]


def test_glob_needs_every_matched_process_to_have_the_region():
    with pytest.raises(ScenarioError, match=r"event\[2\].region: process 'other' has no region 'heap'"):
        parse(FORKS.replace('process = "app-*"', 'process = "*"'))


def test_child_pages_are_counted_in_the_size_limit():
    big = FORKS.replace("pages = 10", "pages = 2000000").replace("[2, 10]", "[2, 1000]")
    with pytest.raises(ScenarioError, match="6,000,004 pages mapped by processes"):
        parse(big)


@pytest.mark.parametrize("keys,pages,fraction", [
    ("pages = 3", 3, None), ("pages = [0, 10]", (0, 10), None), ("fraction = 1", None, 1.0),
    ("fraction = 0.25", None, 0.25), ("", None, None),
])
def test_which_pages_a_write_touches(keys, pages, fraction):
    s = with_tables("", f'[[event]]\naction = "write"\nregion = "r"\nat_ms = 0\n{keys}\n')
    assert (s.events[0].pages, s.events[0].fraction) == (pages, fraction)


def test_write_fill_keys_and_pools():
    s = with_tables('[[pool]]\nname = "lib"\npages = 3\n', (
        '[[event]]\naction = "write"\nregion = "r"\nat_ms = 0\nfill = "pool"\npool = "lib"\norder = '
        '"shuffled"\noffset = 2\n'))
    assert s.events[0].fill == Fill("pool", pool="lib", order="shuffled", offset=2)


@pytest.mark.parametrize("knob,value,parsed", [
    ("use_zero_pages", "1", 1), ("advisor_mode", '"scan-time"', "scan-time"), ("flow", '"legacy"', "legacy"),
    ("max_page_sharing", "2", 2),
])
def test_set_event_value_is_parsed_for_its_knob(knob, value, parsed):
    s = parse(MINIMAL + f'[[event]]\naction = "set"\nknob = "{knob}"\nvalue = {value}\nat_full_scans = 1\n')
    assert (s.events[0].knob, s.events[0].value) == (knob, parsed)


def test_madvise_and_migrate():
    s = with_tables('[engine]\nnuma_nodes = 3\n', '[[event]]\naction = "madvise"\nregion = "r"\nadvice = '
                                                  '"unmergeable"\nat_ms = 3\n'
                    '[[event]]\naction = "migrate"\nregion = "r"\nto_node = 2\nfraction = 0.5\nat_ms = 4\n')
    madvise, migrate = s.events
    assert (madvise.advice, madvise.process) == ("unmergeable", "*")
    assert (migrate.to_node, migrate.fraction, migrate.pages) == (2, 0.5, None)


# -- --set and overrides ----------------------------------------------------------------------------


@pytest.mark.parametrize("option,expected", [
    ("pages_to_scan=500", ("pages_to_scan", 500)), ("use_zero_pages=yes", ("use_zero_pages", 1)),
    ("smart_scan=off", ("smart_scan", 0)), ("flow=legacy", ("flow", "legacy")),
    ("advisor_mode=scan-time", ("advisor_mode", "scan-time")), ("sleep_millisecs=0x10", ("sleep_millisecs", 16)),
])
def test_parse_set_option(option, expected):
    assert parse_set_option(option) == expected


@pytest.mark.parametrize("option,message", [
    ("pages_to_scan", "--set: expected KNOB=VALUE, got 'pages_to_scan'"),
    ("=3", "--set: expected KNOB=VALUE, got '=3'"),
    ("pages_to_skan=3", "--set: pages_to_skan: unknown knob; expected one of run,"),
    ("max_page_sharing=1", "--set: ksm.max_page_sharing: expected an integer >= 2, got 1"),
    ("flow=fast", "--set: engine.flow: expected \"optimized\", \"legacy\" or \"series-v1\", got 'fast'"),
    ("run=two", "--set: ksm.run: expected 0, 1 or 2, got 'two'"),
])
def test_parse_set_option_errors_are_one_line(option, message):
    with pytest.raises(ScenarioError) as info:
        parse_set_option(option)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_apply_overrides_replaces_without_touching_the_original():
    s = load_scenario("default")
    t = apply_overrides(s, flow="legacy", seed=9, overrides=dict([parse_set_option("pages_to_scan=1000")]))
    assert (t.engine["flow"], t.seed, t.ksm["pages_to_scan"]) == ("legacy", 9, 1000)
    assert (s.engine["flow"], s.seed, s.ksm["pages_to_scan"]) == ("optimized", 1, 100)
    assert apply_overrides(s) == s


@pytest.mark.parametrize("kwargs,message", [
    (dict(flow="fast"), "--flow: expected"),
    (dict(seed=-1), "--seed: expected an integer 0..18446744073709551615, got -1"),
    (dict(seed=2**64), "--seed: expected an integer 0..18446744073709551615, got 18446744073709551616"),
    (dict(overrides={"numa_nodes": 1}), "--set: engine.numa_nodes: process 'west' is on node 1; expected numa_nodes > "
                                        "1"),
    (dict(overrides={"nope": 1}), "--set: nope: unknown knob"),
    (dict(overrides={"run": 5}), "--set: ksm.run: expected 0, 1 or 2, got 5"),
])
def test_apply_overrides_errors(kwargs, message):
    with pytest.raises(ScenarioError) as info:
        apply_overrides(load_scenario("numa"), **kwargs)
    assert str(info.value).startswith(message)


def test_advisor_mode_override_moves_pages_to_scan_like_the_kernel():
    s = load_scenario("default")
    on = apply_overrides(s, overrides={"advisor_mode": "scan-time"})
    assert on.ksm["pages_to_scan"] == on.ksm["advisor_min_pages_to_scan"]
    assert apply_overrides(on, overrides={"advisor_mode": "none"}).ksm["pages_to_scan"] == 100
    with pytest.raises(ScenarioError, match="refuses pages_to_scan"):
        apply_overrides(load_scenario("advisor"), overrides={"pages_to_scan": 300})


# -- property: random valid files always load -------------------------------------------------------


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string for these characters
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def to_toml(data: dict) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, (dict, list))]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += [f"[{k}]"] + [f"{kk} = {toml_value(vv)}" for kk, vv in v.items()]
    for k in ("pool", "process", "event"):
        for item in data.get(k, []):
            lines.append(f"[[{k}]]")
            lines += [f"{kk} = {toml_value(vv)}" for kk, vv in item.items() if not (k == "process" and kk == "region")]
            for region in item.get("region", []) if k == "process" else []:
                lines.append(f"[[{k}.region]]")
                lines += [f"{kk} = {toml_value(vv)}" for kk, vv in region.items()]
    return "\n".join(lines) + "\n"


names = st.text("abcdefghijklmnopqrstuvwxyz0123456789_.", min_size=1, max_size=8)


@st.composite
def scenarios(draw):
    pools = [{"name": f"pool{i}", "pages": draw(st.integers(1, 50))} for i in range(draw(st.integers(0, 2)))]
    numa = draw(st.integers(1, 3))
    fills = [st.just({}), st.just({"fill": "zero"}), st.builds(lambda b: {"fill": "byte", "byte": b}, st.integers(0,
                                                                                                                  255))]
    if pools:
        fills.append(st.builds(lambda p, o, off: {"fill": "pool", "pool": p, "order": o, "offset": off},
                               st.sampled_from([p["name"] for p in pools]), st.sampled_from(["sequential", "shuffled"]),
                               st.integers(0, 100)))
    processes = []
    for i, pname in enumerate(draw(st.lists(names, min_size=1, max_size=3, unique=True))):
        regions = [{"name": r, "pages": draw(st.integers(1, 40)), "mergeable": draw(st.booleans()),
                    **draw(st.one_of(fills))}
                   for r in draw(st.lists(names, min_size=1, max_size=3, unique=True))]
        # Suffixes keep expanded NAME-i names apart from other processes' names.
        processes.append({"name": f"{pname}_{i}", "count": draw(st.integers(1, 3)), "node": draw(st.integers(0,
                                                                                                             numa - 1)),
                          "merge_any": draw(st.booleans()), "region": regions})
    events = []
    for _ in range(draw(st.integers(0, 4))):
        p = draw(st.sampled_from(processes))
        glob = p["name"] + ("-*" if p["count"] > 1 else "")
        region = draw(st.sampled_from(p["region"]))
        trigger = draw(st.sampled_from([{"at_ms": draw(st.integers(0, 10_000))},
                                        {"at_full_scans": draw(st.integers(0, 20))}]))
        action = draw(st.sampled_from(["write", "exit", "madvise", "set", "migrate", "fork"]))
        event = {"action": action, **trigger}
        if action == "fork":
            parent = f"{p['name']}-0" if p["count"] > 1 else p["name"]
            event |= {"process": parent, "child": f"kid-{len(events)}"}
        elif action == "write":
            event |= {"process": glob, "region": region["name"], **draw(st.one_of(fills))}
            event |= draw(st.sampled_from([{}, {"pages": 1}, {"pages": [0, region["pages"]]}, {"fraction": 0.5}]))
            if "at_ms" in trigger and draw(st.booleans()):
                event |= {"repeat_ms": draw(st.integers(1, 1000)),
                          "until_ms": trigger["at_ms"] + draw(st.integers(0, 5000))}
        elif action == "exit":
            event["process"] = glob
        elif action == "madvise":
            event |= {"process": glob, "region": region["name"], "advice": draw(st.sampled_from(["mergeable",
                                                                                                 "unmergeable"]))}
        elif action == "set":
            event |= draw(st.sampled_from([{"knob": "pages_to_scan", "value": 50}, {"knob": "use_zero_pages",
                                                                                    "value": 1},
                                           {"knob": "flow", "value": "legacy"}, {"knob": "run", "value": 2}]))
        else:
            event |= {"process": glob, "region": region["name"], "to_node": draw(st.integers(0, numa - 1))}
        events.append(event)
    data = {"name": draw(names), "seed": draw(st.integers(0, 2**63 - 1)), "page_size": 2 ** draw(st.integers(6, 16)),
            "ksm": {"max_page_sharing": draw(st.integers(2, 300)), "smart_scan": draw(st.integers(0, 1))},
            "engine": {"numa_nodes": numa, "flow": draw(st.sampled_from(["optimized", "legacy", "series-v1"]))},
            "pool": pools, "process": processes, "event": events}
    if draw(st.booleans()):
        data["stop"] = {"full_scans": draw(st.integers(1, 50))}
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_valid_scenarios_load(data):
    s = parse(to_toml(data))
    assert [p.name for p in s.processes] == [p["name"] for p in data["process"]]
    assert [[r.pages for r in p.regions] for p in s.processes] == [[r["pages"] for r in p["region"]]
                                                                  for p in data["process"]]
    assert [e.action for e in s.events] == [e["action"] for e in data["event"]]
    assert [e.child for e in s.events if e.action == "fork"] == [e["child"] for e in data["event"]
                                                                if e["action"] == "fork"]
    assert s.ksm["max_page_sharing"] == data["ksm"]["max_page_sharing"] and s.page_size == data["page_size"]


THP_REGION = '[[process]]\nname = "a"\n[[process.region]]\nname = "r"\npages = {pages}\n{thp}\n'


@pytest.mark.parametrize("thp,share", [("", 0.0), ("thp = false", 0.0), ("thp = true", 1.0), ("thp = 0.25", 0.25),
                                       ("thp = 0", 0.0), ("thp = 1", 1.0)])
def test_region_thp_is_a_share_of_its_extents(thp, share):
    s = parse('name = "t"\n' + THP_REGION.format(pages=2048, thp=thp))
    region = s.processes[0].regions[0]
    assert region.thp == share
    assert region.huge_extents(512) == {0.0: [], 1.0: [0, 1, 2, 3], 0.25: [3]}[share]


@pytest.mark.parametrize("thp,pages,message", [
    ('thp = "yes"', 600, "expected true, false or a number 0..1"),
    ("thp = 1.5", 600, "expected true, false or a number 0..1"),
    ("thp = -0.1", 600, "expected true, false or a number 0..1"),
    ("thp = true", 511, "a transparent huge page is 512 pages of 4096 bytes; the region has 511"),
])
def test_bad_thp_is_one_line_naming_the_key(thp, pages, message):
    with pytest.raises(ScenarioError) as info:
        parse('name = "t"\n' + THP_REGION.format(pages=pages, thp=thp))
    text = str(info.value)
    assert "\n" not in text and "process[0].region[0].thp" in text and message in text, text
