"""The [api] keys: tokens masked, submission needs tokens, short tokens refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from medianalysed.config import MASKED, config_from_dict, render_config
from medianalysed.errors import ConfigError

TOKEN = "a-long-token-for-the-api-0123"


def _issues(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ConfigError) as raised:
        config_from_dict(data, base_dir=Path("/srv"), source=None)
    return {issue.key: issue.message for issue in raised.value.issues}


def test_tokens_are_read_and_masked_in_config_show() -> None:
    config = config_from_dict(
        {"api": {"tokens": [TOKEN], "submit": True}}, base_dir=Path("/srv"), source=None
    )
    assert config.api.tokens == (TOKEN,)
    text = render_config(config)
    assert TOKEN not in text
    assert f'tokens = ["{MASKED}"]' in text.splitlines()


def test_submit_without_tokens_is_a_configuration_error() -> None:
    assert "needs [api] tokens" in _issues({"api": {"submit": True}})["api.submit"]


def test_a_short_or_empty_token_is_refused_without_echoing_it() -> None:
    issues = _issues({"api": {"tokens": ["short-secret"]}})
    assert "shorter than 16" in issues["api.tokens[0]"]
    assert "short-secret" not in " ".join(issues.values())
    assert "non-empty string" in _issues({"api": {"tokens": [""]}})["api.tokens[0]"]
