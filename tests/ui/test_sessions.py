"""Dashboard sessions: signed cookies naming server-side sessions that expire, end and get purged."""

from __future__ import annotations

import asyncio

from backend.services.auth import Authenticator, add_key
from backend.services.purge import purge
from backend.services.sessions import SessionService
from tests.utils import db
from tests.utils.stack import Stack


async def test_sessions_expire_are_tamper_proof_and_get_purged(stack: Stack) -> None:
    async with db.pool(stack.settings) as pool:
        raw, key = await add_key(pool, "session-test")
        sessions = SessionService(pool, Authenticator(pool, 0), lifetime_s=0.5)
        signed_in = await sessions.sign_in(raw, None)
        assert signed_in is not None
        cookie, principal = signed_in
        assert raw not in cookie and principal.id == key.id
        assert (await sessions.resolve(cookie)) == principal
        token, signature = cookie.split(".")
        assert await sessions.resolve(f"{token}.{'0' * len(signature)}") is None  # signature checked
        altered = token[:-1] + ("B" if token.endswith("A") else "A")
        assert await sessions.resolve(f"{altered}.{signature}") is None
        other_deployment = SessionService(pool, Authenticator(pool, 0), 60, secret="another secret")
        assert await other_deployment.resolve(cookie) is None  # signed with this deployment's secret only
        assert await sessions.csrf_valid(cookie, await sessions.csrf_token(cookie))
        assert not await sessions.csrf_valid(cookie, "0" * 64)
        await asyncio.sleep(0.6)
        assert await sessions.resolve(cookie) is None  # expired
        async with db.open_resources(stack.settings, 2) as res:
            report = await purge(res)
        assert report.ui_sessions >= 1
        gone = await pool.fetchval("SELECT count(*) FROM ui_sessions WHERE key_id = $1", key.id)
        assert gone == 0
        assert await sessions.sign_in("jp_wrong", None) is None
