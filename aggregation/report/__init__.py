"""The funder report: one command turns a district's KPIs into the document a programme accepts.

collect    what is read from InfluxDB (through storage): the daily KPIs, savings to date, the accounts
document   the report as one JSON-able document (pure), its input digest and `--verify`'s comparison
render     HTML (self-contained, charts inline), JSON, and the PDF printed from the HTML by Chromium
cli        `districtpulse report`
"""

from aggregation.report.collect import Period, ReportData, collect
from aggregation.report.document import CRITERIA, assemble, differences, input_digest

__all__ = ["CRITERIA", "Period", "ReportData", "assemble", "collect", "differences", "input_digest"]
