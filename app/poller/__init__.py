"""Polling ATS APIs that have no webhooks (see docs/polling.md).

:mod:`app.poller.position` is the cursor of one resource, :mod:`app.poller.items` turns listed
items into intake events, and :mod:`app.poller.run` pages through a connection's resources under
its lock, committing each page's records together with its cursor.
"""
