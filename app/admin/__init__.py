"""Operator actions (tenants, connections, records, replay, dead letters, statistics, admin
keys), free of HTTP: the admin API, the CLI and the console all call these."""
