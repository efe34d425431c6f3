"""Resource sampling, shared by the node publisher and the job sampler."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcessSample:
    rss_bytes: int
    cpu_ratio: float  # of one core, 1.0 = one core busy
    disk_written_bytes: int
    cpu_seconds: float
    io_operations: int


class ProcessSampler:
    """Samples one process (and its children): RSS, CPU share since the last sample, disk writes."""

    def __init__(self, pid: int | None = None) -> None:
        self._proc = psutil.Process(pid or os.getpid())
        self._last_cpu = self._cpu_seconds()
        self._last_time = time.monotonic()
        self.peak_rss = 0

    def _procs(self) -> list[psutil.Process]:
        try:
            return [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            return [self._proc]

    def _cpu_seconds(self) -> float:
        total = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total

    def sample(self) -> ProcessSample:
        rss = written = ops = 0
        for p in self._procs():
            try:
                rss += p.memory_info().rss
                io = p.io_counters()
                written += io.write_bytes
                ops += io.read_count + io.write_count
            except (psutil.Error, AttributeError):
                continue
        cpu = self._cpu_seconds()
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-6)
        ratio = max(0.0, (cpu - self._last_cpu) / elapsed)
        self._last_cpu, self._last_time = cpu, now
        self.peak_rss = max(self.peak_rss, rss)
        return ProcessSample(rss, round(ratio, 3), written, round(cpu, 3), ops)


@dataclass(frozen=True)
class HostSample:
    cpu_percent: float
    memory_percent: float
    memory_total_bytes: int
    memory_used_bytes: int
    cpu_cores: int


def sample_host() -> HostSample:
    mem = psutil.virtual_memory()
    return HostSample(
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_percent=mem.percent,
        memory_total_bytes=mem.total,
        memory_used_bytes=mem.total - mem.available,
        cpu_cores=psutil.cpu_count() or 1,
    )
