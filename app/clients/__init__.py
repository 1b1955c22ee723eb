"""Clients for the ATS REST APIs, one module per ATS, all built on :mod:`app.clients.base`."""
