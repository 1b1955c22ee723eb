"""The strength rule for configured secrets (app.platform.secret_strength)."""

from __future__ import annotations

import pytest

from app.platform.secret_strength import require_strong_secret


def test_require_strong_secret() -> None:
    require_strong_secret("k" * 32, what="signing secret")
    short = "q7Zr" * 7 + "abc"
    assert len(short) == 31
    with pytest.raises(ValueError, match="signing secret must be at least 32 characters") as e:
        require_strong_secret(short, what="signing secret")
    assert short not in str(e.value)
    with pytest.raises(ValueError, match="at least 32"):
        require_strong_secret(f"  {short}\n", what="signing secret")
