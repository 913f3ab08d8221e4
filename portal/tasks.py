"""Site-wide Celery tasks."""

from celery import shared_task


@shared_task(name="portal.ping", ignore_result=False)
def ping(nonce: str) -> str:
    """Answers the health check's round trip; echoes the nonce so a stale result cannot pass."""
    return f"pong:{nonce}"
