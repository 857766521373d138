"""What of a URL may be written down: credentials stripped, webhook tokens masked.

Two rules, each applied where text leaves the daemon (results, CSV, error messages, logs,
dead letters, `status`):

- userinfo (`user:password@`, or a bare token used as the user name) is secret in every URL.
  `strip_userinfo` removes it from any text, parsable URL or not (a malformed `urls.txt`
  line is echoed in its error message); `mask_userinfo` replaces it by the mask in logs;
  `mask_url` masks the password alone (`print-config`, configuration errors: the user name
  tells which account is configured).
- a webhook URL carries its token in the path or the query (Slack, Discord, "?token=").
  `mask_webhook_url` keeps the scheme, host and port, the leading path words that are plainly
  not tokens (short lowercase words, never the last segment) and the query keys; every
  other path segment, every query value and the fragment become the mask. The delivery itself
  always uses the real URL.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit, urlunsplit

MASK: Final = "********"

# The authority's userinfo: everything up to the last "@" before the path, query or fragment.
# At the start of the text too, for a line without a scheme ("user:pw@host/x.jpg").
_USERINFO = re.compile(r"(^|://)[^/?#\s]*@")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")
_PATH_WORD = re.compile(r"[a-z][a-z_-]{0,15}")
_QUERY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")


def strip_userinfo(text: str) -> str:
    """`text` with the userinfo of every URL in it removed ("http://u:p@h/" -> "http://h/")."""
    return _USERINFO.sub(lambda match: match[1], text)


def mask_userinfo(text: str) -> str:
    """`text` with the userinfo of every "scheme://" URL in it replaced by the mask."""
    return _URL_USERINFO.sub(lambda match: f"{match[1]}{MASK}@", text)


def mask_url(url: str) -> str:
    """The URL with any userinfo password replaced by the mask."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))


def mask_webhook_url(url: str) -> str:
    """The form of a webhook URL that may be logged or shown (see the module docstring)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return MASK
    hostport = parts.netloc.rpartition("@")[2]
    masked = f"{parts.scheme}://{hostport}{_mask_path(parts.path)}"
    if parts.query:
        masked += "?" + "&".join(_mask_query_item(item) for item in parts.query.split("&"))
    if parts.fragment:
        masked += "#" + MASK
    return masked


def _mask_path(path: str) -> str:
    segments = path.split("/")
    last = max((i for i, segment in enumerate(segments) if segment), default=-1)
    kept = [
        segment
        if not segment or (i != last and _PATH_WORD.fullmatch(segment) is not None)
        else MASK
        for i, segment in enumerate(segments)
    ]
    return "/".join(kept)


def _mask_query_item(item: str) -> str:
    key, equals, _value = item.partition("=")
    shown_key = key if _QUERY_KEY.fullmatch(key) else MASK
    return f"{shown_key}={MASK}" if equals else MASK  # a bare item may be the token
