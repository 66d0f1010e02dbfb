"""Model versions and what identifies them. Today: the stage manifest every trained model carries
(``registry.manifest``); the MLflow-backed registry with aliases, lineage and an audit log lands here too.
Imports no torch."""
