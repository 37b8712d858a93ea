"""How an answer is dressed for each endpoint: one response object, or the chunks of its stream.

A stream is: a first chunk with the ``gag`` object (the route, before any text), one chunk per text piece, a
last chunk with the finish reason, and (with ``stream_options.include_usage``) a usage chunk with no choices.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict

from pydantic import BaseModel

from .engine import RouteInfo
from .protocol import (AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionResponse,
                       Choice, CompletionChoice, CompletionResponse, Delta, GagInfo, Head, Usage, new_id, now)


def gag_info(route: RouteInfo) -> GagInfo:
    return GagInfo(**asdict(route))


def usage_of(answer) -> Usage:
    return Usage.of(answer.prompt_tokens, answer.completion_tokens)


class Shape(ABC):
    """One request's response id, creation time and model name, shared by its response or all its chunks."""

    endpoint = ""
    prefix = ""
    response_cls: type[Head] = Head
    chunk_cls: type[Head] = Head

    def __init__(self, model: str):
        self.model, self.id, self.created = model, new_id(self.prefix), now()

    def _make(self, cls: type[Head], choices: list[Choice], **extra) -> BaseModel:
        return cls(id=self.id, created=self.created, model=self.model, choices=choices, **extra)

    @abstractmethod
    def answer_choice(self, answer) -> Choice:
        """The one choice of a whole response."""

    @abstractmethod
    def chunk_choice(self, text: str | None = None, finish: str | None = None, first: bool = False) -> Choice:
        """The one choice of a stream chunk: the first (role only), a text piece, or the last (finish reason)."""

    def full(self, route: RouteInfo, answer) -> BaseModel:
        return self._make(self.response_cls, [self.answer_choice(answer)], usage=usage_of(answer), gag=gag_info(route))

    def first(self, route: RouteInfo) -> BaseModel:
        return self._make(self.chunk_cls, [self.chunk_choice(first=True)], gag=gag_info(route))

    def piece(self, text: str) -> BaseModel:
        return self._make(self.chunk_cls, [self.chunk_choice(text)])

    def last(self, answer) -> BaseModel:
        return self._make(self.chunk_cls, [self.chunk_choice(finish=answer.finish_reason)])

    def usage(self, answer) -> BaseModel:
        return self._make(self.chunk_cls, [], usage=usage_of(answer))


class ChatShape(Shape):
    endpoint, prefix = "/v1/chat/completions", "chatcmpl"
    response_cls, chunk_cls = ChatCompletionResponse, ChatCompletionChunk

    def answer_choice(self, answer) -> ChatChoice:
        return ChatChoice(message=AssistantMessage(content=answer.answer), finish_reason=answer.finish_reason)

    def chunk_choice(self, text=None, finish=None, first=False) -> ChatChunkChoice:
        delta = Delta(role="assistant", content="") if first else Delta(content=text)
        return ChatChunkChoice(delta=delta, finish_reason=finish)


class CompletionShape(Shape):
    endpoint, prefix = "/v1/completions", "cmpl"
    response_cls = chunk_cls = CompletionResponse

    def answer_choice(self, answer) -> CompletionChoice:
        return CompletionChoice(text=answer.answer, finish_reason=answer.finish_reason)

    def chunk_choice(self, text=None, finish=None, first=False) -> CompletionChoice:
        return CompletionChoice(text=text or "", finish_reason=finish)
