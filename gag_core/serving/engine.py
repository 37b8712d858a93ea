"""The serving engine: a dynamic batcher in front of ``RoutedService.answer_batch``. It knows nothing of HTTP.

Requests wait in a bounded queue (full: ``QueueFullError``, the app's 429). One worker thread takes the first
waiting request, waits for more while they keep coming (``batch_window_ms`` after the latest, up to
``max_batch``; ``_collect``), groups them by the generation
settings that one ``generate`` call must share, routes the ``auto`` ones in one encoder pass, and answers each
group with one ``answer_batch`` call; requests for different domains share that call. Every request has its
own cancel event (a timeout or a client that leaves sets it, and only its row stops) and its own asyncio queue,
fed from the worker thread with ``loop.call_soon_threadsafe``: first the route, then text pieces (streaming
requests), then the answer or the error.

``reload()`` picks up domains installed, updated or removed since: with a ``refresh`` callable (what
``gag serve`` passes: ``GAG.refresh``) the service is updated in place between two batches, one base model in
memory; without one, a new service is built with ``build_service`` while the old one keeps answering, then
swapped in. Either way no request in flight is dropped, and a failure leaves the old domains serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ..errors import GagError, InputError
from ..generation import GenerationOptions
from ..routes import GENERAL, RouteDecision
from ..service import Query, RoutedService
from .settings import ServeSettings

BURST_WINDOWS = 4  # the longest a batch waits for company, in batch windows (``Engine._collect``)

log = logging.getLogger(__name__)

AUTO = "auto"  # the model name that lets the router choose


class QueueFullError(GagError, RuntimeError):
    """The request queue is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimeoutError(GagError, TimeoutError):
    """A request took longer than the server's per-request timeout and was cancelled."""


class PromptTooLongError(InputError):
    """The user text of a request is over the server's token limit."""


class EngineClosedError(GagError, RuntimeError):
    """The engine is not running (not started yet, or shutting down)."""


@dataclass(frozen=True)
class RouteInfo:
    """Which route answers a request, and how sure the router was (None: the route was forced)."""

    route: str
    score: float | None = None
    runner_up: str | None = None
    runner_up_score: float | None = None
    slots: int = 0

    @classmethod
    def of(cls, service: RoutedService, route: str, decision: RouteDecision | None) -> "RouteInfo":
        slots = 0 if route == GENERAL else int(service.module(route).manifest.projector.slots)
        if decision is None:
            return cls(route, slots=slots)
        return cls(route, decision.score, decision.runner_up, decision.runner_up_score, slots)


def batch_key(options: GenerationOptions) -> tuple:
    """What requests must share to be answered by one ``generate`` call (sampling knobs are moot when greedy)."""
    if options.temperature == 0:
        options = dataclasses.replace(options, top_p=1.0, seed=None)
    return dataclasses.astuple(options)


