#!/usr/bin/env python3
"""Rewrites the figures between the flotta-sim markers of docs/performance.md from
the JSON reports bench/run.sh wrote, plots the fleet-size curve (curve-*.json) into
an SVG, prints every target with its status and writes REPORT_DIR/summary.json.
Usage: figures.py REPORT_DIR DOC SECONDS [SVG] (SVG defaults to
performance-fleet.svg beside DOC)."""
import glob
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot  # noqa: E402 (bench/plot.py, beside this file)

BEGIN = "<!-- flotta-sim:begin (bench/run.sh rewrites this part) -->"
END = "<!-- flotta-sim:end -->"


def load(directory, name):
    path = os.path.join(directory, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def commands(directory):
    result = {}
    path = os.path.join(directory, "commands.txt")
    if os.path.exists(path):
        for line in open(path):
            name, _, command = line.rstrip("\n").partition("\t")
            # The throwaway cluster's URL changes every run.
            result[name] = re.sub(r"postgres://\S+", "$FLOTTA_TEST_POSTGRES_URL", command)
    return result


def num(value, digits=0):
    return f"{value:,.{digits}f}"


def get(report, *path):
    """The number at `path` in a report, or None (report, key or number missing)."""
    value = report
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def per_device_kib(report):
    """Server RSS each connected device adds, KiB: (with the fleet - before it)."""
    rss, before = get(report, "server", "rss_start_mib"), get(report, "extra", "server_rss_before_fleet_mib")
    devices = get(report, "devices")
    if rss is None or before is None or not devices:
        return None
    return (rss - before) * 1024 / devices


def curve_points(directory, propagate):
    """The fleet-size curve: every curve-*.json, and propagate.json as one more point."""
    reports = []
    for path in glob.glob(os.path.join(directory, "curve-*.json")):
        with open(path) as f:
            reports.append((os.path.basename(path)[:-5], json.load(f)))
    if propagate:
        reports.append(("propagate", propagate))
    points = []
    for name, report in reports:
        devices, rss = get(report, "devices"), get(report, "server", "rss_start_mib")
        if not devices or rss is None:
            print(f"fleet curve: {name} has no devices or no server RSS; left out")
            continue
        counted = get(report, "latency", "count")
        p50, p99 = get(report, "latency", "p50_ms"), get(report, "latency", "p99_ms")
        points.append({
            "name": name, "devices": devices, "rss_mib": rss,
            "before_mib": get(report, "extra", "server_rss_before_fleet_mib"),
            "per_device_kib": per_device_kib(report),
            "p50_s": p50 / 1000 if counted and p50 is not None else None,
            "p99_s": p99 / 1000 if counted and p99 is not None else None,
            "missed": int(get(report, "errors") or 0),
        })
    points.sort(key=lambda p: (p["devices"], p["name"]))
    return points


def fleet_fit(points):
    """{kib_per_device, intercept_mib, ...} of RSS against devices, or None."""
    line = plot.fit_line([p["devices"] for p in points], [p["rss_mib"] for p in points])
    if not line:
        return None
    slope_mib, intercept = line
    return {
        "kib_per_device": slope_mib * 1024,
        "intercept_mib": intercept,
        "gib_for_1m_devices": (slope_mib * 1e6 + intercept) / 1024,
        "points": [[p["devices"], p["rss_mib"]] for p in points],
    }


def targets(r, fit, fit_points):
    """Every target of the second performance wave: {figure, measured, target,
    status, value} rows (value: the number measured, in the unit shown, or null);
    `–` where the report or the key is missing."""
    rows = []

    def add(figure, value, shown, target, ok):
        """ok: None where there is no target or nothing to judge."""
        status = "–" if ok is None or value is None else ("met" if ok else "MISSED")
        rows.append({"figure": figure, "measured": shown, "target": target, "status": status,
                     "value": value})

    def missing(name, *values):
        """'not run' without the report, 'not reported' without a key, else None."""
        if not r.get(name):
            return "not run"
        return "not reported" if any(v is None for v in values) else None

    def rate(name, figure, target):
        value = get(r.get(name), "throughput_per_s")
        add(figure, value, missing(name, value) or f"{value:,.0f}/s", f"≥ {target:,}/s",
            value is not None and value >= target)

    def cpu_per_op(report):
        cpu, ops = get(report, "server", "cpu_seconds"), get(report, "operations")
        return cpu / ops if cpu is not None and ops else None

    rate("steady-sqlite", "heartbeats/s, SQLite", 20000)
    rate("steady-postgres", "heartbeats/s, PostgreSQL", 20000)
    sq, pg = cpu_per_op(r.get("steady-sqlite")), cpu_per_op(r.get("steady-postgres"))
    ratio = pg / sq if sq and pg is not None else None
    add("server CPU/heartbeat, PostgreSQL ÷ SQLite", ratio,
        missing("steady-sqlite", sq) or missing("steady-postgres", pg)
        or f"{ratio:.2f}× ({pg * 1e6:.0f} / {sq * 1e6:.0f} µs)", "≤ 1.5×",
        ratio is not None and ratio <= 1.5)

    enrol = cpu_per_op(r.get("enrol"))
    add("server CPU per enrolment", enrol and enrol * 1e3, missing("enrol", enrol) or f"{enrol * 1e3:.2f} ms",
        "≤ 0.5 ms", enrol is not None and enrol <= 0.5e-3)
    rate("enrol", "enrolments/s", 2000)

    p = r.get("propagate")
    p99, devices = get(p, "latency", "p99_ms"), get(p, "devices")
    shown = missing("propagate", p99, devices)
    if not shown:
        shown = f"{p99 / 1000:.2f} s"
        if devices != 10000:
            shown += f" at {devices:,} devices"
        if get(p, "errors"):
            shown += f", {get(p, 'errors'):,} missed"
    # Fewer devices than the target's 10,000 prove nothing about it.
    add("propagation p99 at 10,000 devices", p99 and p99 / 1000, shown, "≤ 2 s",
        None if p99 is None or not devices or devices < 10000 else p99 <= 2000)

    kib = per_device_kib(p)
    add("server RSS per idle long-polling device", kib,
        missing("propagate", kib) or f"{kib:.1f} KiB ({devices:,} devices)", "≤ 16 KiB",
        kib is not None and kib <= 16)
    slope = fit and fit["kib_per_device"]
    add("server RSS per device, fitted slope", slope,
        f"{slope:.1f} KiB ({fit_points} points)" if fit else "not run", "≤ 16 KiB",
        slope is not None and slope <= 16)
    gib = fit and fit["gib_for_1m_devices"]
    add("1,000,000 devices on one node, fitted", gib,
        f"about {gib:,.0f} GiB" if fit else "not run", "–", None)

    a = r.get("steady-agents")
    agents, errors = get(a, "devices"), get(a, "errors")
    shown = missing("steady-agents", agents, errors) or f"{agents:,} agents, {errors:,} errors"
    for goal, label in [(10000, "real agents in one simulator process"),
                        (20000, "real agents in one process, stretch")]:
        add(label, agents, shown, f"≥ {goal:,}, 0 errors",
            agents is not None and errors is not None and agents >= goal and errors == 0)

    rep = r.get("replicas")
    one, two = get(rep, "extra", "one_replica_heartbeats_per_s"), get(rep, "extra", "two_replicas_heartbeats_per_s")
    factor = get(rep, "extra", "scale_out_factor")
    add("two replicas on one PostgreSQL: heartbeats/s", factor,
        missing("replicas", one, two, factor)
        or f"{two:,.0f}/s vs {one:,.0f}/s: {factor:.2f}×", "scale-out, same run", None)
    p2 = get(rep, "extra", "two_replicas_propagation", "p99_ms")
    add("two replicas: propagation p99", p2 and p2 / 1000,
        missing("replicas", p2) or f"{p2 / 1000:.2f} s ({get(rep, 'devices'):,} devices)", "≤ 2 s",
        p2 is not None and p2 <= 2000)
    served = get(rep, "extra", "failover_all_served_s")
    add("one replica killed: every device served again", served,
        missing("replicas", served) or f"after {served:.1f} s", "–", None)

    f = r.get("flotta-poll")
    requests = get(f, "wire", "requests_per_device_hour")
    add("idle requests per device-hour", requests, missing("flotta-poll", requests) or f"{requests:,.1f}",
        "≤ 30", requests is not None and requests <= 30)
    wire = get(f, "wire", "bytes_per_device_hour")
    add("idle bytes per device-hour", wire, missing("flotta-poll", wire) or f"{wire:,.0f}",
        "≤ 15,000", wire is not None and wire <= 15000)
    heartbeat = get(f, "extra", "unchanged_heartbeat_request_bytes")
    add("unchanged heartbeat request", heartbeat,
        missing("flotta-poll", heartbeat) or f"{heartbeat:,.0f} bytes", "≤ 512 bytes",
        heartbeat is not None and heartbeat <= 512)
    return rows


# The target rows of this run, printed last (also when the doc's table fails).
SUMMARY = []


def clip(text, width):
    return text if len(text) <= width else text[: width - 1] + "…"


def print_summary(rows):
    widths = (42, 28, 18)
    print()
    print(f"{'figure':<{widths[0]}}  {'measured':<{widths[1]}}  {'target':<{widths[2]}}  status")
    print("-" * (sum(widths) + 12))  # 100 columns
    for row in rows:
        print(f"{clip(row['figure'], widths[0]):<{widths[0]}}  {clip(row['measured'], widths[1]):<{widths[1]}}  "
              f"{clip(row['target'], widths[2]):<{widths[2]}}  {row['status']}")
    met = sum(row["status"] == "met" for row in rows)
    missed = sum(row["status"] == "MISSED" for row in rows)
    print(f"{met} met, {missed} missed, {len(rows) - met - missed} not judged")


def main():
    directory, doc, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
    svg = sys.argv[4] if len(sys.argv) > 4 else os.path.join(os.path.dirname(doc), "performance-fleet.svg")
    cmd = commands(directory)
    r = {name: load(directory, name) for name in
         ["baseline-ecdsa", "baseline-mtls", "steady-sqlite", "steady-postgres",
          "enrol", "propagate", "reconnect", "flotta-poll", "steady-agents", "rollout",
          "steady-sqlite-http1", "enrol-http1", "propagate-http1", "postgres-cpu", "replicas"]}
    # The targets first: summary.json is written, and the summary printed, even
    # when a report lacks a key the table below needs.
    points = curve_points(directory, r["propagate"])
    fit = fleet_fit(points)
    SUMMARY[:] = targets(r, fit, len(points))
    with open(os.path.join(directory, "summary.json"), "w") as out:
        json.dump({"rows": SUMMARY, "fleet_fit": fit}, out, indent=2, ensure_ascii=False)
        out.write("\n")
    rows = []

    def row(figure, measured, baseline, ratio, target, name):
        command = cmd.get(name, "")
        rows.append(f"| {figure} | {measured} | {baseline} | {ratio} | {target} | `{command}` |")

    bare = r["baseline-mtls"]

    def server_us(report):
        return report["server"]["cpu_seconds"] * 1e6 / max(report["operations"], 1)

    for store in ["sqlite", "postgres"]:
        s = r[f"steady-{store}"]
        if not s:
            continue
        ratio = f"{s['throughput_per_s'] / bare['throughput_per_s']:.2f}" if bare else "–"
        base = f"bare axum mTLS handler: {num(bare['throughput_per_s'])}/s" if bare else "–"
        lat = s["latency"]
        row(f"heartbeats/s, {store} ({s['devices']} devices back to back, "
            f"p50/p99 {lat['p50_ms']:.1f}/{lat['p99_ms']:.1f} ms, {s['errors']} errors, "
            f"server {s['server']['cpu_cores']:.2f} cores)",
            f"**{num(s['throughput_per_s'])}**", base, ratio, "≥ 20,000/s", f"steady-{store}")
        us = server_us(s)
        row(f"server CPU per heartbeat, {store} (capacity of 2 server cores = 2 s / this)",
            f"**{us:.0f} µs** ({num(2e6 / us)}/s on 2 cores)",
            f"bare handler: {server_us(bare):.0f} µs ({num(2e6 / server_us(bare))}/s)" if bare else "–",
            f"{us / server_us(bare):.1f}× the work" if bare else "–", "≤ 100 µs (20,000/s on 2 cores)",
            f"steady-{store}")
    pg, pg_cpu = r["steady-postgres"], r["postgres-cpu"]
    if pg and pg_cpu:
        us = pg_cpu["cpu_seconds"] * 1e6 / max(pg["operations"], 1)
        row("PostgreSQL's own CPU per heartbeat (its processes, over the whole run: an upper bound)",
            f"**{us:.0f} µs** ({pg_cpu['cpu_seconds']:.1f} s for {num(pg['operations'])} heartbeats)",
            "–", "–", "–", "steady-postgres")
    h1 = r["steady-sqlite-http1"]
    h2 = r["steady-sqlite"]
    if h1 and h2:
        row(f"heartbeats/s and server CPU per heartbeat over HTTP/1.1 (same {h1['devices']} light devices, SQLite)",
            f"**{num(h1['throughput_per_s'])}/s, {server_us(h1):.0f} µs**",
            f"HTTP/2: {num(h2['throughput_per_s'])}/s, {server_us(h2):.0f} µs",
            f"HTTP/2 costs {server_us(h2) / server_us(h1):.2f}× the CPU", "–", "steady-sqlite-http1")
    e1 = r["enrol-http1"]
    if e1 and r["enrol"]:
        row(f"enrolments over HTTP/1.1 ({e1['devices']} real agents)",
            f"**{num(e1['throughput_per_s'])}/s, {server_us(e1) / 1000:.2f} ms server CPU each**",
            f"HTTP/2: {num(r['enrol']['throughput_per_s'])}/s, {server_us(r['enrol']) / 1000:.2f} ms",
            "–", "–", "enrol-http1")
    p1 = r["propagate-http1"]
    if p1 and r["propagate"]:
        def per_device_kib(report):
            before = report["extra"].get("server_rss_before_fleet_mib", 0)
            return (report["server"]["rss_start_mib"] - before) * 1024 / max(report["devices"], 1)
        row(f"server memory per long-polling device over HTTP/1.1 ({num(p1['devices'])} light devices)",
            f"**{per_device_kib(p1):.1f} KiB** (p99 propagation {p1['latency']['p99_ms'] / 1000:.2f} s)",
            f"HTTP/2: {per_device_kib(r['propagate']):.1f} KiB (p99 {r['propagate']['latency']['p99_ms'] / 1000:.2f} s)",
            "–", "≤ 16 KiB", "propagate-http1")
    e, ecdsa = r["enrol"], r["baseline-ecdsa"]
    if e:
        ceiling = ecdsa["extra"]["enrolment_ceiling_per_s_2_cores"] if ecdsa else 0
        lat = e["latency"]
        row(f"enrolments/s ({e['devices']} real agents, {e['extra'].get('concurrency', 0):.0f} in flight, "
            f"p50/p99 {lat['p50_ms']:.0f}/{lat['p99_ms']:.0f} ms, {e['errors']} errors, "
            f"server {e['server']['cpu_cores']:.2f} cores)",
            f"**{num(e['throughput_per_s'])}**",
            f"raw P-256 (2 signs + 2 verifies per enrolment, 2 cores): {num(ceiling)}/s"
            + (f"; sign {num(ecdsa['throughput_per_s'])}/s, verify {num(ecdsa['extra']['verify_per_s'])}/s per core" if ecdsa else ""),
            f"{e['throughput_per_s'] / ceiling:.2f}" if ceiling else "–", "≥ 2,000/s", "enrol")
    p = r["propagate"]
    if p:
        lat = p["latency"]
        row(f"propagation to {num(p['devices'])} long-polling devices ({p['model']} model, "
            f"{p['latency']['count']:,} deliveries over 3 changes, {p['errors']} missed)",
            f"**p99 {lat['p99_ms'] / 1000:.2f} s** (p50 {lat['p50_ms'] / 1000:.2f} s, max {lat['max_ms'] / 1000:.2f} s)",
            "–", "–", "p99 ≤ 2 s", "propagate")
        before = p["extra"].get("server_rss_before_fleet_mib", 0)
        per10k = (p["server"]["rss_start_mib"] - before) * 10000 / max(p["devices"], 1)
        row(f"server RSS with {num(p['devices'])} devices connected (long-polling)",
            f"**{p['server']['rss_start_mib']:.0f} MiB** (peak {p['server']['peak_rss_mib']:.0f} MiB; "
            f"{before:.0f} MiB before the fleet: {per10k:.0f} MiB more per 10,000 devices)",
            "–", "–", "–", "propagate")
    c = r["reconnect"]
    if c:
        lat = c["latency"]
        row(f"server restart under load ({num(c['devices'])} devices, heartbeat every "
            f"{c['extra']['period_s']:.0f} s)",
            f"**all back {c['extra']['all_back_after_s']:.1f} s** after the server listened again "
            f"(p50 {lat['p50_ms'] / 1000:.2f} s, p99 {lat['p99_ms'] / 1000:.2f} s; restart took "
            f"{c['extra']['server_restart_s']:.1f} s; {c['errors']} errors)",
            "–", "–", "–", "reconnect")
    f = r["flotta-poll"]
    if f:
        x = f["extra"]
        wait = x.get("long_poll_s", 60)
        silence = x.get("max_silence_s", 60)
        window = x.get("window_ours_s", f.get("window_s", 0))
        row(f"bytes on the wire per device-hour, idle ({num(f['devices'])} devices over {window:.0f} s; "
            f"HTTP/2, long-poll {wait:.0f} s + ETag, heartbeat after {silence:.0f} s of silence)",
            f"**{num(f['wire']['bytes_per_device_hour'])}**",
            f"Flotta's 5 s full-config polling, heartbeat every 60 s (HTTP/1.1): "
            f"{num(x['flotta_bytes_per_device_hour'])}",
            f"{1 / x['bytes_ratio_flotta_to_ours']:.3f}" if x['bytes_ratio_flotta_to_ours'] else "–",
            "≤ 15,000", "flotta-poll")
        row("requests per device-hour, idle",
            f"**{num(f['wire']['requests_per_device_hour'], 1)}**",
            f"Flotta: {num(x['flotta_requests_per_device_hour'], 1)}",
            f"{1 / x['requests_ratio_flotta_to_ours']:.3f}" if x['requests_ratio_flotta_to_ours'] else "–",
            "≤ 30", "flotta-poll")
        if "server_cpu_ms_per_device_hour" in x:
            row("server CPU per idle device-hour",
                f"**{x['server_cpu_ms_per_device_hour']:.1f} ms**",
                f"Flotta's polling: {x.get('flotta_server_cpu_ms_per_device_hour', 0):.1f} ms",
                f"{x['server_cpu_ms_per_device_hour'] / x['flotta_server_cpu_ms_per_device_hour']:.3f}"
                if x.get("flotta_server_cpu_ms_per_device_hour") else "–",
                "–", "flotta-poll")
        if 'unchanged_heartbeat_request_bytes' in x:
            row("unchanged heartbeat on an open connection (the device's request, TLS records)",
                f"**{num(x['unchanged_heartbeat_request_bytes'])} bytes** "
                f"({num(x['unchanged_heartbeat_bytes'])} with the server's reply)",
                "–", "–", "≤ 512 bytes", "flotta-poll")
        else:
            row("unchanged heartbeat on an open connection (request + response, TLS records)",
                f"**{num(x['unchanged_heartbeat_bytes'])} bytes**", "–", "–", "≤ 512 bytes", "flotta-poll")
    a = r["steady-agents"]
    if a:
        x = a["extra"]
        row(f"real agents in one simulator process ({num(a['devices'])} `flotta-agent-lib` agents, "
            f"{x['source_addresses']:.0f} source address(es), idle: heartbeats only on change, "
            f"{num(a['throughput_per_s'], 1)}/s; {a['errors']} errors)",
            f"**{x['simulator_rss_mib']:.0f} MiB** simulator RSS ({x['simulator_rss_per_agent_kib']:.0f} KiB per agent); "
            f"server RSS {a['server']['rss_end_mib']:.0f} MiB; descriptors open: simulator "
            f"{num(x['simulator_open_files'] or 0)}, server {num(x['server_open_files'] or 0)} (hard limit 20,000 each)",
            "–", "–", "10,000 agents", "steady-agents")

    rep = r["replicas"]
    if rep:
        x = rep["extra"]
        lat, one_lat = rep["latency"], x["one_replica_latency"]
        row(f"heartbeats/s on two replicas sharing one PostgreSQL ({num(rep['devices'])} light devices back to "
            f"back, device i on replica i mod 2; p50/p99 {lat['p50_ms']:.1f}/{lat['p99_ms']:.1f} ms; server CPU "
            f"of both replicas)",
            f"**{num(x['two_replicas_heartbeats_per_s'])}/s, {x['two_replicas_cpu_us_per_heartbeat']:.0f} µs**",
            f"one replica, same devices: {num(x['one_replica_heartbeats_per_s'])}/s, "
            f"{x['one_replica_cpu_us_per_heartbeat']:.0f} µs (p50/p99 {one_lat['p50_ms']:.1f}/{one_lat['p99_ms']:.1f} ms)",
            f"{x['scale_out_factor']:.2f}× the rate", "–", "replicas")
        two_p, one_p, to_b = x["two_replicas_propagation"], x["one_replica_propagation"], x["two_replicas_propagation_to_b"]
        row(f"propagation on two replicas ({num(rep['devices'])} long-polling devices, change made on A, "
            f"{x['propagation_rounds']} changes)",
            f"**p99 {two_p['p99_ms'] / 1000:.2f} s** (devices on B: p50 {to_b['p50_ms'] / 1000:.2f} s, "
            f"p99 {to_b['p99_ms'] / 1000:.2f} s)",
            f"one replica: p99 {one_p['p99_ms'] / 1000:.2f} s", "–", "p99 ≤ 2 s", "replicas")
        rec = x["failover_recovery"]
        served = x["failover_all_served_s"]
        row(f"one of two replicas killed (SIGKILL) under load ({num(x['failover_devices_moved'])} of its devices, "
            f"heartbeat every {x['failover_period_s']:.0f} s, long-poll between; a device moves to the other "
            f"replica when a request fails)",
            f"**every device served again after {served:.1f} s**" if served is not None
            else f"**{num(x['failover_not_back'])} devices not served again**",
            f"per device p50 {rec['p50_ms'] / 1000:.2f} s, p99 {rec['p99_ms'] / 1000:.2f} s; "
            f"{num(x['failover_survivor_errors'])} errors on the surviving replica", "–", "–", "replicas")

    o = r["rollout"]
    if o:
        x = o["extra"]
        lat = o["latency"]
        sizes = "/".join(str(b["devices"]) for b in x["batches"])
        durations = ", ".join(f"{b['duration_s']:.2f}" for b in x["batches"] if b["duration_s"] is not None)
        row(f"enforced rollout to {num(o['devices'])} long-polling devices (light model, batches of "
            f"{sizes}, success threshold 100 %, {len(o.get('violations', []))} deliveries outside a "
            f"released batch, {o['errors']} errors)",
            f"**{x['total_s']:.2f} s** change → rollout complete (per batch, release → last report: "
            f"{durations} s; release → device has it p50/p99 {lat['p50_ms'] / 1000:.2f}/{lat['p99_ms'] / 1000:.2f} s)",
            f"no policy, every device at once: {x['baseline_total_s']:.2f} s",
            f"{x['ratio_to_baseline']:.1f}×", "–", "rollout")

    # The fleet-size curve: a table of its points, the plot and the fitted line.
    curve = []
    if any(point["name"] != "propagate" for point in points):
        curve += ["", "Fleet-size curve: `flotta-sim propagate --allow-errors --no-progress --devices N "
                  "--model light --wait 60` for each size, plus the propagation run above.", "",
                  "| devices connected | server RSS | per device | propagation p50 / p99 | missed | report |",
                  "|---|---|---|---|---|---|"]
        for point in points:
            kib = point["per_device_kib"]
            latency = (f"{point['p50_s']:.2f} / {point['p99_s']:.2f} s"
                       if point["p99_s"] is not None else "–")
            curve.append(f"| {num(point['devices'])} | {point['rss_mib']:.0f} MiB | "
                         f"{f'{kib:.1f} KiB' if kib is not None else '–'} | {latency} | "
                         f"{num(point['missed'])} | `{point['name']}` |")
    if fit:
        subtitle = (f"flotta-server (release), light model, long-poll wait 60 s, mTLS on loopback; "
                    f"{len(points)} runs of {time.strftime('%Y-%m-%d', time.gmtime())}")
        with open(svg, "w") as out:
            out.write(plot.fleet_svg(points, (fit["kib_per_device"], fit["intercept_mib"]), subtitle))
        image = os.path.relpath(svg, os.path.dirname(os.path.abspath(doc))).replace(os.sep, "/")
        curve += ["", f"![Server RSS and propagation latency against fleet size]({image})", "",
                  f"Fitted: {fit['kib_per_device']:.1f} KiB per connected device + "
                  f"{fit['intercept_mib']:.0f} MiB; 1,000,000 devices would need about "
                  f"{fit['gib_for_1m_devices']:,.0f} GiB on one node at this slope."]
        print(f"fleet curve: {len(points)} points, fitted {fit['kib_per_device']:.2f} KiB per device "
              f"+ {fit['intercept_mib']:.1f} MiB; wrote {svg}")
    else:
        print(f"fleet curve: no plot, {len(points)} point(s) with server RSS "
              f"(at least 2 fleet sizes needed; BENCH_CURVE_SIZES runs them)")

    body = [
        BEGIN,
        "",
        f"Last run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `bench/run.sh` "
        f"({int(seconds) // 60} min {int(seconds) % 60} s, release build, server and simulator sharing "
        f"the same {os.cpu_count()} cores; reports in `$CARGO_TARGET_DIR/bench/*.json`).",
        "",
        "| figure | measured | same-run baseline | ratio | target | command |",
        "|---|---|---|---|---|---|",
        *rows,
        *curve,
        "",
        END,
    ]
    text = open(doc).read() if os.path.exists(doc) else "# Performance\n"
    if BEGIN in text and END in text:
        before = text[: text.index(BEGIN)]
        after = text[text.index(END) + len(END):]
        text = before + "\n".join(body) + after
    else:
        text = text.rstrip("\n") + "\n\n## Fleet simulator\n\n" + "\n".join(body) + "\n"
    with open(doc, "w") as out:
        out.write(text)
    print(f"rewrote the flotta-sim figures in {doc}")


if __name__ == "__main__":
    try:
        main()
    finally:
        if SUMMARY:
            print_summary(SUMMARY)
