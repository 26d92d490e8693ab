"""Key administration: list, create, revoke (the admin API's use cases)."""

from __future__ import annotations

import uuid

from backend.db.pool import Executor
from backend.domain.errors import KeyNotFound
from backend.domain.keys import KeyCreate
from backend.repo.api_keys import ApiKeyRecord, ApiKeyRepository
from backend.services.auth import Authenticator, add_key


class KeyAdmin:
    """Manage API keys; a revocation is forgotten by this process's authenticator at once."""

    def __init__(self, db: Executor, authenticator: Authenticator) -> None:
        self.db = db
        self.keys = ApiKeyRepository(db)
        self.authenticator = authenticator

    async def all(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        return await self.keys.all()

    async def create(self, body: KeyCreate) -> tuple[str, ApiKeyRecord]:
        """A new key: its secret (shown once) and the stored key."""
        return await add_key(self.db, body.name, None, body.role, body.max_running, body.rate_limit)

    async def revoke(self, key_id: uuid.UUID) -> ApiKeyRecord:
        """Revoke the key (again is harmless) or KeyNotFound."""
        revoked = await self.keys.revoke(key_id)
        if revoked is None:
            raise KeyNotFound()
        self.authenticator.forget(key_id)
        return revoked
