"""The HTTP API under `/v1/` (SPEC §10), served on the metrics listener.

- `replies`: `ApiError` and the JSON bodies every answer uses.
- `auth`: bearer tokens (constant-time), loopback-only without tokens, a rate limit per token.
- `reads`: batches, one batch, its images (paginated) and results, from the state store.
- `events`: `EventHub`, Server-Sent Events fed by every published progress.
- `submit`: a submitted batch written into an inbox as a folder with its ready marker.
- `routes`: `ApiRouter`, which maps a request to one of the above.
"""
