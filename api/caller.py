"""The caller: the user a request acts for and the handles every service function needs to answer them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from conveyor.models import User
from conveyor.settings import Settings
from conveyor.storage import BlobStore


@dataclass(frozen=True)
class Caller:
    """Who is asking, and what a request needs to answer them."""

    user: User
    session: AsyncSession
    client: Client
    blobs: BlobStore
    settings: Settings
