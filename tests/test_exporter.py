"""`ksmtui host --listen/--textfile`: the metrics of samples (names, types, values), the HTTP
server's two formats, the textfile's atomic replacement, the command line, and the Grafana
dashboard's queries against the names exported. The real Prometheus and node_exporter are in
tests/test_prometheus.py."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from ksmtui.cli import main
from ksmtui.host import exporter as ex
from ksmtui.host.exporter import Exporter, TraceTotals, families, write_textfile
from ksmtui.host.sampler import HostSample

ROOT = Path(__file__).parent.parent
DASHBOARD = ROOT / "docs" / "grafana" / "ksmtui.json"

KSM = {"full_scans": 7, "general_profit": -4096, "ksm_zero_pages": 12, "pages_scanned": 900, "pages_shared": 8,
       "pages_sharing": 16, "pages_skipped": 3, "pages_unshared": 5, "pages_volatile": 1, "stable_node_chains": 0,
       "stable_node_dups": 0}
KNOBS = {"run": 1, "pages_to_scan": 100, "sleep_millisecs": 9, "merge_across_nodes": 1, "use_zero_pages": 1,
         "advisor_mode": "scan-time"}


def row(comm: str, rmap: int, merging: int, zero: int, profit: int) -> dict:
    return {"comm": comm, "ksm_rmap_items": rmap, "ksm_zero_pages": zero, "ksm_merging_pages": merging,
            "ksm_process_profit": profit, "ksm_merge_any": "no", "ksm_mergeable": "yes"}


def trace(**over) -> dict:
    t = {"counts": {"ksm_merge_with_ksm_page": 5, "ksm_stop_scan": 1}, "errors": {"ksm_merge_with_ksm_page -16": 2},
         "merges": {"stable": 1, "unstable_pairs": 2, "zero_page": 0}, "passes": [[4, 0.25, 300]],
         "advisor": [[3, 500, 12]], "events": [], "lost": 1}
    t.update(over)
    return t


def sample(t: float = 100.0, processes: dict | None = None, tr: dict | None = None, **ksm) -> HostSample:
    return HostSample(time=t, ksm={**KSM, **ksm}, knobs=KNOBS, vmstat={"cow_ksm": 3, "ksm_swpin_copy": 0},
                      ksmd={"pid": 40, "cpu_ns": 1_500_000_000}, processes=processes or {}, trace=tr,
                      trace_note="" if tr else "not root")


PROCESSES = {
    "10": row("big", 100, 300, 0, 300 * 4096 - 100 * 64),
    "11": row("mid", 50, 100, 4, 104 * 4096 - 50 * 64),
    "12": row("small", 10, 10, 0, 10 * 4096 - 10 * 64),
    "13": row("tiny", 10, 1, 0, 4096 - 10 * 64),
    "14": {"comm": "theirs", "error": "ksm_stat: Permission denied"},
}


def scrape(text: str) -> dict[str, dict]:
    """name -> {"type", "help", "samples": {sample name with its labels: value}}"""
    out = {}
    for fam in text_string_to_metric_families(text):
        samples = {s.name + (json.dumps(s.labels, sort_keys=True) if s.labels else ""): s.value for s in fam.samples}
        out[fam.name] = {"type": fam.type, "help": fam.documentation, "samples": samples}
    return out


def exported_names(exporter: Exporter) -> set[str]:
    """Every sample name a fully traced sample makes (counters with _total, summaries with _sum/_count)."""
    return {s.name for fam in text_string_to_metric_families(exporter.text().decode()) for s in fam.samples}


def full_exporter() -> Exporter:
    e = Exporter(top=2)
    e.add(sample(processes=PROCESSES, tr=trace()))
    return e


# ----------------------------------------------------------------------- the metrics --

def test_node_exporter_names_types_and_values():
    m = scrape(full_exporter().text().decode())
    assert m["node_ksmd_full_scans"]["type"] == "counter"
    assert m["node_ksmd_full_scans"]["samples"] == {"node_ksmd_full_scans_total": 7}
    assert m["node_ksmd_sleep_seconds"]["samples"] == {"node_ksmd_sleep_seconds": 0.009}  # 9 ms, as 9 / 1000
    assert m["node_ksmd_general_profit_bytes"]["samples"] == {"node_ksmd_general_profit_bytes": -4096}
    for name in ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "pages_to_scan", "run",
                 "merge_across_nodes"):
        fam = m[f"node_ksmd_{name}"]
        assert fam["type"] == "gauge"
        assert fam["samples"] == {f"node_ksmd_{name}": {**KSM, **KNOBS}[name]}
    assert m["node_ksmd_pages_sharing"]["help"] == "How many more sites are sharing them i.e. how much saved."
    node = {n for n in m if n.startswith("node_")}
    assert node == {ex.NODE_KSMD[f][0].removesuffix("_total") for f in ex.NODE_KSMD}


def test_ksmtui_names_types_and_values():
    m = scrape(full_exporter().text().decode())
    assert m["ksmtui_ksm_zero_pages"]["samples"] == {"ksmtui_ksm_zero_pages": 12}
    assert m["ksmtui_ksm_pages_scanned"]["type"] == "counter"
    assert m["ksmtui_ksmd_cpu_seconds"]["samples"] == {"ksmtui_ksmd_cpu_seconds_total": 1.5}
    assert m["ksmtui_cow_ksm"]["samples"] == {"ksmtui_cow_ksm_total": 3}
    assert m["ksmtui_merges"]["samples"] == {
        'ksmtui_merges_total{"path": "stable_tree"}': 1, 'ksmtui_merges_total{"path": "unstable_tree"}': 2,
        'ksmtui_merges_total{"path": "zero_page"}': 0}
    assert m["ksmtui_merge_failures"]["samples"] == {
        'ksmtui_merge_failures_total{"errno": "EBUSY", "event": "ksm_merge_with_ksm_page"}': 2}
    assert m["ksmtui_ksmd_pass_duration_seconds"]["type"] == "summary"
    assert m["ksmtui_ksmd_pass_duration_seconds"]["samples"] == {
        "ksmtui_ksmd_pass_duration_seconds_count": 1, "ksmtui_ksmd_pass_duration_seconds_sum": 0.25}
    assert m["ksmtui_ksmd_last_pass_rmap_items"]["samples"] == {"ksmtui_ksmd_last_pass_rmap_items": 300}
    assert m["ksmtui_advisor_last_cpu_ratio"]["samples"] == {"ksmtui_advisor_last_cpu_ratio": 0.12}
    assert m["ksmtui_trace_lost_events"]["samples"] == {"ksmtui_trace_lost_events_total": 1}
    assert m["ksmtui_sample_timestamp_seconds"]["samples"] == {"ksmtui_sample_timestamp_seconds": 100.0}
    for fam in m.values():
        assert fam["help"], fam


def test_groups_are_the_top_n_by_profit_and_the_rest_is_other():
    m = scrape(full_exporter().text().decode())

    def group(name: str) -> dict:
        return {json.loads(k[len(name):])["group"]: v for k, v in m[name]["samples"].items()}

    assert group("ksmtui_group_profit_bytes") == {
        "big (10)": 300 * 4096 - 6400, "mid (11)": 104 * 4096 - 3200, "other": 11 * 4096 - 1280}
    assert group("ksmtui_group_rmap_items") == {"big (10)": 100, "mid (11)": 50, "other": 20}
    assert group("ksmtui_group_merging_pages") == {"big (10)": 300, "mid (11)": 100, "other": 11}
    assert group("ksmtui_group_zero_pages") == {"big (10)": 0, "mid (11)": 4, "other": 0}
    assert group("ksmtui_group_processes") == {"big (10)": 1, "mid (11)": 1, "other": 2}
    assert m["ksmtui_processes_unreadable"]["samples"] == {"ksmtui_processes_unreadable": 1}


def test_a_grouping_sums_processes_by_the_group_it_names():
    """The seam for ksmtui.host.units: a grouping function, processes summed by what it returns."""
    def by_comm_initial(pid, r):
        return ("unit", "b-m" if r["comm"][0] in "bm" else "s-t")

    e = Exporter(top=5, grouping=by_comm_initial)
    e.add(sample(processes=PROCESSES))
    m = scrape(e.text().decode())
    got = {tuple(json.loads(k[len("ksmtui_group_rmap_items"):]).values()): v
           for k, v in m["ksmtui_group_rmap_items"]["samples"].items()}
    assert got == {("b-m", "unit"): 150, ("s-t", "unit"): 20, ("other", "other"): 0}


def test_by_unit_groups_by_the_unit_each_row_carries():
    """--group-by: the rows' units (ksmtui.host.units), named as --json --group-by names them."""
    rows = {
        "10": {**row("qemu", 100, 300, 0, 300), "unit": {"vm": "win10", "cgroup": "/machine.slice/a"}},
        "11": {**row("qemu", 50, 100, 4, 100), "unit": {"vm": "win10", "cgroup": "/machine.slice/b"}},
        "12": {**row("bash", 10, 10, 0, 10), "unit": {"cgroup": "/user.slice"}},
        "13": row("old", 1, 1, 0, 1),  # a row of an older recording: no unit
    }
    e = Exporter(grouping=ex.by_unit("vm"))
    e.add(sample(processes=rows))
    m = scrape(e.text().decode())
    got = {tuple(json.loads(k[len("ksmtui_group_profit_bytes"):]).values()): v
           for k, v in m["ksmtui_group_profit_bytes"]["samples"].items()}
    assert got == {("win10", "vm"): 400, ("(no vm)", "vm"): 11, ("other", "other"): 0}
    with pytest.raises(ValueError):
        ex.by_unit("tenant")


