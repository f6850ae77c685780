"""`districtpulse dashboard [--config dashboard.toml]`: serve the live view with uvicorn.

Without `--config`, the defaults apply (demo registry, the DP_* services) and one operator is taken from
the environment: `DP_DASHBOARD_PASSWORD` (user `operator`, or `DP_DASHBOARD_USER`). With neither, the
command refuses to start rather than serve an open dashboard by accident.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from datetime import datetime
from pathlib import Path

from dashboard.config import ConfigError, DashboardConfig

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="dashboard.toml (see dashboard/config.py)")
    p.add_argument("--host", help="listen address (default: the config's, 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default: the config's, 8050; 0 = any free port)")
    p.add_argument(
        "--as-of",
        type=datetime.fromisoformat,
        help="show the district as it was at this moment (ISO 8601 with offset), e.g. the end of a demo day",
    )
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")


def load_config(path: Path | None) -> DashboardConfig:
    if path is not None:
        return DashboardConfig.load(path)
    raw: dict[str, object] = {}
    password = os.environ.get("DP_DASHBOARD_PASSWORD")
    if password:
        user = os.environ.get("DP_DASHBOARD_USER", "operator")
        raw["auth"] = {"user": [{"name": user, "role": "operator", "password_env": "DP_DASHBOARD_PASSWORD"}]}
    return DashboardConfig.from_mapping(raw, source="defaults (no --config; set DP_DASHBOARD_PASSWORD)")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if args.as_of is not None:
        if args.as_of.tzinfo is None:
            log.error("--as-of needs a UTC offset, e.g. 2026-11-22T20:00:00+02:00")
            return 2
        pinned = config.dashboard.model_copy(update={"as_of": args.as_of})
        config = config.model_copy(update={"dashboard": pinned})
    if args.check:
        print(f"dashboard: configuration OK ({len(config.alerts.rule)} alert rules, {len(config.auth.user)} users)")
        return 0
    import uvicorn

    from dashboard.app import create_app

    host = args.host or config.dashboard.host
    port = config.dashboard.port if args.port is None else args.port
    if host != config.dashboard.host:  # the app decides on the cookie's Secure flag by the address it binds
        config = config.model_copy(update={"dashboard": config.dashboard.model_copy(update={"host": host})})
    sock = bind(host, port)
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), log_config=None, access_log=False, timeout_graceful_shutdown=3)
    )
    print(f"dashboard: {url_of(sock)}", flush=True)
    server.run(sockets=[sock])
    return 0


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so that port 0 gives a known free port to print (and no race for it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
