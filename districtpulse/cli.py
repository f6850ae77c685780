"""`districtpulse`: one command, a subcommand per component.

Subcommand modules are imported only when chosen, so `districtpulse gateway` works on a Pi that has no
numba, numpy or InfluxDB client installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, or module:attribute, with add_arguments(parser) and run(args) -> int; help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "services": ("districtpulse.services.cli", "start, stop or inspect the local Mosquitto and InfluxDB"),
    "demo": ("districtpulse.demo", "run one simulated district day end to end and print the KPIs"),
    "gateway": ("gateway.cli", "run an edge gateway"),
    "ingest": ("ingest.cli", "consume readings from MQTT into InfluxDB"),
    "quarantine": ("ingest.quarantine_cli", "list quarantined readings, or replay them after a registry fix"),
    "simulate": ("simulators.cli", "simulate a district and publish it like its gateways"),
    "aggregate": ("aggregation.cli:aggregate", "compute daily KPI series from InfluxDB, revising late data"),
    "savings": ("aggregation.cli:savings", "weather-normalised metered savings (CalTRACK 2.0) from CSV files"),
    "report": ("aggregation.report.cli", "a district's KPI report for its programme: HTML, PDF and JSON"),
    "dashboard": ("dashboard.cli", "serve the operators' live view: devices, data quality, KPIs, alerts"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="districtpulse", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # import only the chosen component
            path, _, attribute = module.partition(":")
            command = importlib.import_module(path)
            if attribute:
                command = getattr(command, attribute)
            command.add_arguments(p)
            p.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    from devices import logs

    logs.setup()
    try:
        code: int = args._run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
