"""A minimal station process for the MQTT tests: publishes synthetic results, then stops or waits.

Run as ``python -m tests.integration.mqtt_station --port P --outbox FILE --count N`` from the
repository root. It prints ``ready``, then ``enqueued SEQ`` per result, then ``holding`` (with
``--hold``: reads ``publish N`` lines from stdin and answers ``done``, until killed) or
``stopped FLUSHED``. Tests kill it with SIGKILL to check the Will and the outbox's replay.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from edge.publish.client import MqttPublisher
from edge.publish.config import MqttConfig
from shared.messages import Box, Defect, PatchSummary, ResultMessage, StationState, Verdict

LINE, STATION = "line1", "st1"


def make_result(publisher: MqttPublisher, index: int, ng_every: int = 3) -> ResultMessage:
    """A plausible result; every ``ng_every``-th frame is NG with one defect."""
    seq, result_id = publisher.next_result_ids()
    now = datetime.now(timezone.utc)
    ng = index % ng_every == 0
    defects = [Defect(box=Box(x=10 + index, y=20, w=8, h=6), area_px=30, max_score=0.93, mean_score=0.71)] if ng else []
    return ResultMessage(
        result_id=result_id,
        seq=seq,
        session=publisher.session,
        line=publisher.line,
        station=publisher.station,
        frame_id=f"frame-{index:05d}",
        source="synthetic",
        captured_at=now,
        processed_at=now,
        frame_width_px=640,
        frame_height_px=480,
        verdict=Verdict.NG if ng else Verdict.OK,
        defects=defects,
        patches=PatchSummary(count=64, max_score=0.97 if ng else 0.12, flagged=2 if ng else 0),
        latency_ms=40.0 + index,
        models={"classifier": "cls@1.0.0+0123456789ab"},
    )


def publish(publisher: MqttPublisher, start: int, count: int, interval_s: float) -> int:
    """Publish ``count`` results from frame index ``start``; returns the next index."""
    for index in range(start, start + count):
        result = make_result(publisher, index)
        publisher.publish_result(result)
        print(f"enqueued {result.seq}", flush=True)
        time.sleep(interval_s)
    return start + count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outbox", type=Path, required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--start-index", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--will-delay", type=int, default=1)
    parser.add_argument("--status-expiry", type=int, default=60, help="status lease, s (0: none)")
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    config = MqttConfig(
        host="127.0.0.1",
        port=args.port,
        outbox_path=args.outbox,
        will_delay_s=args.will_delay,
        status_expiry_s=args.status_expiry or None,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )
    publisher = MqttPublisher(config, line=LINE, station=STATION, software_version="test", config_hash="test")
    publisher.start()
    publisher.set_status(StationState.ONLINE)
    print("ready", flush=True)
    index = publish(publisher, args.start_index, args.count, args.interval)
    if args.hold:
        print("holding", flush=True)
        for line in sys.stdin:
            index = publish(publisher, index, int(line.split()[1]), args.interval)
            print("done", flush=True)
        while True:
            time.sleep(1)
    print(f"stopped {publisher.stop(timeout_s=8)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
