"""`ksmtui host --listen` scraped by a real Prometheus, beside a real node_exporter with its ksmd
collector, on loopback; and `--textfile` read by node_exporter's textfile collector.

The Debian packages `prometheus` and `prometheus-node-exporter` are installed here when missing
and we are root (as CI is), with their services kept from starting; elsewhere the tests skip,
saying why. Every server a test starts is ended on every way out (and dies with pytest, by
PR_SET_PDEATHSIG, if pytest itself is killed)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ksmtui.host import sysfs
from ksmtui.host.exporter import MERGE_PATHS, NODE_KSMD
from ksmtui.host.sampler import HostTrace
from tests.host_helpers import KNOBS, PREDICTED, Children, merged, wait_until
from tests.test_exporter import dashboard_queries

PACKAGES = {"prometheus": "prometheus", "prometheus-node-exporter": "prometheus-node-exporter"}  # package: binary
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
KSMTUI = [sys.executable, "-m", "ksmtui"]
SCRAPE_S = 0.5


def _apt(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", "-q", "-y", *args], capture_output=True, text=True, env=env, timeout=600)


@contextlib.contextmanager
def _no_service_starts():
    """policy-rc.d answering 101 ("action forbidden") keeps a package's postinst from starting its
    service (invoke-rc.d and deb-systemd-invoke ask it); whatever was there is put back."""
    old = POLICY_RC_D.read_bytes() if POLICY_RC_D.exists() else None
    mode = POLICY_RC_D.stat().st_mode if old is not None else 0o755
    POLICY_RC_D.write_text("#!/bin/sh\n# ksmtui tests: no service starts while they install packages\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        if old is None:
            POLICY_RC_D.unlink()
        else:
            POLICY_RC_D.write_bytes(old)
            POLICY_RC_D.chmod(mode)


def ensure_packages() -> str | None:
    """None once the binaries are there, else why they cannot be (the reason to skip)."""
    missing = [pkg for pkg, binary in PACKAGES.items() if not shutil.which(binary)]
    if not missing:
        return None
    if os.geteuid() != 0:
        return f"needs the Debian packages {', '.join(missing)} (installed by these tests when run as root)"
    if not shutil.which("apt-get"):
        return f"needs the Debian packages {', '.join(missing)}, and there is no apt-get"
    with _no_service_starts():
        out = _apt("install", "--no-install-recommends", *missing)
        if out.returncode != 0:  # package lists missing or stale: once
            _apt("update")
            out = _apt("install", "--no-install-recommends", *missing)
    if out.returncode != 0:
        pytest.fail(f"apt-get install {' '.join(missing)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return None


@pytest.fixture(scope="module")
def debian_servers():
    reason = ensure_packages()
    if reason:
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def server(argv: list[str], log: Path, ready_url: str | None = None, timeout: float = 60.0):
    """A server process, ended (SIGTERM, then SIGKILL) on every way out of the block."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)
    try:
        if ready_url:
            deadline = time.monotonic() + timeout
            while not _ok(ready_url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{argv[0]} did not come up at {ready_url}:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params) -> dict | list:
        body = json.loads(get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[tuple, float]:
        """An instant query: its labels (sorted pairs, without __name__) -> value."""
        data = self.api("query", query=expr)
        return {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
                for r in data["result"]}

    def metadata_types(self, name: str) -> dict[str, str]:
        """job -> the type its target declared for `name` (as OpenMetrics names a counter's family
        without _total, and the text format with it, both names are asked)."""
        out = {}
        for family in {name, name.removesuffix("_total")}:
            for t in self.api("targets/metadata", metric=family):
                out[t["target"]["job"]] = t["type"]
        return out

    def one(self, expr: str) -> float | None:
        values = list(self.query(expr).values())
        assert len(values) <= 1, (expr, values)
        return values[0] if values else None


@pytest.fixture(scope="module")
def prometheus(debian_servers, tmp_path_factory):
    """A Prometheus scraping ksmtui (on a port chosen now, where the test will start it) and a
    node_exporter with only its ksmd collector, every SCRAPE_S seconds; its own storage, removed."""
    work = tmp_path_factory.mktemp("prometheus")
    ports = {"prometheus": free_port(), "node": free_port(), "ksmtui": free_port()}
    config = work / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": f"{int(SCRAPE_S * 1000)}ms", "scrape_timeout": f"{int(SCRAPE_S * 1000)}ms"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{ports[job]}"]}]}
            for job in ("ksmtui", "node")],
    }))
    node = ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ports['node']}",
            "--collector.disable-defaults", "--collector.ksmd"]
    with tempfile.TemporaryDirectory(prefix="ksmtui-prometheus-") as storage:
        prom = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={storage}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}"]
        with server(node, work / "node.log", f"http://127.0.0.1:{ports['node']}/metrics"), \
             server(prom, work / "prometheus.log", f"http://127.0.0.1:{ports['prometheus']}/-/ready"):
            p = Prometheus(f"http://127.0.0.1:{ports['prometheus']}")
            # ready is not scraping yet: the first scrapes come a few seconds later
            assert wait_until(lambda: p.one('up{job="node"}') == 1, 60), (work / "prometheus.log").read_text()[-3000:]
            yield p, ports, work


