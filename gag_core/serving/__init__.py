"""``gag serve``: an OpenAI-compatible HTTP server over the routed service.

- ``settings``: the knobs (batching, queue, timeout, caps, key), one validated dataclass.
- ``protocol``: pydantic request/response models mirroring the OpenAI schema (text only), plus the
  ``gag`` extension object (route, score, runner-up, slots).
- ``engine``: knows nothing of HTTP. A dynamic batcher with a bounded queue in front of
  ``RoutedService.answer_batch``; per-request cancel events, streaming through asyncio queues, reload.
- ``app``: the thin FastAPI layer (``create_app(engine, settings)``), errors as OpenAI error objects.

Importing this package imports neither FastAPI nor the models; ``app`` needs the serving dependencies.
"""