def test_tracepoint_counters_add_up_over_samples_and_are_left_out_untraced():
    e = Exporter()
    e.add(sample(tr=trace()))
    e.add(sample(101.0, tr=trace(passes=[[5, 0.75, 310]], advisor=[], lost=0)))
    m = scrape(e.text().decode())
    assert m["ksmtui_merges"]["samples"]['ksmtui_merges_total{"path": "unstable_tree"}'] == 4
    assert m["ksmtui_ksmd_pass_duration_seconds"]["samples"] == {
        "ksmtui_ksmd_pass_duration_seconds_count": 2, "ksmtui_ksmd_pass_duration_seconds_sum": 1.0}
    assert m["ksmtui_ksmd_last_pass_duration_seconds"]["samples"] == {"ksmtui_ksmd_last_pass_duration_seconds": 0.75}
    assert m["ksmtui_advisor_decisions"]["samples"] == {"ksmtui_advisor_decisions_total": 1}
    assert m["ksmtui_trace_events"]["samples"]['ksmtui_trace_events_total{"event": "ksm_stop_scan"}'] == 2
    untraced = Exporter()
    untraced.add(sample(processes=PROCESSES))
    names = set(scrape(untraced.text().decode()))
    assert names == set(scrape(full_exporter().text().decode())) - {f.name for f in ex._traced(TraceTotals())} - {
        "ksmtui_ksmd_last_pass_duration_seconds", "ksmtui_ksmd_last_pass_rmap_items",
        "ksmtui_advisor_last_scan_time_seconds", "ksmtui_advisor_last_cpu_ratio"}


