"""Monitoring: the metrics catalog (``catalog``) and what is generated from it: Prometheus alert rules,
Grafana dashboards, CloudWatch alarms and metrics, the training exporter and an HTML dashboard.
Imports no torch."""
