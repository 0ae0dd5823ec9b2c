"""Typed errors of the notification channels.

The dispatcher decides what to do from the fields, never from the text:
``permanent`` failures are dead-lettered, the others retried (no sooner than
``retry_after`` seconds when the receiver said so). ``reason`` is short and
free of secrets: channels build it from status codes and the receiver's error
code, and pass it through their :class:`~.masking.SecretMask`.
"""

from __future__ import annotations

from digitalme.monitoring.errors import MonitoringError

__all__ = ["ChannelConfigError", "DeliveryError", "NotificationError"]


class NotificationError(MonitoringError):
    """Root of the notifiers' errors."""


class ChannelConfigError(NotificationError):
    """A channel was built from settings that lack a key it needs.

    Settings validation refuses an enabled channel without its keys, so this is
    met only when a notifier is built by hand from a disabled section.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"{key} is required")


class DeliveryError(NotificationError):
    """A channel did not deliver a notification.

    ``status`` is the HTTP status or SMTP reply code when the receiver answered.
    """

    def __init__(
        self,
        channel: str,
        reason: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        self.channel = channel
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status
        super().__init__(channel, reason)

    def __str__(self) -> str:
        text = f"{self.channel}: {self.reason}"
        if self.retry_after is not None:
            text += f" (retry after {self.retry_after:g} s)"
        return text

    def __repr__(self) -> str:
        return (
            f"DeliveryError({self.channel!r}, {self.reason!r}, permanent={self.permanent}, "
            f"retry_after={self.retry_after!r}, status={self.status!r})"
        )
