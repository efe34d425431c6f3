"""System status and the queue view, computed from Prefect and the nodes' published metrics.

Counts and job lists are the caller's tenant only; execution nodes are shared infrastructure and
are shown to every tenant without any job names.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api import formatting
from api.jobs.estimates import Estimator
from api.jobs.status import JobStatus, JobType, Priority
from api.prefect_gateway import JobQuery, JobRecord, NodeRecord, PrefectGateway


def _node_view(node: NodeRecord) -> dict[str, Any]:
    m = node.metrics
    return {
        "nodeId": node.name,
        "status": "Active" if node.online else "Offline",
        "cpuUsage": m.get("cpuUsage"),
        "memoryUsage": m.get("memoryUsage"),
        "activeJobs": m.get("activeJobs", 0) if node.online else 0,
        "jobCapacity": m.get("jobCapacity"),
        "lastHeartbeat": node.last_heartbeat.isoformat() if node.last_heartbeat else None,
        "cpuCores": m.get("cpuCores"),
        "memoryTotalBytes": m.get("memoryTotalBytes"),
    }


def _wait_seconds(records: list[JobRecord]) -> float | None:
    waits = [
        (r.start_time - r.expected_start).total_seconds()
        for r in records
        if r.start_time and r.expected_start
    ]
    return statistics.fmean(max(0.0, w) for w in waits) if waits else None


class SystemService:
    def __init__(
        self, gateway: PrefectGateway, estimator: Estimator, home: Path, locale: str
    ) -> None:
        self.gateway = gateway
        self.estimator = estimator
        self.home = home
        self.locale = locale

    async def _typical_seconds(self) -> float:
        estimates = await asyncio.gather(*(self.estimator.duration(t.value, None) for t in JobType))
        return statistics.median(e.seconds for e in estimates)

    async def status(self, tenant_id: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        tenant = JobQuery(tenant=tenant_id)

        def q(**kw: Any) -> JobQuery:
            return replace(tenant, **kw)

        queued_counts = [q(statuses=[JobStatus.QUEUED], priorities=[p]) for p in Priority]
        (
            nodes,
            healthy,
            started,
            completed_today,
            failed_today,
            completed_hour,
            *by_priority,
        ) = await asyncio.gather(
            self.gateway.nodes(),
            self.gateway.healthy(),
            self.gateway.started_since(now - timedelta(hours=24), tenant),
            self.gateway.ended_since(q(statuses=[JobStatus.COMPLETED], ended_after=today)),
            self.gateway.count(q(statuses=[JobStatus.FAILED], ended_after=today)),
            self.gateway.count(
                q(statuses=[JobStatus.COMPLETED], ended_after=now - timedelta(hours=1))
            ),
            *(self.gateway.count(c) for c in queued_counts),
        )
        total_queued = sum(by_priority)
        online = [n for n in nodes if n.online]
        capacity = sum(int(n.metrics.get("jobCapacity", 1)) for n in online) or 1
        typical = await self._typical_seconds()
        processing = typical * total_queued / capacity if total_queued else 0.0
        durations = [r.total_run_time for r in completed_today]
        finished = len(completed_today) + failed_today
        if not healthy or not online:
            system = "Unhealthy"
        elif len(online) < len(nodes):
            system = "Degraded"
        else:
            system = "Healthy"
        cores = sum(int(n.metrics.get("cpuCores", 0)) for n in online)
        used_cpu = sum(
            int(n.metrics.get("cpuCores", 0)) * float(n.metrics.get("cpuUsage", 0)) for n in online
        )
        mem_total = sum(int(n.metrics.get("memoryTotalBytes", 0)) for n in online)
        mem_used = sum(int(n.metrics.get("memoryUsedBytes", 0)) for n in online)
        disk_free = shutil.disk_usage(self.home if self.home.exists() else Path("/")).free
        wait = _wait_seconds(started)
        return {
            "systemStatus": system,
            "timestamp": now.isoformat(),
            "executionNodes": [_node_view(n) for n in nodes],
            "queueStatistics": {
                "totalQueuedJobs": total_queued,
                "criticalPriorityJobs": by_priority[0],
                "highPriorityJobs": by_priority[1],
                "normalPriorityJobs": by_priority[2],
                "lowPriorityJobs": by_priority[3],
                "averageWaitTime": formatting.minutes(
                    wait if wait is not None else 0.0, self.locale
                ),
                "averageWaitTimeSeconds": round(wait, 3) if wait is not None else None,
                "estimatedProcessingTime": formatting.minutes(processing, self.locale),
                "estimatedProcessingTimeSeconds": round(processing, 1),
            },
            "performanceMetrics": {
                "jobsCompletedToday": len(completed_today),
                "averageJobDuration": formatting.minutes(
                    statistics.fmean(durations) if durations else None, self.locale
                ),
                "averageJobDurationSeconds": round(statistics.fmean(durations), 3)
                if durations
                else None,
                "successRate": round(100 * len(completed_today) / finished, 1)
                if finished
                else None,
                "throughputPerHour": float(completed_hour),
            },
            "resourceUtilization": {
                "totalCpuCapacity": cores * 100,
                "usedCpuCapacity": round(used_cpu),
                "totalMemoryCapacity": formatting.size(mem_total),
                "totalMemoryCapacityBytes": mem_total,
                "usedMemoryCapacity": formatting.size(mem_used),
                "usedMemoryCapacityBytes": mem_used,
                "diskSpaceAvailable": formatting.size(disk_free),
                "diskSpaceAvailableBytes": disk_free,
            },
        }

    async def queue(
        self,
        tenant_id: str,
        project_id: str,
        priority: Priority | None,
        job_type: JobType | None,
        include_estimates: bool,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        order, nodes = await asyncio.gather(self.gateway.queue_order(), self.gateway.nodes())
        online = [n for n in nodes if n.online]
        capacity = sum(int(n.metrics.get("jobCapacity", 1)) for n in online)
        running = sum(int(n.metrics.get("activeJobs", 0)) for n in online)
        typical = await self._typical_seconds() if include_estimates else 0.0
        mine: list[dict[str, Any]] = []
        counts = dict.fromkeys(Priority, 0)
        for position, record in enumerate(order, start=1):
            if record.tag("tenant") != tenant_id or record.tag("project") != project_id:
                continue
            counts[record.priority] += 1
            if priority and record.priority is not priority:
                continue
            if job_type and record.job_type != job_type.value:
                continue
            item: dict[str, Any] = {
                "jobId": str(record.id),
                "jobName": record.name,
                "jobType": record.job_type,
                "priority": record.priority.value,
                "state": record.state_name,
                "queuePosition": position,
                "estimatedStartTime": None,
                "estimatedDuration": None,
                "estimatedDurationSeconds": None,
                "submittedBy": record.job.get("submittedBy"),
                "dateSubmitted": record.created.isoformat() if record.created else None,
                "scheduledTime": record.expected_start.isoformat()
                if record.expected_start
                else None,
            }
            if include_estimates:
                events = (record.job.get("dataset") or {}).get("events")
                estimate = await self.estimator.duration(record.job_type, events)
                wait = typical * (position - 1) / (capacity or 1)
                start = max(now, record.expected_start or now) + timedelta(seconds=wait)
                item["estimatedStartTime"] = start.isoformat()
                item["estimatedDuration"] = formatting.duration_range(
                    estimate.low, estimate.high, self.locale
                )
                item["estimatedDurationSeconds"] = round(estimate.seconds, 1)
            mine.append(item)
        total = sum(counts.values())
        return {
            "queueStatus": "Active" if online else "Stalled",
            "timestamp": now.isoformat(),
            "summary": {
                "totalQueuedJobs": total,
                "criticalPriorityJobs": counts[Priority.CRITICAL],
                "highPriorityJobs": counts[Priority.HIGH],
                "normalPriorityJobs": counts[Priority.NORMAL],
                "lowPriorityJobs": counts[Priority.LOW],
                "averageWaitTime": formatting.minutes(
                    typical * total / (2 * (capacity or 1)), self.locale
                )
                if include_estimates
                else None,
                "estimatedProcessingTime": formatting.minutes(
                    typical * total / (capacity or 1), self.locale
                )
                if include_estimates
                else None,
            },
            "processingCapacity": {
                "activeWorkers": len(online),
                "totalWorkers": len(nodes),
                "currentLoad": formatting.percent(running / capacity) if capacity else None,
                "currentLoadRatio": round(running / capacity, 3) if capacity else None,
                "maxConcurrentJobs": capacity,
                "currentlyRunning": running,
            },
            "queuedJobs": mine,
        }
