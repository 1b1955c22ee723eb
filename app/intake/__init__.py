"""The intake core: from a verified request to a committed record. Body decoding and caps
(``payload``), the brute-force guard (``guard``), connection lookup (``connections``), the
recording itself (``core``: dedupe, thread heads, outbox, answers) over group commit
(``app.platform.group_commit``), refusals kept for operators (``refusals``), link tokens
and validation messages. It knows no router, worker, client or source: they call it."""
