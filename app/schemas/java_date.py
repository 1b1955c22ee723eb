"""Java ``SimpleDateFormat`` patterns, the way Cloud Elements writes polling date formats:
formatting a cursor into a URL and parsing an item's dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

# [C] Cloud Elements writes date formats as Java SimpleDateFormat patterns
# (docs/ats/cloudelements.md). The letters
# below cover every numeric ISO-like form; names of months or days are refused at load time.
_LETTERS = re.compile(r"'(?:[^']|'')*'|([A-Za-z])\1*|.", re.DOTALL)
_ZONE_RE = r"Z|[+-]\d{2}(?::?\d{2})?"


class JavaDateFormat:
    """A Java ``SimpleDateFormat`` pattern (numeric fields only), to format and parse dates."""

    def __init__(self, pattern: str) -> None:
        if not pattern:
            raise ValueError("a date format may not be empty")
        self.pattern = pattern
        self._parts: list[tuple[str, str]] = []  # (kind, text): kind "lit" or the letter run
        regex = []
        for match in _LETTERS.finditer(pattern):
            chunk = match.group(0)
            if chunk.startswith("'") and len(chunk) >= 2:
                # 'text' is literal text; '' is one quote, inside or outside quotes.
                literal = "'" if chunk == "''" else chunk[1:-1].replace("''", "'")
                self._parts.append(("lit", literal))
                regex.append(re.escape(literal))
            elif match.group(1):
                regex.append(self._field(chunk))
                self._parts.append((chunk, chunk))
            else:
                self._parts.append(("lit", chunk))
                regex.append(re.escape(chunk))
        try:
            self._regex = re.compile("".join(regex) + r"\Z")
        except re.error:
            # re.error is no ValueError: a repeated field ("yyyy-yyyy") escaped validation.
            raise ValueError(f"date format {pattern!r} names a field twice") from None

    @staticmethod
    def _field(token: str) -> str:
        letter, width = token[0], len(token)
        if letter == "y" and width in (2, 4):
            return rf"(?P<y>\d{{{width}}})"
        if letter in "MdHms" and width <= 2:
            name = {"M": "mo", "d": "d", "H": "h", "m": "mi", "s": "s"}[letter]
            return rf"(?P<{name}>\d{{{width},2}})"
        if letter == "S" and width <= 9:
            return rf"(?P<f>\d{{{width}}})"
        if letter in "XZ" and width <= 3:
            return rf"(?P<z>{_ZONE_RE})"
        raise ValueError(
            f"date format letter {token!r} is not supported (use y, M, d, H, m, s, S, X or Z)"
        )

    def format(self, moment: datetime) -> str:
        """``moment`` written in this pattern (in its own time zone)."""
        out = []
        for kind, text in self._parts:
            if kind == "lit":
                out.append(text)
                continue
            letter, width = kind[0], len(kind)
            if letter == "y":
                out.append(f"{moment.year % 100:02d}" if width == 2 else f"{moment.year:04d}")
            elif letter == "S":
                # Fractions are truncated, never rounded up: a cursor must not move forward.
                out.append(f"{moment.microsecond:06d}".ljust(9, "0")[:width])
            elif letter in "XZ":
                out.append(_zone_text(moment, letter, width))
            else:
                value = {
                    "M": moment.month,
                    "d": moment.day,
                    "H": moment.hour,
                    "m": moment.minute,
                    "s": moment.second,
                }[letter]
                out.append(f"{value:0{width}d}")
        return "".join(out)

    def parse(self, text: str, zone: tzinfo) -> datetime:
        """The moment ``text`` names; ``zone`` applies when the pattern has no zone field."""
        match = self._regex.match(text)
        if match is None:
            raise ValueError(f"does not match {self.pattern!r}")
        found = match.groupdict()
        year = int(found["y"]) if found.get("y") else 1970
        if found.get("y") and len(found["y"]) == 2:
            year += 2000
        fraction = (found.get("f") or "").ljust(6, "0")[:6]
        moment = datetime(
            year,
            int(found.get("mo") or 1),
            int(found.get("d") or 1),
            int(found.get("h") or 0),
            int(found.get("mi") or 0),
            int(found.get("s") or 0),
            int(fraction or 0),
            tzinfo=zone,
        )
        offset = found.get("z")
        # A zone written in the value wins over the configured one.
        return moment.replace(tzinfo=_parse_offset(offset)) if offset else moment


def _zone_text(moment: datetime, letter: str, width: int) -> str:
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    if letter == "X" and minutes == 0:
        return "Z"
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    if letter == "X" and width == 1:
        return f"{sign}{hours:02d}"
    if letter == "X" and width == 3:
        return f"{sign}{hours:02d}:{mins:02d}"
    return f"{sign}{hours:02d}{mins:02d}"


def _parse_offset(text: str) -> tzinfo:
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) >= 4 else 0)
    return timezone(sign * timedelta(minutes=minutes))
