"""What a notification channel is: the :class:`Notifier` protocol and its receipt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from digitalme.monitoring.notifiers.message import Notification

__all__ = ["DeliveryReceipt", "Notifier"]


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """Proof that a channel handed a notification over.

    ``detail`` is what the receiver answered (``HTTP 200``, the SMTP reply,
    Twilio message SIDs), for the delivery log; it never holds secrets.
    """

    channel: str
    detail: str


@runtime_checkable
class Notifier(Protocol):
    """One channel (``email``, ``slack``, ``sms``, ``webhook``).

    ``send`` delivers or raises :class:`~.errors.DeliveryError` (with
    ``permanent`` and ``retry_after``); every outbound call in it has a timeout.
    It does not retry: the dispatcher does, with the same idempotency key.
    """

    name: str

    async def send(self, notification: Notification) -> DeliveryReceipt:
        """Deliver ``notification`` once."""
        ...

    async def aclose(self) -> None:
        """Release connections; the notifier may be used again afterwards."""
        ...
