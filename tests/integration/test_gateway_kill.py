"""kill -9: the gateway is SIGKILLed mid-stream four times and restarted; every spooled reading reaches the
real broker with no gap in its device's sequence numbers (exact redeliveries allowed).

The gateway runs as a subprocess with simulated devices (400 readings/s, commits every 50 ms, a message per
device every 100 ms); a subscriber records everything under the gateway's topics. The ground truth is the
spool itself, read after the last, clean exit: each device's sequence counter says how many readings were
ever committed, and every one of them must have arrived.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from districtpulse.config import Endpoints
from tests.support.gateway_mqtt import Recorder, check_delivery, clear_retained, spooled_counters

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[gateway]
id = "{gateway}"
district = "{district}"
publish_interval_s = 0.1
heartbeat_interval_s = 0.5
max_batch_readings = 200

[mqtt]
host = "{host}"
port = {port}
keepalive = 10
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[spool]
path = "spool.sqlite"
commit_interval_ms = 50

[[adapter]]
type = "simulated"
count = 8
interval_s = 0.02
ticks = {ticks}
"""


def _start(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DP_LOG_FORMAT": "text"}
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), *extra],
            cwd=config.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def test_every_spooled_reading_survives_four_sigkills(
    endpoints: Endpoints, tmp_path: Path, unique_district: str
) -> None:
    district, gateway = unique_district, f"{unique_district}-gw"
    status = f"dp/v1/{district}/{gateway}/status"
    fields = {"gateway": gateway, "district": district, "host": endpoints.mqtt_host, "port": endpoints.mqtt_port}
    forever, final = tmp_path / "forever.toml", tmp_path / "final.toml"
    forever.write_text(CONFIG.format(ticks=0, **fields))
    final.write_text(CONFIG.format(ticks=25, **fields))
    log = tmp_path / "gateway.log"
    recorder = Recorder(endpoints.mqtt_host, endpoints.mqtt_port, f"dp/v1/{district}/{gateway}/#")
    try:
        # Kill at different depths into each life: just after the first messages, and deeper.
        for life, more_readings in enumerate((40, 300, 120, 600)):
            before = recorder.readings()
            lost = sum(1 for s in recorder.statuses() if s.get("reason") == "connection lost")
            proc = _start(forever, log)
            try:
                target = before + more_readings
                recorder.wait_for(lambda t=target: recorder.readings() >= t, 60, f"life {life}: {target} readings")
            finally:
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(30) == -signal.SIGKILL
            # the broker saw the connection die without a DISCONNECT: it published the Last Will
            recorder.wait_for(
                lambda n=lost: sum(1 for s in recorder.statuses() if s.get("reason") == "connection lost") > n,
                30,
                f"life {life}: the Last Will",
            )

        # The last life produces 25 more ticks, delivers everything and exits by itself.
        proc = _start(final, log, "--exit-when-idle")
        assert proc.wait(120) == 0, log.read_text()[-3000:]
        recorder.wait_for(lambda: any(s.get("reason") == "shutdown" for s in recorder.statuses()), 30, "shutdown")

        next_seq, left, counters = spooled_counters(tmp_path / "spool.sqlite")
        assert left == 0  # everything acknowledged and deleted
        assert not any(name.startswith("evicted") for name in counters)
        assert len(next_seq) == 8
        total = sum(next_seq.values())
        recorder.wait_for(lambda: recorder.readings() >= total, 30, f"{total} readings")
        report = check_delivery(recorder.snapshot(), next_seq)
        assert report["readings"] == total
        assert total > 25 * 8  # the killed lives spooled readings too, not only the last one
        shutdown = recorder.statuses()[-1]
        assert (shutdown["state"], shutdown["reason"], shutdown["spool"]["readings"]) == ("offline", "shutdown", 0)
        print(f"kill -9 x4: {report} from {total} spooled")
    finally:
        recorder.close()
        clear_retained(endpoints.mqtt_host, endpoints.mqtt_port, status)