def registered_with_ksm(exclude: list[int]) -> list[str]:
    """The processes, besides `exclude`, that ksmd would scan (madvised or merge-any), as "comm (pid)"."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in exclude:
            continue
        try:
            stat = (proc / "ksm_stat").read_text()
            if "ksm_mergeable: yes" in stat or "ksm_merge_any: yes" in stat:
                out.append(f"{(proc / 'comm').read_text().strip()} ({proc.name})")
        except OSError:
            continue
    return out


@contextlib.contextmanager
def ksmtui_host(port: int, log: Path):
    """`ksmtui host --no-ui --listen`, until the block ends; SIGTERM must end it cleanly."""
    argv = [*KSMTUI, "host", "--no-ui", "--listen", f"127.0.0.1:{port}", "--interval", "0.2", "--top", "5"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)
    try:
        assert wait_until(lambda: _ok(f"http://127.0.0.1:{port}/metrics") or proc.poll() is not None, 30)
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        code = stop(proc)
    # traced, SIGTERM is a clean exit that removes the tracefs instance; untraced there is nothing to clean
    assert code in (128 + signal.SIGTERM, -signal.SIGTERM), log.read_text()


@pytest.mark.kernel
def test_prometheus_gets_what_sysfs_and_ksm_stat_hold_and_node_exporter_agrees(prometheus, kernel):
    """Real children merge; after ksmd stopped, what Prometheus scraped from ksmtui equals sysfs and
    ksm_stat, and what it scraped from node_exporter's ksmd collector, name for name."""
    if HostTrace.unavailable_reason():
        pytest.skip(HostTrace.unavailable_reason())
    prom, ports, work = prometheus
    with ksmtui_host(ports["ksmtui"], work / "ksmtui.log"), Children() as pids:
        others = registered_with_ksm(exclude=pids)
        if others:  # their merges, zero pages and COW faults would mix with the children's
            pytest.skip(f"other processes are registered with KSM on this machine: {', '.join(others[:5])}")
        for name, value in KNOBS.items():
            sysfs.ksm_write(name, value)
        sysfs.ksm_write("run", 1)
        assert wait_until(merged), {k: sysfs.ksm_read(k) for k in PREDICTED["ksm"]}
        sysfs.ksm_write("run", 0)  # returns once ksmd is out of its scan: nothing changes from here on
        settled = time.time()
        ksm = {name: int(sysfs.ksm_read(name)) for name in list(NODE_KSMD) + ["ksm_zero_pages", "stable_node_chains",
                                                                          "stable_node_dups", "pages_scanned"]}
        stats = {pid: sysfs.read_ksm_stat(pid) for pid in pids}
        comms = {pid: Path(f"/proc/{pid}/comm").read_text().strip() for pid in pids}
        ksmd = sysfs.ksmd_pid()
        cow_ksm = int(next(line.split()[1] for line in Path("/proc/vmstat").read_text().splitlines()
                           if line.startswith("cow_ksm ")))
        predicted = {MERGE_PATHS[k]: v for k, v in PREDICTED["merges"].items()}

        def scraped_after_settling() -> bool:
            """Both targets scraped since, the tracepoints caught up, and ksmd asleep (it runs a
            last few microseconds after run=0)."""
            sampled = prom.one('ksmtui_sample_timestamp_seconds{job="ksmtui"}') or 0
            node = prom.one('timestamp(node_ksmd_run{job="node"})') or 0
            merges = {dict(k)["path"]: v for k, v in prom.query('ksmtui_merges_total{job="ksmtui"}').items()}
            cpu = prom.one('ksmtui_ksmd_cpu_seconds_total{job="ksmtui"}')
            passes = prom.one('ksmtui_ksmd_pass_duration_seconds_count{job="ksmtui"}')
            return sampled > settled and node > settled and merges == predicted and passes == ksm["full_scans"] \
                and cpu == sysfs.ksmd_cpu_ns(ksmd) / 1e9

        assert wait_until(scraped_after_settling, 30), prom.query(
            '{job=~"ksmtui|node", __name__=~"ksmtui_merges_total|ksmtui_sample_timestamp_seconds|node_ksmd_run|'
            'ksmtui_ksmd_cpu_seconds_total|ksmtui_ksmd_pass_duration_seconds_count"}')
        # every name node_exporter's ksmd collector has, ksmtui has, with the same type and value, sysfs's
        node_names = set(prom.api("label/__name__/values", **{"match[]": '{job="node", __name__=~"node_ksmd_.*"}'}))
        assert {"node_ksmd_pages_sharing", "node_ksmd_full_scans_total", "node_ksmd_sleep_seconds"} <= node_names
        assert node_names <= {name for name, *_ in NODE_KSMD.values()}
        for file, (name, kind, _help, divisor) in NODE_KSMD.items():
            ours = prom.one(f'{name}{{job="ksmtui"}}')
            assert ours == ksm[file] / divisor, name
            if name in node_names:
                assert prom.one(f'{name}{{job="node"}}') == ours, name
                assert prom.metadata_types(name) == {"ksmtui": kind, "node": kind}, name
        # ksmtui's own: sysfs, schedstat, vmstat
        for file, name in (("ksm_zero_pages", "ksmtui_ksm_zero_pages"), ("stable_node_chains",
                           "ksmtui_ksm_stable_node_chains"), ("stable_node_dups", "ksmtui_ksm_stable_node_dups"),
                           ("pages_scanned", "ksmtui_ksm_pages_scanned_total")):
            assert prom.one(f'{name}{{job="ksmtui"}}') == ksm[file], name
        assert ksm["ksm_zero_pages"] == PREDICTED["ksm"]["ksm_zero_pages"]
        assert prom.one('ksmtui_cow_ksm_total{job="ksmtui"}') == cow_ksm
        # every child: its group's series equal its ksm_stat
        for pid in pids:
            group = f'{{job="ksmtui", kind="process", group="{comms[pid]} ({pid})"}}'
            assert prom.one(f"ksmtui_group_rmap_items{group}") == stats[pid]["ksm_rmap_items"]
            assert prom.one(f"ksmtui_group_merging_pages{group}") == stats[pid]["ksm_merging_pages"]
            assert prom.one(f"ksmtui_group_zero_pages{group}") == stats[pid]["ksm_zero_pages"]
            assert prom.one(f"ksmtui_group_profit_bytes{group}") == stats[pid]["ksm_process_profit"]
        assert len(prom.query('ksmtui_group_profit_bytes{job="ksmtui"}')) <= 5 + 1  # --top 5, and "other"
        # every full scan (full_scans counted from 0: the kernel fixture's run=2) was timed by the tracepoints
        assert ksm["full_scans"] >= 2
        assert prom.one('ksmtui_trace_events_total{job="ksmtui", event="ksm_stop_scan"}') == ksm["full_scans"]
        assert prom.one('ksmtui_trace_lost_events_total{job="ksmtui"}') == 0


