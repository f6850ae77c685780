"""Helpers shared by the test modules (which import only from here, and take fixtures from conftest.py).

No module here is named test_*.py and none defines a test_* function or Test* class, so pytest collects
nothing from it; the root conftest has pytest rewrite the asserts here as it does in test modules.

- adapter_sink: a sink for gateway adapters that records what they put, with a scripted clock
- clock_script: a scripted gateway clock and an adapter that reads through its sync phases
- dashboard_fakes: in-memory readers, hand-made views and logins for the dashboard's tests
- delivery: a `districtpulse gateway` process, and the check that InfluxDB holds each spooled reading once
- eemeter: eemeter's sample meters and recorded results, run through `districtpulse savings`
- fastpath_contract: ingest's fast path against `devices.validate_message`, and mutated messages
- gateway_fakes: an in-memory publisher, scripted adapters and a fixed clock for the gateway service
- gateway_mqtt: MQTT on the real broker as gateways speak it (recorder, publisher, delivery check, gateway thread)
- influx_servers: InfluxDB's HTTP side faked on loopback (a scripted HTTP/1.1 server, a fake 2.x)
- influx_writes: simulated messages written straight into InfluxDB as ingest would
- ingest: ingest on the real services (in-process pipeline, settings, `python -m ingest`)
- ingest_fakes: an in-memory broker side and database for ingest's Pipeline
- live_district: a district publishing live readings, for the dashboard's browser test
- net: loopback ports and a TCP proxy that can cut a live connection
- ocpp_gateway: a gateway's OCPP side with a real spool and the `ocpp` package's charge point
- readings: electricity-meter readings and messages of the small registry's meter
- registries: the registries the tests share
- server_threads: the real ingest pipeline and dashboard server, each on a thread with its own loop
- services: the real services (private instances, environment, InfluxQL queries, stopping one service)
- sim_ingest: an in-process ingest for the simulators' integration tests, with their queries
- simulation: running a simulation and collecting what it sent; the recorded meter data
- waiting: polling a condition in async tests
"""
