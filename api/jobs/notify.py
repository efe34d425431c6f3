"""Which jobs get notifications, and the tags that track delivery (sent by executors/notifier)."""

from __future__ import annotations

from typing import Any

NOTIFY_TAG = "notify"  # set at submit; removed once delivered
DONE_TAG = "notified"
FAILED_TAG = "notify-failed"


def wants(notifications: dict[str, Any]) -> bool:
    """Whether a job's ``notifications`` block asks for anything at all."""
    on = notifications.get("onCompletion") or notifications.get("onFailure")
    return bool(on and (notifications.get("emailRecipients") or notifications.get("webhookUrl")))
