"""Text recognition: null-like values, the RE2 patterns matched against text values, and date formats."""

from __future__ import annotations

#: Values (trimmed, lower-cased) counted as null-like in text columns.
NULL_LIKE: tuple[str, ...] = ("", "na", "n/a", "null", "none", "-")

_DATE_ISO = r"[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}"
_DATE_DMY = r"[0-9]{1,2}[-/.][0-9]{1,2}[-/.]([0-9]{4}|[0-9]{2})"
_MONTHS = r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE_TEXT = rf"[0-9]{{1,2}} {_MONTHS},? [0-9]{{4}}|{_MONTHS} [0-9]{{1,2}},? [0-9]{{4}}"
_TIME = r"[T ][0-9]{1,2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,9})?)?( ?(Z|z|UTC|[+-][0-9]{2}(:?[0-9]{2})?))?"
_DATE_FORMATS = (
    "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%m/%d/%Y", "%d/%m/%y",
    "%d-%m-%y", "%d.%m.%y", "%m/%d/%y", "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%b %d %Y",
)  # fmt: skip
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_TIME_FORMATS = (" %H:%M:%S", " %H:%M")

#: RE2 patterns, matched in full against trimmed text values.
REGEX: dict[str, str] = {
    "integer": r"[+-]?[0-9]+|[+-]?[0-9]{1,3}(,[0-9]{3})+",
    "number": r"[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?"
    r"|[+-]?[0-9]{1,3}(,[0-9]{3})+([.][0-9]+)?",
    "leading_zero": r"[+-]?0[0-9]+",
    "date": f"{_DATE_ISO}|{_DATE_DMY}|{_DATE_TEXT}",
    "datetime": f"({_DATE_ISO}|{_DATE_DMY}){_TIME}",
    "email": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
    "phone_shape": r"\+?\(?[0-9][0-9 ().\-]{5,}[0-9]",
    "url": r"(?i:(https?|ftp)://[^\s/?#]+[^\s]*|www\.[^\s/?#]+\.[a-z]{2,}[^\s]*)",
    "uuid": r"(?i:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
    "postal_code": r"[0-9]{5}(-[0-9]{4})?|(?i:[a-z]{1,2}[0-9][a-z0-9]? ?[0-9][a-z]{2})"
    r"|(?i:[a-z][0-9][a-z] ?[0-9][a-z][0-9])",
    "credit_card": r"[0-9]{4}([ \-]?[0-9]{4}){2}[ \-]?[0-9]{1,7}|3[47][0-9]{2}[ \-]?[0-9]{6}[ \-]?[0-9]{5}",
    "ipv4": rf"({_OCTET}\.){{3}}{_OCTET}",
    "ipv6": r"(?i:([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}"
    r"|(([0-9a-f]{1,4}:){1,6}|:):(([0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4})?)",
    "ssn": r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
}
#: Patterns reported per text column (share of non-null-like values).
PATTERNS: tuple[str, ...] = (
    "email", "phone", "url", "date", "uuid", "postal_code", "credit_card", "ip_address", "ssn",
)  # fmt: skip
_TRUE_WORDS = ("true", "t", "yes", "y")
_BOOL_WORDS = (*_TRUE_WORDS, "false", "f", "no", "n")
