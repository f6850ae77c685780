"""Gateway status documents are hostile input: whatever a retained status holds, the dashboard's view of the
gateway is built (fields of the wrong type or size read as unknown) and a refresh never fails on it."""

from __future__ import annotations

import pytest

from dashboard.snapshot import gateway_view
from dashboard.sources import MAX_STATUS_BYTES, parse_status

NOW = 1_750_000_000_000

HOSTILE = [
    b'{"state":"online","ts":Infinity}',
    b'{"state":"online","ts":-Infinity}',
    b'{"state":"online","ts":NaN}',
    b'{"state":"online","ts":1e400}',
    b'{"state":"online","ts":1e300,"spool":{"readings":1e300,"oldest_age_s":-1e300}}',
    b'{"state":"online","ts":true,"spool":{"readings":"many","oldest_age_s":[1]}}',
    b'{"state":"online","ts":123456789012345678901234567890}',
    b'{"state":{"nested":1},"reason":{"a":[1,2,3]},"version":12,"clock":{"sync":null}}',
    b'{"state":"online","spool":[],"clock":"synced"}',
    b'\xff\xfe{"state":"online"}',
    b'{"state":"online","reason":"' + b"x" * 10_000 + b'"}',
    b"{" * 10_000,
    b" " * (MAX_STATUS_BYTES + 1),
    b"",
    b"null",
    b"1",
]


@pytest.mark.parametrize("payload", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("retained", [True, False])
def test_any_status_document_gives_a_gateway_view(payload: bytes, retained: bool) -> None:
    status = parse_status("gw", payload, NOW, retained)
    view = gateway_view("gw", "b1", 3, status, NOW, late_after_s=60.0)
    assert view.state in ("online", "offline", "late", "unknown")
    for number in (view.heartbeat_age_s, view.skew_s, view.spool_oldest_age_s):
        assert number is None or abs(number) < 1e13
    assert view.spool_readings is None or isinstance(view.spool_readings, int)
    for text in (view.reason, view.version, view.clock_sync):
        assert text is None or (isinstance(text, str) and len(text) <= 200)


def test_non_finite_numbers_are_refused_at_the_decoder_and_read_as_unknown() -> None:
    status = parse_status("gw", b'{"state":"online","ts":Infinity}', NOW, retained=True)
    assert status.doc == {"state": "unknown", "error": "status is not valid JSON"}
    assert gateway_view("gw", "b1", 3, status, NOW, late_after_s=60.0).state == "unknown"
    # A finite but absurd timestamp is read as no timestamp, not as a heartbeat from the year 30,000.
    absurd = parse_status("gw", b'{"state":"online","ts":1e300}', NOW, retained=True)
    view = gateway_view("gw", "b1", 3, absurd, NOW, late_after_s=60.0)
    assert (view.state, view.heartbeat_age_s) == ("online", None)


def test_an_oversized_status_is_refused_unread() -> None:
    status = parse_status("gw", b" " * (MAX_STATUS_BYTES + 1), NOW, retained=True)
    assert status.state == "unknown" and "more than 65536" in status.doc["error"]
