"""The aggregation jobs: what reads readings from InfluxDB (through `storage`) and writes KPI series back.

    daily       the daily KPI job: energy per building and carrier, district figures, completeness, CO2
    savings     metered savings and CO2 avoided for buildings with a retrofit date (CalTRACK daily)
    accounts    completeness from sequence numbers: the aggregate queries behind `aggregation.completeness`
    revisions   how a stored KPI point is revised (one model for both jobs)

The rest of `aggregation` is kernels and their references, which know nothing of a database.
"""
