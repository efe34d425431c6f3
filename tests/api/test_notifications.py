"""E-mail and webhook notifications, delivered by the notifier service to real local receivers."""

from __future__ import annotations

import uuid

from tests.conftest import Api, Inbox, poll


def _job(name: str, notifications: dict, **extra: object) -> dict:
    return {
        "jobName": name,
        "jobType": "Analysis",
        "parameters": {"delaySeconds": 0},
        "notifications": notifications,
        **extra,
    }


def _mail_for(inbox: Inbox, name: str) -> object:
    return poll(
        lambda: [m for m in inbox.mails if name in str(m["Subject"])],
        lambda found: bool(found),
        60,
    )[0]


def test_completion_sends_email_and_webhook(tenant_api: Api, inbox: Inbox) -> None:
    name = f"notify-ok-{uuid.uuid4().hex[:6]}"
    hook = f"/hook/{name}"
    job = tenant_api.submit(
        _job(
            name,
            {
                "onCompletion": True,
                "onFailure": True,
                "emailRecipients": ["analyst@example.com"],
                "webhookUrl": inbox.url(hook),
            },
        )
    )
    assert tenant_api.wait(job["jobId"])["status"] == "Completed"
    mail = _mail_for(inbox, name)
    assert "Completed" in mail["Subject"]
    assert mail["To"] == "analyst@example.com"
    body = mail.get_payload()
    assert job["jobId"] in body and "/results" in body
    posts = poll(lambda: [p for p in inbox.posts if p[0] == hook], bool, 30)
    assert posts[0][1]["jobId"] == job["jobId"] and posts[0][1]["status"] == "Completed"


def test_failure_sends_email_with_reason(tenant_api: Api, inbox: Inbox) -> None:
    name = f"notify-fail-{uuid.uuid4().hex[:6]}"
    job = tenant_api.submit(
        {
            **_job(name, {"onFailure": True, "emailRecipients": ["ops@example.com"]}),
            "parameters": {"delaySeconds": 60},
            "scheduling": {"timeoutMinutes": 0.05},
        }
    )
    assert tenant_api.wait(job["jobId"])["status"] == "Failed"
    mail = _mail_for(inbox, name)
    assert "Failed" in mail["Subject"]
    assert "timeoutMinutes" in mail.get_payload()


def test_no_notification_unless_asked(tenant_api: Api, inbox: Inbox) -> None:
    name = f"notify-none-{uuid.uuid4().hex[:6]}"
    job = tenant_api.submit(
        _job(name, {"onCompletion": False, "emailRecipients": ["x@example.com"]})
    )
    tenant_api.wait(job["jobId"])
    # a job that did ask, submitted after, is delivered: by then the quiet one would have been too
    witness = f"notify-witness-{uuid.uuid4().hex[:6]}"
    later = tenant_api.submit(
        _job(witness, {"onCompletion": True, "emailRecipients": ["w@example.com"]})
    )
    tenant_api.wait(later["jobId"])
    _mail_for(inbox, witness)
    assert not [m for m in inbox.mails if name in str(m["Subject"])]


def test_failed_webhook_delivery_is_retried_and_job_stays_completed(
    tenant_api: Api, inbox: Inbox
) -> None:
    name = f"notify-retry-{uuid.uuid4().hex[:6]}"
    hook = f"/flaky/{name}"
    inbox.fail_next[hook] = 1
    job = tenant_api.submit(_job(name, {"onCompletion": True, "webhookUrl": inbox.url(hook)}))
    assert tenant_api.wait(job["jobId"])["status"] == "Completed"
    posts = poll(lambda: [p for p in inbox.posts if p[0] == hook], lambda p: len(p) >= 2, 60)
    assert len(posts) == 2
    assert tenant_api.job(job["jobId"])["status"] == "Completed"