def test_what_the_kernel_does_not_have_is_left_out():
    s = sample()
    older = HostSample(time=1.0, ksm={k: v for k, v in s.ksm.items() if k not in ("general_profit", "ksm_zero_pages")},
                       knobs={k: v for k, v in KNOBS.items() if k != "merge_across_nodes"}, vmstat={}, ksmd={},
                       processes={"5": {"comm": "x", "ksm_rmap_items": 3, "ksm_merging_pages": 1}}, trace=None)
    e = Exporter()
    e.add(older)
    names = set(scrape(e.text().decode()))
    for gone in ("node_ksmd_general_profit_bytes", "ksmtui_ksm_zero_pages", "node_ksmd_merge_across_nodes",
                 "ksmtui_ksmd_cpu_seconds", "ksmtui_cow_ksm", "ksmtui_group_profit_bytes", "ksmtui_group_zero_pages"):
        assert gone not in names
    assert {"node_ksmd_pages_sharing", "ksmtui_group_rmap_items", "ksmtui_group_merging_pages"} <= names


def test_openmetrics_has_units_and_parses():
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    text = openmetrics(full_exporter().registry).decode()
    assert text.endswith("# EOF\n")
    fams = {f.name: f for f in openmetrics_families(text)}
    assert fams["node_ksmd_general_profit_bytes"].unit == "bytes"
    assert fams["ksmtui_ksmd_cpu_seconds"].unit == "seconds" and fams["ksmtui_ksmd_cpu_seconds"].type == "counter"


def test_the_http_server_serves_both_formats(tmp_path):
    e = full_exporter()
    host, port = e.serve("127.0.0.1", 0)
    try:
        url = f"http://{host}:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert r.read() == e.text()
        req = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            assert r.read().endswith(b"# EOF\n")
    finally:
        e.close()
    with pytest.raises(OSError):  # closed: nothing listens there any more
        socket.create_connection((host, port), timeout=2).close()


# ----------------------------------------------------------------------- the textfile --

