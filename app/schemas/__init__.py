"""Typed event models, one module per source."""
