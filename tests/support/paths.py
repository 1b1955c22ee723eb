"""Where things are in the repository, wherever the test module using them sits."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