def test_the_textfile_is_replaced_whole_by_a_fresh_temporary_beside_it(tmp_path, monkeypatch):
    path = tmp_path / "ksmtui.prom"
    temporaries = []
    replace = os.replace

    def spy(src, dst):
        temporaries.append(src)
        assert Path(src).read_bytes() == data  # complete before it is renamed
        replace(src, dst)

    monkeypatch.setattr(ex.os, "replace", spy)
    for data in (b"a 1\n", b"a 2\n"):
        write_textfile(str(path), data)
        assert path.read_bytes() == data
    assert len(set(temporaries)) == 2  # a new name each time, never a fixed one
    for t in temporaries:
        assert Path(t).parent == tmp_path and Path(t).name.startswith(".ksmtui.prom.")
        assert not Path(t).name.endswith(".prom")  # node_exporter reads only *.prom
    assert os.listdir(tmp_path) == ["ksmtui.prom"]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by node_exporter's user


def test_a_failed_textfile_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "ksmtui.prom"
    write_textfile(str(path), b"a 1\n")

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ex.os, "replace", full)
    with pytest.raises(OSError):
        write_textfile(str(path), b"a 2\n")
    assert path.read_bytes() == b"a 1\n" and os.listdir(tmp_path) == ["ksmtui.prom"]
    said = []
    e = Exporter(textfile=str(path), on_error=said.append)
    e.add(sample())
    e.add(sample())
    assert said == [f"--textfile: {path}: No space left on device"]  # once, not at every sample


