"""The API's parts put together for the daemon: router, event hub, progress observer."""

from __future__ import annotations

from collections.abc import Sequence

from medianalysed import progress
from medianalysed.api.auth import Authenticator
from medianalysed.api.events import EventHub
from medianalysed.api.http import ApiEndpoint
from medianalysed.api.routes import ApiLimits, ApiRouter
from medianalysed.api.submit import Submitter
from medianalysed.config import ApiConfig, InboxConfig
from medianalysed.state import StateStore


class ApiService:
    """Owns the event hub's thread and its observation of published progress."""

    def __init__(
        self, settings: ApiConfig, store: StateStore, inboxes: Sequence[InboxConfig]
    ) -> None:
        auth = Authenticator(settings.tokens, per_minute=settings.rate_limit_per_minute)
        limits = ApiLimits(
            submit=settings.submit,
            max_upload_bytes=settings.max_upload_bytes,
            max_files=settings.max_files,
        )
        submitter = Submitter(inboxes, store) if settings.submit and inboxes else None
        self.hub = EventHub()
        self.endpoint = ApiEndpoint(
            ApiRouter(store, auth, submitter=submitter, limits=limits), self.hub
        )

    def start(self) -> None:
        """Start streaming events of every published progress."""
        self.hub.start()
        progress.add_observer(self.hub.observe)

    def stop(self) -> None:
        """Stop observing and close every stream."""
        progress.remove_observer(self.hub.observe)
        self.hub.stop()
