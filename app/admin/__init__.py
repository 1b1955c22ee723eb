"""Operator actions, free of HTTP, one module per concern (tenants, connections, records,
replay, dead letters, refusals, erasure, statistics, admin keys, the tenants file); the admin
API, the CLI and the console all call them, through ``app.admin.service``."""
