"""The operators' live view: `districtpulse dashboard`.

An ASGI app (Starlette) that shows, per district, whether every device is reporting, whether the data is
good and today's figures; drills down to buildings and devices; evaluates alert rules continuously and
exports them on `/metrics`. Data access lives in `sources`, composition in `snapshot`, rules in `alerts`,
HTML in `render` and its Jinja2 `templates/`, login in `auth`, password-guessing limits in `throttle`.
"""

from dashboard.alerts import Alert, AlertBook, Finding, evaluate
from dashboard.app import create_app
from dashboard.config import ConfigError, DashboardConfig
from dashboard.snapshot import Collector, Snapshot
from dashboard.throttle import LoginThrottle

__all__ = [
    "Alert",
    "AlertBook",
    "Collector",
    "ConfigError",
    "DashboardConfig",
    "Finding",
    "LoginThrottle",
    "Snapshot",
    "create_app",
    "evaluate",
]
