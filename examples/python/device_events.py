"""Show what happened to a device: its recent events (failed applies, rollbacks,
registration, renewals), oldest first, then optionally follow new ones.

    python examples/python/device_events.py edge-01
    python examples/python/device_events.py edge-01 --follow --warnings
"""

from __future__ import annotations

import argparse
import sys

import flotta


def line(event: flotta.Event) -> str:
    repeated = f" (x{event.count})" if event.count > 1 else ""
    when = event.to_dict().get("lastTimestamp") or "?"
    return f"{when}  {event.type:<8} {event.reason}{repeated}: {event.message}"


def main() -> int:
    parser = argparse.ArgumentParser(description="Show what happened to a device, from its events.")
    parser.add_argument("device", help="the device id (EdgeDevice name)")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--config", help="client configuration (default: $FLOTTA_CONFIG, else ./flotta-data/admin.yaml)")
    parser.add_argument("--warnings", action="store_true", help="only Warning events")
    parser.add_argument("--follow", action="store_true", help="then print new events until Ctrl-C")
    args = parser.parse_args()

    client = flotta.Client.from_config(args.config)
    selector = f"involvedObject.kind=EdgeDevice,involvedObject.name={args.device}"
    if args.warnings:
        selector += ",type=Warning"
    try:
        events = client.events.list(args.namespace, field_selector=selector)
    except flotta.FlottaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    events.sort(key=lambda e: str(e.to_dict().get("lastTimestamp") or ""))
    for event in events:
        print(line(event))
    if not events:
        print(f"no events about {args.device}")
    if args.follow:
        seen = {(e.name, e.count) for e in events}
        with client.events.watch(args.namespace, field_selector=selector) as watch:
            for change in watch:
                recorded = change.object
                if change.type in ("ADDED", "MODIFIED") and isinstance(recorded, flotta.Event):
                    if (recorded.name, recorded.count) not in seen:
                        seen.add((recorded.name, recorded.count))
                        print(line(recorded), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
