"""What of a URL may be written down: userinfo stripped or masked, webhook tokens masked."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medianalysed.redaction import MASK, mask_userinfo, mask_webhook_url, strip_userinfo


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("http://u:p@h/x.jpg", "http://h/x.jpg"),
        ("https://TOKEN@h:8443/x", "https://h:8443/x"),
        ("http://a@b@h/x", "http://h/x"),
        ("u:p@h/x.jpg", "h/x.jpg"),
        ("http://h/users/me@example.com/x.jpg", "http://h/users/me@example.com/x.jpg"),
        ("http://u:p@[::1/x", "http://[::1/x"),
        ("see http://u:p@h/a and https://v@k/b", "see http://h/a and https://k/b"),
    ],
)
def test_strip_userinfo(text: str, stripped: str) -> None:
    assert strip_userinfo(text) == stripped


def test_mask_userinfo_keeps_the_shape() -> None:
    assert mask_userinfo("GET https://u:p@h/x") == f"GET https://{MASK}@h/x"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/services/*/*/*"),
        ("https://discord.com/api/webhooks/123/tok", "https://discord.com/api/webhooks/*/*"),
        ("https://h.example/hook?token=abc&v=2", "https://h.example/*?token=*&v=*"),
        ("https://h.example/", "https://h.example/"),
        ("https://u:pw@h.example:8443/supersecret", "https://h.example:8443/*"),
        ("https://h.example/a/b#frag", "https://h.example/a/*#*"),
        ("https://h.example/x?bare", "https://h.example/*?*"),
        ("not a url", "*"),
    ],
)
def test_mask_webhook_url(url: str, masked: str) -> None:
    assert mask_webhook_url(url) == masked.replace("*", MASK)


tokens = st.text(alphabet="abcdefghijkmnpqrstuvwxyz0123456789ABCDEF", min_size=10, max_size=30)


@settings(deadline=None, max_examples=200)
@given(
    host=st.sampled_from(["h.example", "127.0.0.1:8080", "[::1]:9"]),
    words=st.lists(st.sampled_from(["api", "hooks", "services", "v1"]), max_size=3),
    token=tokens,
    query_secret=tokens,
    userinfo=st.one_of(st.just(""), tokens.map(lambda t: t + "@"), tokens.map(lambda t: f"u:{t}@")),
)
def test_no_token_survives_masking(
    host: str, words: list[str], token: str, query_secret: str, userinfo: str
) -> None:
    path = "/".join([*words, token])
    url = f"https://{userinfo}{host}/{path}?k={query_secret}"
    masked = mask_webhook_url(url)
    assert token not in masked
    assert query_secret not in masked
    assert userinfo.rstrip("@").removeprefix("u:") not in masked or not userinfo
    assert masked.startswith(f"https://{host}/")
    assert mask_webhook_url(masked) == masked  # masking again changes nothing
    assert token not in strip_userinfo(f"http://x:{token}@{host}/")
