"""RAYOPS_OBJECT_STORE_HUGE_PAGES parsing, as a table."""

from __future__ import annotations

import pytest

from rayops.objectstore.store_settings import ENV_HUGE_PAGES, StoreSettings, StoreSettingsError


@pytest.mark.parametrize(
    ("raw", "mode", "tries", "requires"),
    [
        (None, "off", False, False),
        ("", "off", False, False),
        ("auto", "auto", True, False),
        ("on", "on", True, True),
        ("1", "on", True, True),
        ("TRUE", "on", True, True),
        ("off", "off", False, False),
        ("0", "off", False, False),
        (" no ", "off", False, False),
    ],
)
def test_modes(raw: str | None, mode: str, tries: bool, requires: bool) -> None:
    env = {} if raw is None else {ENV_HUGE_PAGES: raw}
    settings = StoreSettings.from_env(env)
    assert settings.huge_pages == mode
    assert settings.try_huge_pages is tries
    assert settings.require_huge_pages is requires


@pytest.mark.parametrize("raw", ["always", "2", "huge"])
def test_bad_value_names_the_variable(raw: str) -> None:
    with pytest.raises(StoreSettingsError, match=f"{ENV_HUGE_PAGES} must be one of.*{raw!r}"):
        StoreSettings.from_env({ENV_HUGE_PAGES: raw})


def test_bad_field_names_the_field() -> None:
    with pytest.raises(StoreSettingsError, match=r"StoreSettings\.huge_pages"):
        StoreSettings(huge_pages="yes")
