#!/usr/bin/env python3
"""Rewrites the figures between the flotta-sim markers of docs/performance.md from
the JSON reports bench/run.sh wrote. Usage: figures.py REPORT_DIR DOC SECONDS"""
import json
import os
import re
import sys
import time

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


def main():
    directory, doc, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
    cmd = commands(directory)
    r = {name: load(directory, name) for name in
         ["baseline-ecdsa", "baseline-mtls", "steady-sqlite", "steady-postgres",
          "enrol", "propagate", "reconnect", "flotta-poll", "steady-agents", "rollout"]}
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
        row(f"bytes on the wire per device-hour, idle ({num(f['devices'])} devices, heartbeat every 60 s)",
            f"**{num(f['wire']['bytes_per_device_hour'])}** (long-poll 60 s + ETag)",
            f"Flotta's 5 s full-config polling: {num(x['flotta_bytes_per_device_hour'])}",
            f"{1 / x['bytes_ratio_flotta_to_ours']:.3f}" if x['bytes_ratio_flotta_to_ours'] else "–",
            "–", "flotta-poll")
        row("requests per device-hour, idle",
            f"**{num(f['wire']['requests_per_device_hour'], 1)}**",
            f"Flotta: {num(x['flotta_requests_per_device_hour'], 1)}",
            f"{1 / x['requests_ratio_flotta_to_ours']:.3f}" if x['requests_ratio_flotta_to_ours'] else "–",
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
            f"{x['source_addresses']:.0f} source address(es), heartbeats at the server's period: "
            f"{num(a['throughput_per_s'], 1)}/s, {a['errors']} errors)",
            f"**{x['simulator_rss_mib']:.0f} MiB** simulator RSS ({x['simulator_rss_per_agent_kib']:.0f} KiB per agent); "
            f"server RSS {a['server']['rss_end_mib']:.0f} MiB; descriptors open: simulator "
            f"{num(x['simulator_open_files'] or 0)}, server {num(x['server_open_files'] or 0)} (hard limit 20,000 each)",
            "–", "–", "10,000 agents", "steady-agents")

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
    main()