@pytest.mark.kernel
def test_every_dashboard_query_runs_on_prometheus_and_the_main_panels_have_data(prometheus, kernel):
    """The dashboard's PromQL against the real Prometheus scraping ksmtui. ksmd is not started, but
    the per-group panels need processes KSM knows: the host tests' children, registered (madvised)
    under the machine lock, so that no other user of KSM counts them."""
    prom, ports, work = prometheus
    main_panels = ("general_profit", "pages_sharing", "ksmd_cpu", "ksmtui_merges_total", "group_profit")
    queries = [q.replace("$__rate_interval", "1m").replace('instance=~"$instance"', 'job="ksmtui"')
               for q in dashboard_queries()]
    with Children(), ksmtui_host(ports["ksmtui"], work / "ksmtui-dashboard.log"):
        def have_data() -> bool:
            return all(prom.api("query", query=q)["result"] for q in queries if any(m in q for m in main_panels))

        assert wait_until(have_data, 90), {q: prom.api("query", query=q)["result"] for q in queries}
        for q in queries:
            prom.api("query", query=q)  # status success: it parses and evaluates


def test_node_exporter_reads_the_textfile_as_written(debian_servers, tmp_path):
    """node_exporter's textfile collector takes ksmtui's file whole: no error, every value as written."""
    path = tmp_path / "ksmtui.prom"
    run = subprocess.run([*KSMTUI, "host", "--no-ui", "--no-trace", "--textfile", str(path), "--count", "1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    written = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(path.read_text()) for s in f.samples}
    port = free_port()
    node = ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
            "--collector.textfile", f"--collector.textfile.directory={tmp_path}"]
    with server(node, tmp_path / "node.log", f"http://127.0.0.1:{port}/metrics"):
        served = {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for f in text_string_to_metric_families(get(f"http://127.0.0.1:{port}/metrics")) for s in f.samples}
    assert served[("node_textfile_scrape_error", ())] == 0
    assert served[("node_textfile_mtime_seconds", (("file", str(path)),))] == int(path.stat().st_mtime)
    assert {k: served.get(k) for k in written} == written
