"""Every SQL statement of the application.

Each function takes a connection and never commits: the caller owns the transaction (the
request path: one statement or one transaction per event; a job; a poll page). Statements are
built once at import, so a call costs binding and a round trip, nothing more.
"""
