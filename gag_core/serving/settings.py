"""The server's knobs: one dataclass, every field with its help, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..errors import ConfigError

ONE_MB = 1024 * 1024


@dataclass
class ServeSettings:
    api_key: str | None = field(default=None, metadata={
        "help": "key clients send as 'Authorization: Bearer KEY'; None = no key (loopback only)"})
    max_batch: int = field(default=8, metadata={"help": "most requests answered together in one generate call"})
    batch_window_ms: float = field(default=15.0, metadata={
        "help": "how long the worker waits for one more request after the latest (at most 4 windows in all) "
                "before generating"})
    max_queue: int = field(default=64, metadata={"help": "waiting requests beyond which new ones get 429"})
    timeout_s: float = field(default=120.0, metadata={
        "help": "per request, from arrival to the last token; past it the request is cancelled (504)"})
    max_tokens_cap: int = field(default=512, metadata={"help": "the largest max_tokens a request may ask for"})
    default_max_tokens: int = field(default=64, metadata={"help": "max_tokens when a request gives none"})
    max_prompt_tokens: int = field(default=2048, metadata={"help": "user text of all messages, in base tokens"})
    max_body_bytes: int = field(default=ONE_MB, metadata={"help": "request body limit (413 above it)"})
    retry_after_s: int = field(default=1, metadata={"help": "Retry-After seconds sent with a 429"})

    def __post_init__(self):
        positive = ("max_batch", "max_queue", "timeout_s", "max_tokens_cap", "default_max_tokens",
                    "max_prompt_tokens", "max_body_bytes", "retry_after_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"Serving setting {name} must be > 0; got {getattr(self, name)!r}.")
        if self.batch_window_ms < 0:
            raise ConfigError(f"batch_window_ms must be >= 0; got {self.batch_window_ms!r}.")
        if self.default_max_tokens > self.max_tokens_cap:
            raise ConfigError(f"default_max_tokens ({self.default_max_tokens}) is over max_tokens_cap "
                              f"({self.max_tokens_cap}); lower it or raise the cap.")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("The API key is empty; pass a non-empty --api-key or leave it unset.")

    def describe(self) -> dict:
        """The settings as a dict, the key masked (for logs and the startup banner)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["api_key"] = "set" if self.api_key else "none"
        return out
