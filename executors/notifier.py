"""Notifications: e-mail and webhook when a job finishes — sent by a service, not by the job.

A job that asks for notifications is tagged ``notify`` at submit. This service (started by
``pmjobs up``) polls Prefect for finished runs still carrying that tag, so it also reports runs
that crashed or were killed, whose own process could never have sent anything. After a delivery
the tag becomes ``notified``; a failed delivery is logged and retried with back-off, and after
the last attempt the tag becomes ``notify-failed``. The job's own state is never touched.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx

from api.jobs.notify import DONE_TAG, FAILED_TAG, NOTIFY_TAG
from api.jobs.status import JobStatus, job_status
from api.jobs.views import job_view
from api.prefect_gateway import JobRecord, PrefectGateway
from api.settings import Settings

log = logging.getLogger("pmjobs.notifier")

BACKOFF_SECONDS = (5.0, 30.0, 120.0, 600.0)


@dataclass
class Attempts:
    count: int = 0
    next_at: float = 0.0
    errors: list[str] = field(default_factory=list)


def _results_url(settings: Settings, record: JobRecord) -> str:
    job = record.job
    return (
        f"{settings.api_base_url}/api/{job.get('tenantId')}/{job.get('projectId')}"
        f"/execution/job/{record.id}/results"
    )


def compose_email(settings: Settings, record: JobRecord, view: dict[str, Any]) -> EmailMessage:
    status = view["status"]
    message = EmailMessage()
    message["Subject"] = f"[pmjobs] {record.name}: {status}"
    message["From"] = settings.smtp_sender
    message["To"] = ", ".join(record.job.get("notifications", {}).get("emailRecipients", []))
    lines = [
        f"Job:       {record.name} ({record.job_type})",
        f"Job id:    {record.id}",
        f"Status:    {status} ({view['state']})",
        f"Duration:  {view.get('duration') or '-'}",
        f"Submitted: {view['execution'].get('submittedBy')}",
    ]
    if view.get("error"):
        lines.append(f"Reason:    {view['error']}")
    if status == JobStatus.COMPLETED.value:
        lines.append(f"Results:   {_results_url(settings, record)}")
    message.set_content("\n".join(lines) + "\n")
    return message


def send_email(settings: Settings, message: EmailMessage) -> None:
    if not settings.smtp_host:
        raise RuntimeError("no SMTP server configured (PMJOBS_SMTP_HOST)")
    security = settings.smtp_security.lower()
    if security == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=30, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30)
    with client:
        if security == "starttls":
            client.starttls(context=ssl.create_default_context())
        if settings.smtp_username:
            client.login(settings.smtp_username, settings.smtp_password or "")
        client.send_message(message)


class Notifier:
    def __init__(self, settings: Settings, gateway: PrefectGateway) -> None:
        self.settings = settings
        self.gateway = gateway
        self.attempts: dict[uuid.UUID, Attempts] = {}

    def _due(self, record: JobRecord) -> list[str]:
        """What this finished run should get: 'email' and/or 'webhook' (empty: nothing)."""
        notes = record.job.get("notifications") or {}
        status = job_status(record.state_type)
        wanted = (status is JobStatus.COMPLETED and notes.get("onCompletion")) or (
            status is JobStatus.FAILED and notes.get("onFailure")
        )
        if not wanted:
            return []
        channels = []
        if notes.get("emailRecipients"):
            channels.append("email")
        if notes.get("webhookUrl"):
            channels.append("webhook")
        return channels

    async def deliver(self, record: JobRecord) -> None:
        channels = self._due(record)
        if not channels:
            return
        progress = await self.gateway.progress([record.id])
        view = job_view(record, progress.get(record.id), self.settings.locale).model_dump(
            mode="json", by_alias=True
        )
        if "email" in channels:
            message = compose_email(self.settings, record, view)
            await asyncio.to_thread(send_email, self.settings, message)
        if "webhook" in channels:
            url = record.job["notifications"]["webhookUrl"]
            async with httpx.AsyncClient(timeout=15) as http:
                response = await http.post(url, json=view)
                response.raise_for_status()

    async def tick(self) -> int:
        """One pass: deliver what is due. Returns how many runs were settled."""
        settled = 0
        now = time.monotonic()
        for record in await self.gateway.finished_with_tag(NOTIFY_TAG):
            attempts = self.attempts.setdefault(record.id, Attempts())
            if attempts.next_at > now:
                continue
            try:
                await self.deliver(record)
            except Exception as exc:  # noqa: BLE001 - any delivery failure is retried
                attempts.count += 1
                attempts.errors.append(str(exc))
                if attempts.count > len(BACKOFF_SECONDS):
                    log.error("giving up notifying job %s: %s", record.id, exc)
                    await self.gateway.add_tags(record.id, [FAILED_TAG], remove=[NOTIFY_TAG])
                    self.attempts.pop(record.id, None)
                    settled += 1
                else:
                    delay = BACKOFF_SECONDS[attempts.count - 1]
                    log.warning(
                        "notifying job %s failed (attempt %d, retry in %.0f s): %s",
                        record.id,
                        attempts.count,
                        delay,
                        exc,
                    )
                    attempts.next_at = now + delay
                continue
            await self.gateway.add_tags(record.id, [DONE_TAG], remove=[NOTIFY_TAG])
            self.attempts.pop(record.id, None)
            settled += 1
            log.info("notified job %s (%s)", record.id, record.state_name)
        return settled

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - Prefect may be restarting
                log.warning("notifier pass failed: %s", exc)
            await asyncio.sleep(self.settings.notify_poll_seconds)


async def _main(settings: Settings) -> None:
    gateway = PrefectGateway(settings.prefect_url, settings.work_pool)
    await gateway.start()
    try:
        await Notifier(settings, gateway).run()
    finally:
        await gateway.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_main(Settings()))