def test_a_reader_never_sees_a_partial_textfile(tmp_path):
    """node_exporter reads while we write: every read is one whole exposition."""
    path = tmp_path / "ksmtui.prom"
    e = Exporter(textfile=str(path))
    e.add(sample(processes=PROCESSES, tr=trace()))
    stop = threading.Event()
    reads = []

    def read():
        while not stop.is_set():
            reads.append(path.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(200):
            e.add(sample(100.0 + i, processes=PROCESSES, tr=trace()))
    finally:
        stop.set()
        reader.join()
    assert reads and all(r.rstrip().split(b"\n")[-1].startswith(b"ksmtui_advisor_last_cpu_ratio") for r in reads)
    assert os.listdir(tmp_path) == ["ksmtui.prom"]


# ---------------------------------------------------------------------- the command --

@pytest.mark.parametrize("argv,said", [
    (["--listen", "localhost"], "argument --listen: expected [ADDR:]PORT"),
    (["--listen", ":9100"], "argument --listen: expected [ADDR:]PORT"),
    (["--listen", "127.0.0.1:70000"], "argument --listen: expected [ADDR:]PORT"),
    (["--no-ui"], "argument --no-ui: only with --listen, --textfile, --record or --csv"),
    (["--top", "3"], "argument --top: only with --listen or --textfile"),
    (["--group-by", "vm"], "argument --group-by: only with --json, --listen or --textfile"),
    (["--listen", "0", "--count", "1"], "argument --count: only with --json or --no-ui"),
    (["--no-ui", "--textfile", "/nonexistent/dir/k.prom"], "--textfile: /nonexistent/dir/k.prom: No such file or"),
])
def test_bad_options_are_one_line_and_exit_2(capsys, argv, said):
    assert main(["host", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ksmtui host: error: {said}") and err.count("\n") == 1


@pytest.mark.parametrize("text,addr,port", [
    ("9901", "127.0.0.1", 9901), ("0.0.0.0:9901", "0.0.0.0", 9901), ("[::1]:9901", "::1", 9901),
    ("localhost:0", "localhost", 0),
])
def test_listen_is_addr_and_port_with_loopback_by_default(text, addr, port):
    from ksmtui.cli.host import host_parser

    assert host_parser().parse_args(["--listen", text]).listen == (addr, port)


def test_a_port_in_use_is_one_line_and_exit_2(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["host", "--no-ui", "--no-trace", "--listen", f"127.0.0.1:{port}", "--count", "1"]) == 2
    assert capsys.readouterr().err == f"ksmtui host: error: --listen 127.0.0.1:{port}: Address already in use\n"


def test_no_ui_writes_the_textfile_at_every_sample(tmp_path, capsys):
    path = tmp_path / "ksmtui.prom"
    assert main(["host", "--no-ui", "--no-trace", "--textfile", str(path), "--count", "2", "--interval", "0.05"]) == 0
    assert capsys.readouterr().out == ""
    m = scrape(path.read_text())
    assert {"node_ksmd_run", "node_ksmd_full_scans", "ksmtui_sample_timestamp_seconds"} <= set(m)
    assert "ksmtui_trace_events" not in m  # --no-trace: no tracepoint metrics, not zeros
    assert os.listdir(tmp_path) == ["ksmtui.prom"]
    assert main(["host", "--no-ui", "--no-trace", "--textfile", str(path), "--count", "1", "--group-by", "cgroup"]) == 0
    kinds = {json.loads(k[len("ksmtui_group_processes"):])["kind"] for k in scrape(path.read_text())[
        "ksmtui_group_processes"]["samples"]}
    assert "other" in kinds and kinds <= {"cgroup", "other"}  # (which processes KSM knows here is not ours to say)


def test_with_the_ui_every_sample_also_reaches_the_exporter(monkeypatch, capsys):
    """`ksmtui host --listen` with the UI (Textual's headless driver): the live source hands each
    sample to the exporter, and /metrics serves the one on screen."""
    from ksmtui.ui.apps import host as host_app
    from tests.ui_helpers import drive, settle, wait_for

    seen = {}

    def run_headless(sampler, recorder=None, alert_cpu=None):
        async def test(pilot):
            app = pilot.app
            await wait_for(pilot, lambda: app.view is not None and app.view.samples >= 3, "three samples on screen")
            # what is on screen stays the newest sample: close() joins the sampler's thread, so its
            # last sample is with the exporter and queued for the app, which settle sees handled
            app.source.sampler.close()
            await settle(pilot)
            url = re.search(r"http://\S+/metrics", capsys.readouterr().err).group()
            with urllib.request.urlopen(url, timeout=10) as r:
                seen["served"] = r.read().decode()
            seen["time"] = app.view.sample.time

        drive(host_app.HostApp(host_app.LiveSource(sampler, recorder, alert_cpu)), test)
        return 0

    monkeypatch.setattr(host_app, "run_host_app", run_headless)
    assert main(["host", "--no-trace", "--interval", "0.1", "--listen", "127.0.0.1:0"]) == 0
    m = scrape(seen["served"])
    assert m["ksmtui_sample_timestamp_seconds"]["samples"] == {"ksmtui_sample_timestamp_seconds": seen["time"]}


# ---------------------------------------------------------------------- the dashboard --

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                 "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are not functions, aggregations,
    keywords, label names (in braces or by/without lists), durations or Grafana variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[m.end():].lstrip().startswith("(") or m.group() in _PROMQL_WORDS:
            continue
        if m.start() and (expr[m.start() - 1].isdigit() or expr[m.start() - 1] == "."):
            continue  # 1e9, 0.5
        names.add(m.group())
    return names


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: the panels' targets, and the metric of each
    variable's label_values(METRIC, LABEL)."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            assert m, query
            exprs.append(m.group(1))
    return exprs


def test_promql_metric_names_finds_metrics_only():
    assert promql_metric_names('sum by (kind, group) (rate(ksmtui_merges_total{path="zero_page",'
                               'instance=~"$instance"}[$__rate_interval])) / ignoring(path) '
                               "node_ksmd_pages_shared * 1e3") == {"ksmtui_merges_total", "node_ksmd_pages_shared"}
    assert promql_metric_names("histogram_quantile(0.9, x_bucket) + 2e-3") == {"x_bucket"}


def test_every_metric_the_dashboard_queries_is_one_ksmtui_exports():
    names = exported_names(full_exporter())
    queries = dashboard_queries()
    assert len(queries) >= 10
    used = set()
    for q in queries:
        found = promql_metric_names(q)
        assert found, q
        assert found <= names, (q, found - names)
        used |= found
    # what an operator asked for: savings, sharing ratio, ksmd CPU, outcomes, the per-group table
    assert {"node_ksmd_general_profit_bytes", "node_ksmd_pages_sharing", "node_ksmd_pages_shared",
            "ksmtui_ksmd_cpu_seconds_total", "ksmtui_merges_total", "ksmtui_group_profit_bytes"} <= used


def test_the_docs_list_every_metric_exported():
    doc = (ROOT / "docs" / "prometheus.md").read_text()
    listed = set(re.findall(r"^\| `((?:node_ksmd|ksmtui)_\w+)`", doc, re.M))
    assert listed == set(re.findall(r"^# TYPE (\S+)", full_exporter().text().decode(), re.M))


def test_families_of_a_sample_without_totals_have_no_tracepoint_counters():
    assert not [f for f in families(sample(tr=trace())) if f.name.startswith("ksmtui_merges")]
    t = TraceTotals()
    t.add(None)
    assert t.merges == {"stable_tree": 0, "unstable_tree": 0, "zero_page": 0}
