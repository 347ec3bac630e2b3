"""Counters of what the job read, aggregated, filtered and skipped: small, picklable, and mergeable."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class FileStats:
    """What one input file (or one block of it) gave."""

    path: str
    size: int = 0
    date: str | None = None  # the submission_date=YYYYMMDD folder it was found in
    pings: int = 0
    blank: int = 0  # blank lines, not pings
    aggregated: int = 0
    dates: Counter = field(default_factory=Counter)  # aggregated pings by submission date
    filtered: Counter = field(default_factory=Counter)
    malformed: Counter = field(default_factory=Counter)
    error: str | None = None

    def merge(self, other: "FileStats") -> None:
        self.size = max(self.size, other.size)
        self.pings += other.pings
        self.blank += other.blank
        self.aggregated += other.aggregated
        self.dates.update(other.dates)
        self.filtered.update(other.filtered)
        self.malformed.update(other.malformed)
        self.error = self.error or other.error

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "size": self.size,
            "date": self.date,
            "pings": self.pings,
            "blank": self.blank,
            "aggregated": self.aggregated,
            "filtered": dict(sorted(self.filtered.items())),
            "malformed": dict(sorted(self.malformed.items())),
            "error": self.error,
        }


@dataclass
class RunStats:
    """Counters of a whole run (or of the partitions merged so far)."""

    files: dict[str, FileStats] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)  # histograms, values and buckets skipped in good pings
    overflow: int = 0  # values clamped to the int64 range

    def merge(self, other: "RunStats") -> None:
        for path, stats in other.files.items():
            # a copy, never `other`'s own object: a task's inputs stay in a worker's memory and may be read again
            # (by another task, or when a lost result is recomputed), so merging must not change them
            mine = self.files.setdefault(path, FileStats(path, date=stats.date))
            mine.merge(stats)
        self.dropped.update(other.dropped)
        self.overflow += other.overflow

    @classmethod
    def total_of(cls, parts: Iterable["RunStats"]) -> "RunStats":
        """The counters of several parts added up, the parts unchanged."""
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    def for_date(self, date: str) -> "RunStats":
        """The files that hold pings of one submission date."""
        files = {p: f for p, f in self.files.items() if f.date == date or (f.date is None and f.dates[date])}
        return RunStats(files)

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files.values())

    def reasons(self, name: str) -> Counter:
        """Filtered or malformed pings by reason, over all files."""
        counts: Counter = Counter()
        for f in self.files.values():
            counts.update(getattr(f, name))
        return counts

    @property
    def errors(self) -> dict[str, str]:
        return {path: f.error for path, f in self.files.items() if f.error}

    def bad_fraction(self) -> float:
        """Malformed pings over pings read (unreadable files count for nothing here, they are reported)."""
        pings = self.total("pings")
        return sum(self.reasons("malformed").values()) / pings if pings else 0.0
