"""DistrictPulse: the application layer (one CLI, the local services, the demo).

The components live in their own top-level packages (`devices`, `gateway`, `ingest`, `aggregation`,
`simulators`); this package only composes them. Nothing in the components imports it.
"""

__version__ = "0.1.0"
