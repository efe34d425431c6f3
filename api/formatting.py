"""Human-readable values in the form the original specification documents.

The original shows "8 dakika 32 saniye", "2.1 GB", "45%", "1250 kayıt/saniye"; the contract keeps
that form (locale ``tr``, default) and adds a machine-readable sibling field next to each.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _Words:
    hour: str
    minute: str
    second: str
    day: str
    records_per_second: str


_WORDS = {
    "tr": _Words("saat", "dakika", "saniye", "gün", "kayıt/saniye"),
    "en": _Words("h", "min", "s", "d", "records/s"),
}


def _words(locale: str) -> _Words:
    return _WORDS.get(locale, _WORDS["tr"])


def duration(seconds: float | None, locale: str = "tr") -> str | None:
    """8 dakika 32 saniye / 1 saat 5 dakika / 42 saniye."""
    if seconds is None:
        return None
    w = _words(locale)
    total = max(0, int(round(seconds)))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts: list[str] = []
    if days:
        parts.append(f"{days} {w.day}")
    if hours:
        parts.append(f"{hours} {w.hour}")
    if minutes:
        parts.append(f"{minutes} {w.minute}")
    if secs or not parts:
        parts.append(f"{secs} {w.second}")
    return " ".join(parts[:2])


def minutes(seconds: float | None, locale: str = "tr") -> str | None:
    """4.2 dakika — the form of averageWaitTime and averageJobDuration."""
    if seconds is None:
        return None
    return f"{seconds / 60:.1f} {_words(locale).minute}"


def duration_range(low: float | None, high: float | None, locale: str = "tr") -> str | None:
    """45-60 dakika — the form of estimatedDuration; seconds when under a minute."""
    if low is None or high is None:
        return None
    w = _words(locale)
    if high < 60:
        return f"{max(1, round(low))}-{max(1, round(high))} {w.second}"
    return f"{max(1, round(low / 60))}-{max(1, round(high / 60))} {w.minute}"


def size(num_bytes: float | None) -> str | None:
    """2.1 GB / 890 MB / 12 KB (decimal units, as documented)."""
    if num_bytes is None:
        return None
    value = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            if unit in ("B", "KB", "MB"):
                return f"{value:.0f} {unit}"
            return f"{value:.1f} {unit}"
        value /= 1000
    return None  # pragma: no cover


def percent(ratio: float | None) -> str | None:
    """45%."""
    if ratio is None:
        return None
    return f"{round(ratio * 100)}%"


def rate(records_per_second: float | None, locale: str = "tr") -> str | None:
    """1250 kayıt/saniye."""
    if records_per_second is None:
        return None
    return f"{round(records_per_second)} {_words(locale).records_per_second}"
