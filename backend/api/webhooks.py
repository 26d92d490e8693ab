"""Webhook routes: the key's signing secret, a job's delivery log, redelivery."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import AUTH_RESPONSES, CurrentKey, OwnedJobDep, WebhookServiceDep
from backend.domain.webhooks import DeliveryView, WebhookSecretView

router = APIRouter(tags=["webhooks"], responses=AUTH_RESPONSES)


@router.get("/webhooks/secret", response_model=WebhookSecretView)
async def get_webhook_secret(key: CurrentKey, service: WebhookServiceDep) -> WebhookSecretView:
    """Your key's webhook signing secret (made on first use); verify deliveries with it."""
    return await service.secret(key.id)


@router.post("/webhooks/secret/rotate", response_model=WebhookSecretView)
async def rotate_webhook_secret(key: CurrentKey, service: WebhookServiceDep) -> WebhookSecretView:
    """Replace your key's signing secret: deliveries from now on are signed with the new one, and for 24 h
    with the old one too (two signatures in `webhook-signature`), so receivers can switch without a gap."""
    return await service.rotate(key.id)


@router.get(
    "/jobs/{job_id}/webhooks",
    response_model=list[DeliveryView],
    tags=["jobs"],
    responses={404: {"description": "Job not found"}},
)
async def list_job_webhooks(job: OwnedJobDep, service: WebhookServiceDep) -> list[DeliveryView]:
    """The job's webhook events and every attempt to deliver them (time, status code, error)."""
    return await service.deliveries(job.id)


@router.post(
    "/jobs/{job_id}/webhooks/redeliver",
    status_code=202,
    response_model=DeliveryView,
    tags=["jobs"],
    responses={404: {"description": "Job not found"}, 409: {"description": "No webhook event yet"}},
)
async def redeliver_job_webhook(job: OwnedJobDep, service: WebhookServiceDep) -> DeliveryView:
    """Send the job's latest webhook event again, with the same `webhook-id`, retried for 24 h as usual."""
    return await service.redeliver(job)
