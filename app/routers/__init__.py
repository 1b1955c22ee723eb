"""HTTP endpoints, one module per source; thin: read, verify, parse, hand over, answer."""
