"""The providers a worker offers, from its settings."""

from __future__ import annotations

from services.core.settings import Settings
from services.worker.providers.base import Provider
from services.worker.providers.fake import FakeProvider
from services.worker.providers.openai_chat import OpenAIProvider


def make_providers(settings: Settings) -> dict[str, Provider]:
    providers: dict[str, Provider] = {"fake": FakeProvider(settings.fake_tokens_per_s)}
    if settings.openai_api_key is not None:
        providers["openai"] = OpenAIProvider(
            settings.openai_api_key.get_secret_value(), settings.openai_base_url
        )
    return providers