class Ticket:
    """One request inside the engine: its query, options, cancel event, and the events for its consumer."""

    def __init__(self, query: Query, options: GenerationOptions, stream: bool, timeout_s: float):
        self.loop = asyncio.get_running_loop()
        self.query, self.options, self.stream = query, options, stream
        self.cancel = threading.Event()
        self.deadline = self.loop.time() + timeout_s
        self.arrived = time.monotonic()
        self.timeout_s = timeout_s
        self.route: RouteInfo | None = None
        self.streamed = False  # text already went out (then a failure cannot be retried alone)
        self.finished = False
        self._events: asyncio.Queue = asyncio.Queue()

    # -- worker side (any thread) ----------------------------------------------------------------
    def publish(self, kind: str, value) -> None:
        """Hand an event to the consumer's loop: "route", "text", "done" (the Answer) or "error"."""
        try:
            self.loop.call_soon_threadsafe(self._events.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancel.set()

    # -- consumer side (the event loop) ----------------------------------------------------------
    async def events(self) -> AsyncIterator[tuple[str, object]]:
        """Yield (kind, value) until the answer; raises the request's error or ``RequestTimeoutError``."""
        while True:
            try:
                kind, value = await asyncio.wait_for(self._events.get(), max(self.deadline - self.loop.time(), 0))
            except TimeoutError:
                self.cancel.set()
                raise RequestTimeoutError(
                    f"The request took longer than {self.timeout_s:g} s and was cancelled; ask for fewer "
                    "max_tokens, retry later, or start the server with a higher --timeout-s.") from None
            if kind == "error":
                self.finished = True
                raise value
            yield kind, value
            if kind == "done":
                self.finished = True
                return

    async def result(self):
        """(RouteInfo, Answer) once the request is answered."""
        route = None
        async for kind, value in self.events():
            if kind == "route":
                route = value
            elif kind == "done":
                return route, value
        raise EngineClosedError("The request ended without an answer.")  # unreachable: events ends on done

    def abandon(self) -> None:
        """The consumer is gone (disconnect, timeout, error): stop generating for it."""
        if not self.finished:
            self.cancel.set()


class Engine:
    """Dynamic batching over a routed service; ``submit`` from the event loop, the rest runs in one worker."""

    def __init__(self, build_service: Callable[[], RoutedService], settings: ServeSettings | None = None, *,
                 refresh: Callable[[RoutedService], dict] | None = None):
        self.build_service = build_service
        self.refresh = refresh  # updates the service in place on reload (one base in memory); None = rebuild
        self.settings = settings or ServeSettings()
        self._service: RoutedService | None = None
        self._queue: queue.Queue[Ticket] = queue.Queue(maxsize=self.settings.max_queue)
        self._lock = threading.Lock()  # held by the worker while it answers; reload swaps under it
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._hosted = False  # the loop runs in a caller's thread (serve_here), not in _worker
        self._batch_listeners: list[Callable[[int], None]] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, *, worker: bool = True) -> "Engine":
        """Build and warm the service (once), then start the worker thread. Safe to call again.

        ``worker=False``: no thread; the caller runs the loop in its own thread with :meth:`serve_here`."""
        if self._service is None:
            self._service = self._warm(self.build_service())
        if not worker:
            self._hosted = True
        if not self._hosted and (self._worker is None or not self._worker.is_alive()):
            self._stop.clear()
            self._worker = threading.Thread(target=self._run, name="gag-engine", daemon=True)
            self._worker.start()
        return self

    def serve_here(self, until: Callable[[], bool] = lambda: False) -> None:
        """Answer requests in the calling thread until :meth:`close` or ``until()`` (after ``start(worker=False)``).

        `gag serve` generates on the process's main thread and runs the HTTP server in a second one: on a
        2-core CPU, PyTorch's bf16 matrix products ran up to 2x slower in a second thread than in the main one
        (fp32 ones did not; the cause, likely OpenMP's thread teams, is not established), 1.3x per answer
        (docs/serving.md)."""
        if not self._hosted:
            raise EngineClosedError("Call start(worker=False) before serve_here().")
        try:
            self._run(until)
        finally:
            self._hosted = False

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after its current batch; requests still waiting get ``EngineClosedError``."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        while True:
            try:
                ticket = self._queue.get_nowait()
            except queue.Empty:
                break
            ticket.publish("error", EngineClosedError("The server is shutting down; retry on another instance."))

    @property
    def running(self) -> bool:
        return self._hosted or (self._worker is not None and self._worker.is_alive())

    @property
    def service(self) -> RoutedService:
        if self._service is None:
            raise EngineClosedError("The engine has not started; call start() first.")
        return self._service

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def add_batch_listener(self, listener: Callable[[int], None]) -> None:
        """``listener(batch_size)`` is called (in the worker) before every generate call."""
        self._batch_listeners.append(listener)

    # -- requests (event-loop side) --------------------------------------------------------------
    def resolve_model(self, model: str) -> str | None:
        """The route a model name asks for: None for ``auto`` (routed), else a checked forced route."""
        return None if model == AUTO else self.service.resolve(model)

    def submit(self, model: str, question: str, history: list[dict] | None, options: GenerationOptions,
               stream: bool = False) -> Ticket:
        """Queue a request (call from the running event loop). Raises for an unknown model or a full queue."""
        if not self.running:
            raise EngineClosedError("The server is not accepting requests (starting or shutting down); retry.")
        ticket = Ticket(Query(question, self.resolve_model(model), history), options, stream, self.settings.timeout_s)
        try:
            self._queue.put_nowait(ticket)
        except queue.Full:
            raise QueueFullError(f"The server is busy ({self.settings.max_queue} requests waiting); retry after "
                                 f"{self.settings.retry_after_s} s.", self.settings.retry_after_s) from None
        return ticket

    def catalog(self) -> list[dict]:
        """The models a client can ask for: auto, general and every loaded domain (version, base model)."""
        service = self.service
        domains = [service.module(name).manifest for name in service.domains]
        base = getattr(service.pipeline, "base_id", None) or (domains[0].base.get("id") if domains else None)
        rows = [{"id": AUTO, "base_model": base, "description": "routed: general or the domain the router picks"},
                {"id": GENERAL, "base_model": base, "description": "the plain frozen base model, no injection"}]
        rows += [{"id": m.name, "version": m.version, "base_model": m.base.get("id"), "description": m.description}
                 for m in domains]
        return rows

    # -- reload ----------------------------------------------------------------------------------
    def reload(self) -> dict:
        """Pick up domains installed, updated or removed since, between batches. With ``refresh`` the service is
        updated in place (requests wait for it, none is dropped); else a fresh service is built while the old
        one keeps answering, then swapped in. A broken module ends up in ``unavailable``; if the build itself
        fails, the error is raised and the old service goes on serving."""
        with self._reload_lock:
            if self.refresh is not None:
                with self._lock:
                    report = self.refresh(self.service)
                self._warm(self.service)
                return report
            old_domains = set(self.service.domains)
            fresh = self._warm(self.build_service())
            with self._lock:
                self._service = fresh
            new_domains = set(fresh.domains)
            return {"domains": sorted(new_domains), "added": sorted(new_domains - old_domains),
                    "removed": sorted(old_domains - new_domains), "unavailable": dict(fresh.unavailable)}

    @staticmethod
    def _warm(service: RoutedService) -> RoutedService:
        """Build the router now (it is lazy) so the first request does not pay for it."""
        try:
            service.route_batch(["Hello, what can you tell me?"])
        except GagError as exc:  # the requests will report it; do not fail the start
            log.warning("Router warm-up failed: %s", exc)
        return service

    # -- the worker ------------------------------------------------------------------------------
    def _run(self, until: Callable[[], bool] = lambda: False) -> None:
        while not self._stop.is_set() and not until():
            tickets = self._collect()
            groups: dict[tuple, list[Ticket]] = {}
            for ticket in tickets:
                groups.setdefault(batch_key(ticket.options), []).append(ticket)
            for group in groups.values():  # oldest request's group first
                with self._lock:
                    self._serve(self.service, group)

    def _collect(self) -> list[Ticket]:
        """The first waiting request, plus the ones that follow it closely, up to max_batch: the wait ends one
        batch window after the latest arrival (or after the worker became free, for requests that piled up
        while a batch ran), and at most ``BURST_WINDOWS`` windows after that start. A lone request waits one
        window; clients that all resend when a batch ends, their arrivals spread by the HTTP thread, are not cut
        in two, and they join the requests that were already waiting."""
        free = time.monotonic()
        try:
            tickets = [self._queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        window = self.settings.batch_window_ms / 1000
        latest = max(tickets[0].arrived, free)
        cap = latest + BURST_WINDOWS * window
        while len(tickets) < self.settings.max_batch:
            try:
                tickets.append(self._queue.get(timeout=max(min(latest + window, cap) - time.monotonic(), 0)))
            except queue.Empty:
                break
            latest = max(latest, tickets[-1].arrived)
        return tickets

    def _serve(self, service: RoutedService, tickets: list[Ticket]) -> None:
        """Answer one group; never raises (every failure goes to the tickets it concerns)."""
        try:
            live = [t for t in tickets if self._admit(service, t)]
            self._route(service, [t for t in live if t.route is None])
            if live:
                self._answer(service, live)
        except Exception as exc:  # noqa: BLE001 - the worker must survive anything
            log.exception("The serving worker failed on a batch")
            for ticket in tickets:
                if not ticket.finished:
                    ticket.publish("error", exc)

    def _admit(self, service: RoutedService, ticket: Ticket) -> bool:
        """Drop requests cancelled while waiting and refuse prompts over the token limit."""
        if ticket.cancel.is_set():
            return False
        query, limit = ticket.query, self.settings.max_prompt_tokens
        texts = [query.question] + [m.get("content") or "" for m in query.history or []]
        tokenizer = service.pipeline.tokenizer
        count = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        if count > limit:
            ticket.publish("error", PromptTooLongError(
                f"The prompt is {count} tokens long; this server takes at most {limit}. Shorten the messages "
                "(or start the server with a higher --max-prompt-tokens)."))
            return False
        if query.route is not None:
            try:
                ticket.route = RouteInfo.of(service, service.resolve(query.route), None)
            except GagError as exc:  # the domain left in a reload while the request waited
                ticket.publish("error", exc)
                return False
            ticket.publish("route", ticket.route)
        return True

    def _route(self, service: RoutedService, tickets: list[Ticket]) -> None:
        """Route the ``auto`` requests in one encoder pass; each learns its route before any text."""
        if not tickets:
            return
        decisions = service.route_batch([t.query.question for t in tickets])
        for ticket, decision in zip(tickets, decisions):
            ticket.route = RouteInfo.of(service, decision.route, decision)
            ticket.publish("route", ticket.route)

    def _answer(self, service: RoutedService, tickets: list[Ticket]) -> None:
        for listener in self._batch_listeners:
            listener(len(tickets))
        queries = [Query(t.query.question, t.route.route, t.query.history) for t in tickets]

        def on_text(row: int, piece: str) -> None:
            if tickets[row].stream and piece:
                tickets[row].streamed = True
                tickets[row].publish("text", piece)

        try:
            answers = service.answer_batch(queries, tickets[0].options, cancel=[t.cancel for t in tickets],
                                           on_text=on_text if any(t.stream for t in tickets) else None)
        except Exception as exc:  # noqa: BLE001 - isolate the request that broke the batch
            if len(tickets) == 1 or any(t.streamed for t in tickets):
                for ticket in tickets:
                    ticket.publish("error", exc)
                return
            log.warning("A batch of %d failed (%s); answering its requests one by one", len(tickets), exc)
            for ticket in tickets:
                self._answer(service, [ticket])
            return
        for ticket, answer in zip(tickets, answers):
            ticket.publish("done", answer)
