"""Seeded synthetic event logs for the benchmarks: a loan-application process at any size.

Why synthetic: BPIC 2012 is the only big real log we may ship, and it is 262k events. The
benchmarks need 1M and 5M events with realistic structure, so this generator produces a
process with the things that make process mining expensive: parallel checks (many
interleavings → many variants), exclusive choices, rework and reminder loops, business-hour
arrivals, lognormal waiting times and resources drawn from roles. ~32 activities, ~19 events
per case. The same seed and size always give the same bytes (tests/bench/test_synth.py).

Everything is vectorised with numpy (no per-event Python), so 5M events take well under a
minute plus the time to write the files.

    python -m bench.synth --events 1M --formats csv,parquet,xes.gz --out bench/out
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PRESETS = {"20k": 20_000, "200k": 200_000, "1M": 1_000_000, "5M": 5_000_000}
FORMATS = ("csv", "parquet", "xes", "xes.gz")
DEFAULT_SEED = 20240601
CASE, ACTIVITY, TIMESTAMP, RESOURCE = (
    "case:concept:name",
    "concept:name",
    "time:timestamp",
    "org:resource",
)
CHANNEL, AMOUNT = "case:channel", "case:amount"

# role -> number of people in it ("System" and "Customer" are one resource each)
ROLES = {"clerk": 24, "analyst": 16, "manager": 5, "system": 1, "customer": 1}

# activity -> (role, median wait before it in seconds, lognormal sigma)
ACTIVITIES: dict[str, tuple[str, float, float]] = {
    "Receive application": ("system", 0.0, 0.0),
    "Register application": ("clerk", 1800.0, 1.0),
    "Automatic eligibility check": ("system", 60.0, 0.5),
    "Manual eligibility check": ("analyst", 7200.0, 1.0),
    "Check credit history": ("analyst", 5400.0, 1.1),
    "Verify identity": ("clerk", 3600.0, 1.0),
    "Verify income": ("analyst", 9000.0, 1.2),
    "Appraise collateral": ("analyst", 86400.0, 0.9),
    "Check fraud indicators": ("system", 300.0, 0.8),
    "Consolidate checks": ("analyst", 3600.0, 0.9),
    "Request missing documents": ("clerk", 1800.0, 0.8),
    "Receive missing documents": ("customer", 259200.0, 1.0),
    "Review documents": ("analyst", 7200.0, 1.0),
    "Assess risk": ("analyst", 14400.0, 1.0),
    "Approve application": ("analyst", 1800.0, 0.8),
    "Reject application": ("analyst", 1800.0, 0.8),
    "Escalate to manager": ("analyst", 900.0, 0.7),
    "Manager review": ("manager", 86400.0, 1.0),
    "Calculate offer": ("analyst", 3600.0, 0.9),
    "Prepare offer": ("clerk", 5400.0, 0.9),
    "Send offer": ("clerk", 1200.0, 0.7),
    "Send reminder": ("clerk", 432000.0, 0.5),
    "Offer accepted": ("customer", 172800.0, 1.1),
    "Offer declined": ("customer", 259200.0, 1.1),
    "Sign contract": ("clerk", 86400.0, 0.9),
    "Pay out loan": ("system", 7200.0, 0.8),
    "Archive documents": ("clerk", 14400.0, 1.0),
    "Send welcome pack": ("clerk", 21600.0, 1.0),
    "Record decline reason": ("clerk", 3600.0, 0.9),
    "Write rejection letter": ("clerk", 5400.0, 0.9),
    "Send rejection": ("system", 600.0, 0.6),
    "Close case": ("clerk", 7200.0, 1.0),
}
NAMES = list(ACTIVITIES)
A = {name: i for i, name in enumerate(NAMES)}

START = np.datetime64("2021-01-04T00:00:00", "ms")  # a Monday
CASES_PER_BUSINESS_DAY = 120
XES_CHUNK_CASES = 20_000


@dataclass(frozen=True)
class Log:
    """Columns of a generated log, as numpy arrays in event order (case, then time)."""

    case: np.ndarray  # int64 case number (0-based)
    activity: np.ndarray  # int16 index into NAMES
    timestamp: np.ndarray  # datetime64[ms], UTC
    resource: np.ndarray  # object array of resource names
    channel: np.ndarray  # per case: object array
    amount: np.ndarray  # per case: float64

    @property
    def events(self) -> int:
        return len(self.case)


def parse_size(text: str) -> int:
    """'1M', '200k', '5M', '20000' -> events."""
    if text in PRESETS:
        return PRESETS[text]
    t = text.strip().lower().replace("_", "")
    factor = 1
    if t.endswith("k"):
        factor, t = 1_000, t[:-1]
    elif t.endswith("m"):
        factor, t = 1_000_000, t[:-1]
    value = int(float(t) * factor)
    if value < 2:
        raise argparse.ArgumentTypeError(f"need at least 2 events, got {text!r}")
    return value


def size_label(events: int) -> str:
    for label, n in PRESETS.items():
        if n == events:
            return label
    return str(events)


class _Events:
    """Collects (case, order key, activity) triples block by block; sorted once at the end."""

    def __init__(self) -> None:
        self.cases: list[np.ndarray] = []
        self.orders: list[np.ndarray] = []
        self.acts: list[np.ndarray] = []

    def add(self, cases: np.ndarray, order: float | np.ndarray, act: int | np.ndarray) -> None:
        n = len(cases)
        self.cases.append(cases.astype(np.int64, copy=False))
        self.orders.append(np.broadcast_to(np.asarray(order, dtype=np.float64), (n,)).copy())
        self.acts.append(np.broadcast_to(np.asarray(act, dtype=np.int16), (n,)).copy())

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        cases = np.concatenate(self.cases)
        orders = np.concatenate(self.orders)
        acts = np.concatenate(self.acts)
        idx = np.lexsort((orders, cases))
        return cases[idx], acts[idx]


def _loop_counts(rng: np.random.Generator, n: int, p_enter: float, p_again: float, cap: int):
    """Iterations of a loop per case: 0 with 1-p_enter, else 1 + geometric repeats, capped."""
    enter = rng.random(n) < p_enter
    extra = rng.geometric(1.0 - p_again, n) - 1
    return np.where(enter, np.minimum(1 + extra, cap), 0).astype(np.int64)


def _repeat_with_index(cases: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each case repeated ``counts`` times, with the iteration number 0..count-1."""
    rep = np.repeat(cases, counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return rep, np.arange(len(rep)) - starts


def _control_flow(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Activity sequence of every case; the order key is block * 1000 + position in block."""
    ev = _Events()
    all_cases = np.arange(n, dtype=np.int64)
    ev.add(all_cases, 0, A["Receive application"])
    ev.add(all_cases, 1000, A["Register application"])
    auto = rng.random(n) < 0.65
    ev.add(all_cases[auto], 2000, A["Automatic eligibility check"])
    ev.add(all_cases[~auto], 2000, A["Manual eligibility check"])
    # parallel checks: random interleaving per case (order key = random position)
    for name, share in (
        ("Check credit history", 1.0),
        ("Verify identity", 1.0),
        ("Verify income", 1.0),
        ("Check fraud indicators", 0.5),
    ):
        chosen = all_cases if share >= 1.0 else all_cases[rng.random(n) < share]
        ev.add(chosen, 3000 + rng.random(len(chosen)) * 999, A[name])
    ev.add(all_cases, 4000, A["Consolidate checks"])
    ev.add(all_cases[rng.random(n) < 0.4], 4001, A["Appraise collateral"])
    # rework loop: request, receive, review documents
    rep, it = _repeat_with_index(all_cases, _loop_counts(rng, n, 0.38, 0.3, 4))
    for step, name in enumerate(
        ("Request missing documents", "Receive missing documents", "Review documents")
    ):
        ev.add(rep, 5000 + it * 10 + step, A[name])
    ev.add(all_cases, 6000, A["Assess risk"])
    # decision: approve / reject / escalate (manager then approves or rejects)
    u = rng.random(n)
    escalate = u >= 0.87
    ev.add(all_cases[escalate], 7000, A["Escalate to manager"])
    ev.add(all_cases[escalate], 7001, A["Manager review"])
    approve = (u < 0.62) | (escalate & (rng.random(n) < 0.6))
    ev.add(all_cases[approve], 7002, A["Approve application"])
    ev.add(all_cases[~approve], 7002, A["Reject application"])
    # approved: offer, reminders, customer answer
    ok = all_cases[approve]
    for step, name in enumerate(("Calculate offer", "Prepare offer", "Send offer")):
        ev.add(ok, 8000 + step, A[name])
    rep, it = _repeat_with_index(ok, _loop_counts(rng, len(ok), 0.3, 0.35, 3))
    ev.add(rep, 8100 + it, A["Send reminder"])
    accepted = rng.random(len(ok)) < 0.8
    yes, no = ok[accepted], ok[~accepted]
    ev.add(yes, 8200, A["Offer accepted"])
    ev.add(yes, 8300, A["Sign contract"])
    for name in ("Pay out loan", "Archive documents", "Send welcome pack"):
        ev.add(yes, 8400 + rng.random(len(yes)) * 99, A[name])
    ev.add(no, 8200, A["Offer declined"])
    ev.add(no, 8300, A["Record decline reason"])
    # rejected
    rejected = all_cases[~approve]
    ev.add(rejected, 8000, A["Write rejection letter"])
    ev.add(rejected, 8001, A["Send rejection"])
    ev.add(all_cases, 9000, A["Close case"])
    return ev.sorted()


def _arrivals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Case start times (ms since START) on weekdays, peaking mid-morning and mid-afternoon."""
    business_days = max(1, int(np.ceil(n / CASES_PER_BUSINESS_DAY)))
    day = rng.integers(0, business_days, n)
    calendar_day = (day // 5) * 7 + day % 5  # skip weekends; START is a Monday
    peak = np.where(rng.random(n) < 0.55, 10.5, 14.5)
    hour = np.clip(rng.normal(peak, 1.4), 8.0, 17.99)
    ms = calendar_day * 86_400_000 + (hour * 3_600_000).astype(np.int64)
    return np.sort(ms)


def _resources(rng: np.random.Generator, activity: np.ndarray) -> np.ndarray:
    """A person of the activity's role; within a role some people work more than others."""
    role_of = np.array([list(ROLES).index(ACTIVITIES[name][0]) for name in NAMES])
    roles = role_of[activity]
    out = np.empty(len(activity), dtype=object)
    for r, (role, size) in enumerate(ROLES.items()):
        where = np.flatnonzero(roles == r)
        if size == 1:
            out[where] = role.capitalize()
            continue
        weights = 1.0 / np.arange(1, size + 1) ** 0.8
        people = np.array([f"{role}-{i + 1:02d}" for i in range(size)], dtype=object)
        out[where] = people[rng.choice(size, len(where), p=weights / weights.sum())]
    return out


def generate(events: int, seed: int = DEFAULT_SEED) -> Log:
    """Exactly ``events`` events; the last case may be cut short (a still-running case)."""
    rng = np.random.default_rng(seed)
    n = int(events / 18.5 * 1.1) + 10
    while True:
        case, activity = _control_flow(rng, n)
        if len(case) >= events:
            break
        n = int(n * 1.2) + 10
    case, activity = case[:events], activity[:events]
    n_cases = int(case[-1]) + 1
    medians = np.array([ACTIVITIES[name][1] for name in NAMES])
    sigmas = np.array([ACTIVITIES[name][2] for name in NAMES])
    z = rng.standard_normal(events)
    wait = np.rint(medians[activity] * np.exp(sigmas[activity] * z) * 1000).astype(np.int64)
    first = np.r_[True, case[1:] != case[:-1]]
    wait[first] = 0
    total = np.cumsum(wait)
    offset = total[np.flatnonzero(first)]  # cumulative wait at each case's first event
    within = total - np.repeat(offset, np.diff(np.r_[np.flatnonzero(first), events]))
    start = _arrivals(rng, n_cases)
    timestamp = START + (start[case] + within).astype("timedelta64[ms]")
    resource = _resources(rng, activity)
    channel = np.array(["Online", "Branch", "Phone"], dtype=object)[
        rng.choice(3, n_cases, p=[0.55, 0.3, 0.15])
    ]
    amount = np.round(np.exp(rng.normal(9.6, 0.7, n_cases)) / 100) * 100
    return Log(case, activity, timestamp, resource, channel, amount)


def case_ids(n_cases: int) -> np.ndarray:
    return np.char.add("case-", np.char.zfill(np.arange(n_cases).astype(str), 7)).astype(object)


def _timestamp_text(ts: np.ndarray) -> np.ndarray:
    """ISO 8601 with milliseconds and an explicit UTC offset (what XES writers produce)."""
    return np.char.add(np.datetime_as_string(ts, unit="ms"), "+00:00").astype(object)


def to_frame(log: Log, text_timestamps: bool = True) -> pd.DataFrame:
    """The log as a table with XES column names (timestamps as ISO text or UTC datetimes)."""
    ids = case_ids(int(log.case[-1]) + 1)
    ts: object
    if text_timestamps:
        ts = _timestamp_text(log.timestamp)
    else:
        ts = pd.DatetimeIndex(log.timestamp).tz_localize("UTC")
    return pd.DataFrame(
        {
            CASE: ids[log.case],
            ACTIVITY: np.array(NAMES, dtype=object)[log.activity],
            TIMESTAMP: ts,
            RESOURCE: log.resource,
            CHANNEL: log.channel[log.case],
            AMOUNT: log.amount[log.case],
        }
    )


def write_csv(log: Log, path: Path) -> None:
    to_frame(log).to_csv(path, index=False, lineterminator="\n")


def write_parquet(log: Log, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(to_frame(log, text_timestamps=False), preserve_index=False)
    pq.write_table(table, path)


def _xml_escape(values: np.ndarray) -> np.ndarray:
    """Activity/resource names are plain ASCII without markup here; escape '&' '<' '"' anyway."""
    out = values.astype(str)
    for raw, esc in (("&", "&amp;"), ("<", "&lt;"), ('"', "&quot;")):
        out = np.char.replace(out, raw, esc)
    return out.astype(object)


def _xes_lines(log: Log) -> Iterable[str]:
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield (
        '<log xes.version="1.0" xes.features="nested-attributes" '
        'openxes.version="1.0RC7" xmlns="http://www.xes-standard.org/">\n'
        '\t<extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>\n'
        '\t<extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>\n'
        '\t<extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>\n'
        '\t<global scope="trace"><string key="concept:name" value="__INVALID__"/></global>\n'
        '\t<global scope="event"><string key="concept:name" value="__INVALID__"/></global>\n'
        '\t<classifier name="Activity" keys="concept:name"/>\n'
    )
    names = _xml_escape(np.array(NAMES, dtype=object))
    n_cases = int(log.case[-1]) + 1
    ids = case_ids(n_cases)
    first = np.flatnonzero(np.r_[True, log.case[1:] != log.case[:-1]])
    bounds = np.r_[first, log.events]
    for c0 in range(0, n_cases, XES_CHUNK_CASES):
        c1 = min(n_cases, c0 + XES_CHUNK_CASES)
        e0, e1 = int(bounds[c0]), int(bounds[c1])
        event = (
            '\t\t<event>\n\t\t\t<string key="concept:name" value="'
            + names[log.activity[e0:e1]]
            + '"/>\n\t\t\t<string key="org:resource" value="'
            + _xml_escape(log.resource[e0:e1])
            + '"/>\n\t\t\t<date key="time:timestamp" value="'
            + _timestamp_text(log.timestamp[e0:e1])
            + '"/>\n\t\t</event>\n'
        )
        head = (
            '\t<trace>\n\t\t<string key="concept:name" value="'
            + ids[c0:c1]
            + '"/>\n\t\t<string key="channel" value="'
            + log.channel[c0:c1]
            + '"/>\n\t\t<float key="amount" value="'
            + log.amount[c0:c1].astype(str).astype(object)
            + '"/>\n'
        )
        starts = first[c0:c1] - e0
        event[starts] = head + event[starts]
        ends = np.r_[starts[1:], e1 - e0] - 1
        event[ends] = event[ends] + "\t</trace>\n"
        yield "".join(event)
    yield "</log>\n"


def write_xes(log: Log, path: Path, compress: bool = False) -> None:
    """XES 1.0 as ProM/OpenXES write it; .xes.gz with a fixed gzip mtime (same bytes)."""
    if compress:
        with (
            path.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as out,
        ):
            for part in _xes_lines(log):
                out.write(part)
    else:
        with path.open("w", encoding="utf-8", newline="\n") as out:
            for part in _xes_lines(log):
                out.write(part)


def output_path(out_dir: Path, events: int, seed: int, fmt: str) -> Path:
    return out_dir / f"synth-{size_label(events)}-s{seed}.{fmt}"


def write(log: Log, path: Path, fmt: str) -> Path:
    """Write atomically (temporary name, then rename) so a killed run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "csv":
        write_csv(log, tmp)
    elif fmt == "parquet":
        write_parquet(log, tmp)
    elif fmt in ("xes", "xes.gz"):
        write_xes(log, tmp, compress=fmt == "xes.gz")
    else:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    tmp.replace(path)
    return path


def ensure(events: int, fmt: str, out_dir: Path, seed: int = DEFAULT_SEED) -> Path:
    """The generated file, made on demand (reused if it is already there)."""
    path = output_path(out_dir, events, seed, fmt)
    if not path.exists():
        write(generate(events, seed), path, fmt)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Generate a seeded synthetic event log (loan applications) for benchmarks.",
    )
    parser.add_argument(
        "--events",
        type=parse_size,
        default=PRESETS["1M"],
        help=f"number of events: a preset ({', '.join(PRESETS)}) or a number such as 300k",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument(
        "--formats",
        default="csv,parquet,xes",
        help=f"comma-separated formats to write ({', '.join(FORMATS)})",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench/out"), help="output folder (bench/out)"
    )
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        parser.error(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)}")
    t0 = time.perf_counter()
    log = generate(args.events, args.seed)
    cases = int(log.case[-1]) + 1
    print(
        f"generated {log.events:,} events, {cases:,} cases, "
        f"{len(np.unique(log.activity))} activities in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    for fmt in formats:
        t0 = time.perf_counter()
        path = write(log, output_path(args.out, args.events, args.seed, fmt), fmt)
        size = path.stat().st_size / 1e6
        print(f"{path}  {size:,.1f} MB  {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        print(path)


if __name__ == "__main__":
    main()
