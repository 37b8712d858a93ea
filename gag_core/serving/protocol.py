"""Request and response models mirroring the OpenAI API (chat completions, completions, models, errors).

Text only: message content is a string or a list of ``{"type": "text"}`` parts; token-id prompts, images,
audio and tensor fields (``prompt_embeds``, the input that became CVE-2025-62164 in vLLM) are refused with
a 400, never deserialised. Unknown plain fields that OpenAI clients send (``presence_penalty``, ``user`` ...)
are ignored. Responses carry the ``gag`` extension object: the route and how sure the router was.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOP = 4  # as OpenAI
TENSOR_FIELDS = ("prompt_embeds", "inputs_embeds", "embeddings")
TEXT_ONLY = ("this server accepts text only and never deserialises tensors or embeddings from a client "
             "(CVE-2025-62164); send the prompt as text")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


# --- requests ------------------------------------------------------------------------------------------

class OpenAIRequest(BaseModel):
    """What chat completions and completions share: model, sampling, stop, streaming."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="auto (routed), general (plain base) or an installed domain's name")
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description="0 or omitted: greedy")
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    prompt_embeds: Any = Field(default=None, exclude=True)
    inputs_embeds: Any = Field(default=None, exclude=True)
    embeddings: Any = Field(default=None, exclude=True)

    @field_validator(*TENSOR_FIELDS, mode="before")
    @classmethod
    def _refuse_tensors(cls, value):
        if value is not None:
            raise ValueError(TEXT_ONLY)
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"n={value} is not supported; this server returns one choice (n=1) per request")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP or any(not s for s in stops):
            raise ValueError(f"stop takes up to {MAX_STOP} non-empty strings; got {stops!r}")
        return stops

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str = ""

    @field_validator("content", mode="before")
    @classmethod
    def _text_content(cls, value):
        """A string, or text parts joined; any other part (image, audio, file) is refused."""
        if value is None or isinstance(value, str):
            return value or ""
        if isinstance(value, list):
            texts = []
            for part in value:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                if kind != "text":
                    raise ValueError(f"a content part of type {kind!r} was sent; {TEXT_ONLY}")
                texts.append(TextPart.model_validate(part).text)
            return "\n".join(texts)
        raise ValueError(f"content must be a string or a list of text parts; {TEXT_ONLY}")


class ChatCompletionRequest(OpenAIRequest):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @field_validator("messages")
    @classmethod
    def _ends_with_a_question(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not value:
            raise ValueError("messages is empty; send at least one message with role 'user'")
        if value[-1].role != "user":
            raise ValueError(f"the last message has role {value[-1].role!r}; it must be the user's question")
        if not value[-1].content.strip():
            raise ValueError("the last user message is empty; send a question")
        return value

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def question_and_history(self) -> tuple[str, list[dict]]:
        """The last message (the user's) is the question; the ones before are the history."""
        *before, last = self.messages
        history = [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in before]
        return last.content, history


class CompletionRequest(OpenAIRequest):
    prompt: str

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_text_prompt(cls, value):
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("prompt is empty; send the question as text")
            return value
        raise ValueError(f"prompt must be one string (not token ids, not several prompts); {TEXT_ONLY}")


# --- responses -----------------------------------------------------------------------------------------

class GagInfo(BaseModel):
    """The ``gag`` extension object: which route answered and how sure the router was."""

    route: str
    score: float | None = None
    runner_up: str | None = None
    runner_up_score: float | None = None
    slots: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> "Usage":
        return cls(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


def unset(value) -> bool:
    return value is None


class Delta(BaseModel):
    role: Literal["assistant"] | None = Field(default=None, exclude_if=unset)
    content: str | None = Field(default=None, exclude_if=unset)


class Choice(BaseModel):
    index: int = 0
    finish_reason: str | None = None  # null until the last chunk
    logprobs: None = None


class ChatChoice(Choice):
    message: AssistantMessage


class ChatChunkChoice(Choice):
    delta: Delta


class CompletionChoice(Choice):
    text: str


class Head(BaseModel):
    """What every response and chunk of one request shares."""

    id: str
    object: str
    created: int = Field(default_factory=now)
    model: str
    choices: list
    usage: Usage | None = Field(default=None, exclude_if=unset)  # streams: the last chunk, with stream_options
    gag: GagInfo | None = Field(default=None, exclude_if=unset)  # streams: the first chunk


class ChatCompletionResponse(Head):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


class ChatCompletionChunk(Head):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]


class CompletionResponse(Head):
    """Also the streaming chunk of /v1/completions (OpenAI uses the same object there)."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str = "gag"
    version: str | None = None
    base_model: str | None = None
    description: str = ""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


OpenAIRequest.model_rebuild()
ChatCompletionRequest.model_rebuild()
CompletionRequest.model_rebuild()
