"""Benchmark: a class of students on one ConvScope server, each clicking through a lesson; what they wait for.

Each simulated student speaks Streamlit's own websocket protocol (ws://HOST/_stcore/stream, protobuf
BackMsg / ForwardMsg), as the browser does: it opens a page (a BackMsg rerun_script with the page's
name), learns the widgets from the ForwardMsg deltas, and after a think time changes one widget: a
rerun_script carrying the full widget_states the browser would report (and the fragment's id when the
widget sits in a st.fragment), plus the hashes of the large messages it has cached, so the server
sends references to them instead. Images on the page are fetched over HTTP like the browser does.
Through a load balancer (``--url`` of python -m deploy.local's HAProxy) each student keeps the cookies
its first page load was given, as a browser does, so its websocket and images go to one replica; the
report counts the sessions per replica (HAProxy's X-ConvScope-Replica header), and an image answered by
another replica than the student's websocket counts as an error.

Measured per interaction: from sending the BackMsg to the ForwardMsg script_finished of that run
(after a callback's st.rerun(), the run that follows), and to the end of its images' download. Also:
errors (exceptions shown on the page, disconnects, timeouts), and the server's RSS over time, peak RSS
(VmHWM) and CPU seconds, read from /proc.

Run: ``python -m bench.classroom`` (30 students on the convolution lesson, 20 interactions each);
``--sessions 3 --clicks 5`` for a quick check; ``--page stacks``; ``--server-flag
runner.postScriptGC=false`` (repeatable) passes options to the server it starts; ``--url
http://HOST:PORT`` uses a running server instead (``--pid`` lets it read that server's /proc).
``--memory``: 30 students x 50 interactions, RSS printed as they go, then all leave and RSS and the
server's own accounts (/_stcore/metrics) are read again after server.disconnectedSessionTTL; then a
second class on the same server, to show a closed session's memory is given back and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from typing import NamedTuple

import numpy as np
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.NumberInput_pb2 import NumberInput
from streamlit.proto.Slider_pb2 import Slider
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.runtime.state.session_state import STREAMLIT_INTERNAL_KEY_PREFIX
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench._common import (OPEN_PAGE, PAGE_INTERACTIONS, PAGE_PATHS, Summary, Unavailable, app_server,
                           cpu_seconds, flag_value, machine_line, memory_mib, pick_interaction)
from views.components import decode_data

REPLICA_HEADER = "x-convscope-replica"  # set by deploy/haproxy.cfg: the replica that answered
MAX_REPLICAS = 16  # the most a balancer is asked to show (deploy/haproxy-compose-servers.cfg's slots)
TIMELINE_WINDOW_S = 10.0  # the report's p95 per this many seconds of the class
METRICS_REFRESH_SECONDS = 6  # /_stcore/metrics recomputes memory figures at most every 5 s
TERMINAL_STATUSES = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY,
                     ForwardMsg.FINISHED_WITH_COMPILE_ERROR)
# Element fields that are widgets: their messages carry the widget's id.
WIDGET_KINDS = frozenset(field.name for field in Element.DESCRIPTOR.fields
                         if field.message_type is not None and "id" in field.message_type.fields_by_name)


class SessionError(Exception):
    """Something a student would see go wrong: ``kind`` is "disconnect", "timeout" or "protocol"."""

    def __init__(self, kind, detail):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Widget(NamedTuple):
    """A widget as the last run drew it: its Element field name, that field's message, its fragment."""

    kind: str
    proto: object
    fragment_id: str


# ---------------------------------------------------------------------------------------------------
# What the browser reports for a widget, and what a student changes it to


def _user_key(widget_id):
    # Streamlit's ids are "$$ID-<hash>-<user key>" ("None" when the widget has no key).
    return widget_id.split("-", 2)[2] if widget_id.startswith("$$ID-") else widget_id


def drawn_state(widget):
    """The WidgetState the browser reports for a widget the server has just drawn, or None (it reports none).

    A widget whose value the server set (``set_value``, e.g. from st.session_state) shows that value;
    otherwise its default.
    """
    kind, proto = widget.kind, widget.proto
    state = WidgetState(id=proto.id)
    if kind in ("selectbox", "radio"):
        if proto.set_value and proto.HasField("raw_value"):
            state.string_value = proto.raw_value
        elif proto.HasField("default") and 0 <= proto.default < len(proto.options):
            state.string_value = proto.options[proto.default]
        else:
            return None
    elif kind == "slider" and proto.type == Slider.SELECT_SLIDER:
        chosen = list(proto.raw_value) if proto.set_value else [proto.options[int(i)] for i in proto.default]
        state.string_array_value.data[:] = chosen
    elif kind == "slider":
        state.double_array_value.data[:] = list(proto.value if proto.set_value else proto.default)
    elif kind == "number_input":
        if proto.set_value and proto.HasField("value"):
            number = proto.value
        elif proto.HasField("default"):
            number = proto.default
        else:
            return None
        # The browser sends whole-number inputs as integers.
        if proto.data_type == NumberInput.INT:
            state.int_value = int(number)
        else:
            state.double_value = number
    elif kind == "checkbox":
        state.bool_value = proto.value if proto.set_value else proto.default
    elif kind == "multiselect":
        chosen = list(proto.raw_values) if proto.set_value else [proto.options[i] for i in proto.default]
        state.string_array_value.data[:] = chosen
    else:
        return None  # buttons (triggers), components before a click, tables, uploads
    return state


def _other(options, current, rng):
    choices = [option for option in options if option != current]
    if not choices:
        raise Unavailable("only one option")
    return rng.choice(choices)


def _chosen_state(widget, current, rng):
    """A WidgetState with another option of a selectbox, radio or slider than ``current`` (a WidgetState)."""
    kind, proto = widget.kind, widget.proto
    state = WidgetState(id=proto.id)
    if kind in ("selectbox", "radio"):
        state.string_value = _other(proto.options, current.string_value if current else None, rng)
    elif kind == "slider" and proto.type == Slider.SELECT_SLIDER:
        now = current.string_array_value.data[0] if current and current.string_array_value.data else None
        state.string_array_value.data[:] = [_other(proto.options, now, rng)]
    elif kind == "slider":
        count = int(round((proto.max - proto.min) / proto.step)) + 1
        values = [proto.min + index * proto.step for index in range(count)]
        now = current.double_array_value.data[0] if current and current.double_array_value.data else None
        state.double_array_value.data[:] = [_other(values, now, rng)]
    else:
        raise Unavailable(f"cannot choose an option of a {kind}")
    return state


def _trigger(widget, event, value):
    """The WidgetState a components v2 element sends when its JavaScript calls setTriggerValue(event, value)."""
    return WidgetState(id=f"{STREAMLIT_INTERNAL_KEY_PREFIX}_{widget.proto.id}__events",
                       json_trigger_value=json.dumps([{"event": event, "value": value}]))


def _pointer_event(widget, rng, drag):
    """What a picture (views/components/picture) sends for a click (or a drag) at a random place on it."""
    rows, cols = decode_data(widget.proto)["shape"]
    value = {"width": cols, "height": rows}
    x, y = rng.uniform(0, cols), rng.uniform(0, rows)
    if drag:  # 20-80 screen pixels on a picture about 600 pixels across
        value.update(x1=x, y1=y, x2=min(x + rng.uniform(20, 80) * cols / 600, cols),
                     y2=min(y + rng.uniform(20, 80) * cols / 600, rows))
    else:
        value.update(x=x, y=y)
    return _trigger(widget, "click", value)


def _control_event(widget, name, rng):
    """The trigger a control panel sends when the person gives its control ``name`` another value."""
    controls = {control["name"]: control for control in decode_data(widget.proto)["controls"]}
    control = controls.get(name)
    if control is None or control["kind"] == "fixed":
        raise Unavailable("absent")
    if control.get("disabled"):
        raise Unavailable("disabled")
    current = control["value"]
    if control["kind"] == "slider":
        chosen = _other(range(control["low"], control["high"] + 1), current, rng)
    elif control["kind"] in ("buttons", "menu"):
        chosen = _other(control["options"], current, rng)
    elif control["kind"] == "switch":
        chosen = not current
    else:  # a number: one step up or down, as the arrow keys do
        chosen = min(max(current + rng.choice((-1, 1)) * control["step"], control["low"]), control["high"])
    return _trigger(widget, "change", {"name": name, "value": chosen})


def changed_state(interaction, widget, current, rng):
    """The WidgetState a student's ``interaction`` sends for ``widget`` (``current``: its reported state)."""
    if getattr(widget.proto, "disabled", False):
        raise Unavailable("disabled")
    state = WidgetState(id=widget.proto.id)
    if interaction.action == "click":
        state.trigger_value = True
    elif interaction.action == "choose":
        state = _chosen_state(widget, current, rng)
    elif interaction.action == "toggle":
        state.bool_value = not (current.bool_value if current else widget.proto.default)
    elif interaction.action in ("click_image", "drag_image"):
        state = _pointer_event(widget, rng, drag=interaction.action == "drag_image")
    elif interaction.action == "set":
        state = _control_event(widget, interaction.control, rng)
    else:
        raise ValueError(f"unknown action {interaction.action!r}")
    return state


# ---------------------------------------------------------------------------------------------------
# One student's connection


class _CachedMessage:
    def __init__(self, message, last_used_run):
        self.message = message
        self.last_used_run = last_used_run
        self.fragment_id = message.delta.fragment_id


class MessageCache:
    """The browser's cache of large ForwardMsgs, as Streamlit's frontend keeps it (its ForwardMessageCache).

    The server sends a message the browser reports having (by hash) as a reference. A message unused
    for more than ``max_age`` runs is dropped (global.maxCachedMessageAge, sent in new_session); a
    fragment's run ages only that fragment's messages.
    """

    def __init__(self):
        self._entries = {}  # hash -> _CachedMessage
        self._run_count = 0
        self.max_age = 2

    def remember(self, message):
        if message.hash in self._entries:
            self._entries[message.hash].last_used_run = self._run_count
        else:
            self._entries[message.hash] = _CachedMessage(message, self._run_count)

    def get(self, message_hash):
        entry = self._entries.get(message_hash)
        if entry is None:
            raise SessionError("protocol", f"the server referred to a message never cached ({message_hash})")
        entry.last_used_run = self._run_count
        return entry.message

    def hashes(self):
        return list(self._entries)

    def end_of_run(self, fragment_ids):
        self._run_count += 1
        for message_hash, entry in list(self._entries.items()):
            if fragment_ids and entry.fragment_id not in fragment_ids:
                continue
            if self._run_count - entry.last_used_run > self.max_age:
                del self._entries[message_hash]


class StudentSession:
    """One browser tab's conversation with the server over /_stcore/stream.

    It keeps what the browser keeps: the widgets the last runs drew, the states it reports for them,
    the cache of large messages (by hash, aged like the browser's), the current page's script hash,
    and the images it has already downloaded.
    """

    def __init__(self, server_url, page, timeout):
        self._server_url = server_url
        self._page = page
        self._timeout = timeout
        self._socket = None
        self._receiver = None
        self._widgets = {}          # widget id -> Widget
        self._states = {}           # widget id -> WidgetState the browser reports
        self._seen_this_run = set()
        self._run_fragments = ()
        self._cache = MessageCache()
        self._page_script_hash = ""
        self._finished = None       # future: the terminal status of the run under way
        self._downloaded = set()
        self._downloads = []        # image downloads started by the run under way
        self._http = HttpClient()   # the page and its images, over connections kept open
        self._cookies = ""          # what a browser's cookie jar sends: the balancer's choice of replica
        self.replica = None         # the replica that holds this session (None: a server without a balancer)
        self.exceptions = []        # texts of exceptions the page showed
        self.auto_reruns = 0        # run_every timers the server asked for (not simulated)

    # -- public --------------------------------------------------------------------------------

    async def open(self):
        """Connect and load the page; returns (seconds to script finished, seconds to images loaded)."""
        # The browser loads the page first; a balancer's answer sets the cookie that keeps it on one replica.
        _, headers = await self._http.get(f"{self._server_url}/{PAGE_PATHS[self._page]}")
        self._cookies = "; ".join(cookie.split(";", 1)[0] for cookie in headers.get("set-cookie", []))
        ws_url = urllib.parse.urljoin(self._server_url.replace("http", "ws", 1) + "/", "_stcore/stream")
        try:
            self._socket = await connect(ws_url, subprotocols=["streamlit"], max_size=None, proxy=None,
                                         ping_interval=None, open_timeout=self._timeout,
                                         additional_headers={"Cookie": self._cookies} if self._cookies else None)
        except (OSError, InvalidHandshake, asyncio.TimeoutError) as error:
            raise SessionError("disconnect", f"could not connect: {error}") from error
        self.replica = self._socket.response.headers.get(REPLICA_HEADER)
        self._receiver = asyncio.create_task(self._receive())
        return await self._run(page_name=PAGE_PATHS[self._page])

    async def interact(self, interaction, rng):
        """Do ``interaction``; returns (seconds to script finished, seconds to images loaded).

        Raises Unavailable when its widget is not on the page or is disabled.
        """
        if interaction.action == "rerun":
            return await self._run()
        widget = self._widget_with_key(interaction.key)
        if widget is None:
            raise Unavailable("absent")
        state = changed_state(interaction, widget, self._states.get(widget.proto.id), rng)
        if interaction.action in ("choose", "toggle"):  # a trigger lasts one run; values stay
            self._states[state.id] = state
        return await self._run(changed=state, fragment_id=widget.fragment_id)

    async def close(self):
        self._http.close()
        if self._socket is not None:
            await self._socket.close()
        if self._receiver is not None:
            await asyncio.gather(self._receiver, return_exceptions=True)

    # -- sending -------------------------------------------------------------------------------

    def _widget_with_key(self, key):
        for widget_id, widget in self._widgets.items():
            if _user_key(widget_id) == key:
                return widget
        return None

    def _rerun_message(self, page_name, changed, fragment_id):
        message = BackMsg()
        client_state = message.rerun_script
        client_state.query_string = ""
        client_state.page_script_hash = self._page_script_hash
        client_state.page_name = page_name
        client_state.fragment_id = fragment_id
        for widget_id in self._widgets:
            state = changed if changed is not None and changed.id == widget_id else self._states.get(widget_id)
            if state is not None:
                client_state.widget_states.widgets.append(state)
        if changed is not None and changed.id not in self._widgets:  # a component's event: its own id
            client_state.widget_states.widgets.append(changed)
        client_state.cached_message_hashes.extend(self._cache.hashes())
        return message

    async def _run(self, page_name="", changed=None, fragment_id=""):
        """Send a rerun and wait for its end; returns (seconds to script finished, to images loaded)."""
        self._finished = asyncio.get_running_loop().create_future()
        self._downloads = []
        message = self._rerun_message(page_name, changed, fragment_id)
        start = time.perf_counter()
        try:
            await self._socket.send(message.SerializeToString())
            status = await asyncio.wait_for(asyncio.shield(self._finished), self._timeout)
        except ConnectionClosed as error:
            raise SessionError("disconnect", str(error)) from error
        except asyncio.TimeoutError as error:
            raise SessionError("timeout", f"no script_finished within {self._timeout:.0f} s") from error
        script_seconds = time.perf_counter() - start
        if status == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
            self.exceptions.append("the script did not compile")
        try:
            await asyncio.wait_for(asyncio.gather(*self._downloads), self._timeout)
        except asyncio.TimeoutError as error:
            raise SessionError("timeout", f"images not loaded within {self._timeout:.0f} s") from error
        return script_seconds, time.perf_counter() - start

    # -- receiving -----------------------------------------------------------------------------

    async def _receive(self):
        try:
            async for data in self._socket:
                message = ForwardMsg()
                message.ParseFromString(data)
                self._handle(message)
        except ConnectionClosed:
            pass
        except Exception as error:  # a bug here must end the waiting run, not hang it
            self._fail(SessionError("protocol", f"{type(error).__name__}: {error}"))
            raise
        finally:
            self._fail(SessionError("disconnect", "the server closed the connection"))

    def _fail(self, error):
        if self._finished is not None and not self._finished.done():
            self._finished.set_exception(error)

    def _handle(self, message):
        kind = message.WhichOneof("type")
        if kind == "ref_hash":
            message = self._cache.get(message.ref_hash)
            kind = message.WhichOneof("type")
        elif message.metadata.cacheable:
            self._cache.remember(message)
        if kind == "new_session":
            self._page_script_hash = message.new_session.page_script_hash
            self._cache.max_age = message.new_session.config.max_cached_message_age
            self._seen_this_run = set()
            self._run_fragments = tuple(message.metadata.run.fragment_ids)
        elif kind == "navigation":
            self._page_script_hash = message.navigation.page_script_hash
        elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            self._take_element(message.delta.new_element, message.delta.fragment_id)
        elif kind == "session_event" and message.session_event.WhichOneof("type") == "script_compilation_exception":
            self.exceptions.append(message.session_event.script_compilation_exception.message)
        elif kind == "page_not_found":
            self._fail(SessionError("protocol", f"page not found: {self._page}"))
        elif kind == "auto_rerun":
            self.auto_reruns += 1
        elif kind == "script_finished" and message.script_finished in TERMINAL_STATUSES:
            self._end_of_run(message.script_finished)

    def _take_element(self, element, fragment_id):
        field = element.WhichOneof("type")
        if field == "exception":
            self.exceptions.append(f"{element.exception.type}: {element.exception.message}")
        elif field == "imgs":
            for image in element.imgs.imgs:
                self._download(image.url)
        elif field == "bidi_component" and element.bidi_component.component_name == "convscope_picture":
            self._download(decode_data(element.bidi_component)["src"])
        if field in WIDGET_KINDS:
            widget = Widget(field, getattr(element, field), fragment_id)
            widget_id = widget.proto.id
            self._widgets[widget_id] = widget
            self._seen_this_run.add(widget_id)
            if widget_id not in self._states or getattr(widget.proto, "set_value", False):
                state = drawn_state(widget)
                if state is not None:
                    self._states[widget_id] = state

    def _end_of_run(self, status):
        # Widgets the run was responsible for and did not draw are gone, as in the browser.
        for widget_id, widget in list(self._widgets.items()):
            covered = not self._run_fragments or widget.fragment_id in self._run_fragments
            if covered and widget_id not in self._seen_this_run:
                del self._widgets[widget_id]
                self._states.pop(widget_id, None)
        self._cache.end_of_run(self._run_fragments)
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(status)

    # -- images ----------------------------------------------------------------------------------

    def _download(self, url):
        if url and url not in self._downloaded:
            self._downloaded.add(url)
            self._downloads.append(asyncio.ensure_future(self._download_from_own_replica(url)))

    async def _download_from_own_replica(self, url):
        _, headers = await self._http.get(urllib.parse.urljoin(self._server_url + "/", url), self._cookies)
        answered_by = headers.get(REPLICA_HEADER, [None])[0]
        if answered_by != self.replica:
            raise SessionError("protocol", f"GET {url} answered by {answered_by}, the session is on {self.replica}")


class HttpClient:
    """A student's HTTP/1.1 connections to the server, kept open between requests as a browser keeps them.

    A GET takes an idle connection or opens one (so a run's images load side by side, as a browser loads
    them over several); after a complete answer the connection waits for the next. Opening a connection
    per image, as this benchmark did before, cost the server, HAProxy and this process a TCP connection
    each that no browser makes.
    """

    def __init__(self):
        self._idle = []  # (reader, writer) pairs with no request under way

    async def get(self, url, cookies=""):
        """GET ``url`` sending ``cookies``; returns (body size, headers).

        ``headers``: lower-case name -> list of values. Raises SessionError unless the status is 200.
        """
        parts = urllib.parse.urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        cookie_line = f"Cookie: {cookies}\r\n" if cookies else ""
        request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{cookie_line}\r\n".encode()
        while self._idle:  # a kept connection the server has closed meanwhile is dropped, and the next tried
            connection = self._idle.pop()
            try:
                return await self._exchange(connection, request, path)
            except (OSError, asyncio.IncompleteReadError):
                connection[1].close()
        connection = None
        try:
            connection = await asyncio.open_connection(parts.hostname, parts.port)
            return await self._exchange(connection, request, path)
        except (OSError, asyncio.IncompleteReadError) as error:
            if connection is not None:
                connection[1].close()
            raise SessionError("disconnect", f"GET {path}: {error}") from error

    async def _exchange(self, connection, request, path):
        reader, writer = connection
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = defaultdict(list)
        for line in filter(None, lines):
            name, _, value = line.partition(":")
            headers[name.strip().lower()].append(value.strip())
        if "chunked" in headers.get("transfer-encoding", [""])[0].lower():
            size = 0
            while chunk := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                size += len(await reader.readexactly(chunk + 2)) - 2
            await reader.readuntil(b"\r\n")  # the empty trailer
        else:
            size = len(await reader.readexactly(int(headers.get("content-length", ["0"])[0])))
        if headers.get("connection", [""])[0].lower() == "close":
            writer.close()
        else:
            self._idle.append(connection)
        if status_line.split(" ", 2)[1:2] != ["200"]:
            raise SessionError("protocol", f"GET {path} answered {status_line[:40]!r}")
        return size, headers

    def close(self):
        """Close every kept connection."""
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


# ---------------------------------------------------------------------------------------------------
# The class


class Results:
    """Latencies per interaction, skipped interactions, errors, across all students."""

    def __init__(self):
        self.script = defaultdict(list)   # interaction name -> seconds to script finished
        self.images = defaultdict(list)   # interaction name -> seconds to images loaded
        self.skipped = Counter()          # (interaction name, reason) -> count
        self.errors = Counter()           # kind -> count
        self.examples = []                # a few error texts
        self.auto_reruns = 0
        self.done = 0
        self.replicas = Counter()         # replica -> sessions it held (None: no balancer in front)
        self.start = time.perf_counter()
        self.clicks_ended = []            # (seconds since the class began, seconds to script finished) per click

    def record(self, name, timings):
        script_seconds, image_seconds = timings
        self.script[name].append(script_seconds)
        self.images[name].append(image_seconds)
        self.done += 1
        if name != OPEN_PAGE:
            self.clicks_ended.append((time.perf_counter() - self.start, script_seconds))

    def error(self, kind, text):
        self.errors[kind] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{kind}: {text}")


async def student(number, arguments, server_url, results):
    """One student: arrive within the ramp, open the page, then interact with human pauses."""
    rng = random.Random(arguments.seed * 1000 + number)
    await asyncio.sleep(rng.uniform(0.0, arguments.ramp))
    session = StudentSession(server_url, arguments.page, arguments.timeout)
    interactions = [interaction for interaction in PAGE_INTERACTIONS[arguments.page]
                    if not arguments.only or interaction.name in arguments.only]
    try:
        results.record(OPEN_PAGE, await session.open())
        results.replicas[session.replica] += 1
        for _ in range(arguments.clicks):
            await asyncio.sleep(rng.uniform(*arguments.think))
            await _one_interaction(session, interactions, rng, results)
    except SessionError as error:
        results.error(error.kind, str(error))
    finally:
        await session.close()
        for text in session.exceptions:
            results.error("exception", text)
        results.auto_reruns += session.auto_reruns


async def _one_interaction(session, interactions, rng, results):
    # A student who cannot do what they meant (widget absent or disabled) does another thing instead.
    unavailable = set()
    while (interaction := pick_interaction(interactions, rng, unavailable)) is not None:
        try:
            results.record(interaction.name, await session.interact(interaction, rng))
            return
        except Unavailable as reason:
            results.skipped[(interaction.name, str(reason))] += 1
            unavailable.add(interaction.name)
    raise SessionError("protocol", "none of the page's interactions was available")


class ServerMonitor:
    """Samples the server's RSS every ``interval`` seconds; prints each sample when ``verbose``."""

    def __init__(self, pid, interval, verbose, results):
        self.pid, self.interval, self.verbose, self.results = pid, interval, verbose, results
        self.samples = []  # (seconds since start, RSS MiB)
        self.start = time.perf_counter()
        self.cpu_at_start = cpu_seconds(pid) if pid else None

    def sample(self, label=""):
        elapsed = time.perf_counter() - self.start
        rss = memory_mib(self.pid)["VmRSS"]
        self.samples.append((elapsed, rss))
        if self.verbose:
            print(f"  t = {elapsed:6.1f} s  RSS {rss:7.1f} MiB  interactions done {self.results.done:5d}"
                  + (f"  {label}" if label else ""), flush=True)
        return rss

    async def run(self):
        while True:
            self.sample()
            await asyncio.sleep(self.interval)


async def run_class(arguments, server):
    """All students at once, with the server sampled meanwhile; returns (Results, ServerMonitor or None)."""
    results = Results()
    monitor = ServerMonitor(server.pid, arguments.sample_every, arguments.memory, results) if server.pid else None
    sampler = asyncio.create_task(monitor.run()) if monitor else None
    students = [student(number, arguments, server.url, results) for number in range(arguments.sessions)]
    await asyncio.gather(*students)
    if sampler:
        sampler.cancel()
        monitor.sample("all students have left")
    return results, monitor


async def first_visit(server_url, page, timeout):
    """(seconds to load the page once, the replica that served it): after a start, the lecturer's wait."""
    visitor = StudentSession(server_url, page, timeout)
    try:
        seconds, _ = await visitor.open()
    finally:
        await visitor.close()
    return seconds, visitor.replica


async def first_visits(server_url, page, timeout):
    """First visits until each replica behind a balancer has had one (it sends a new visitor to an idle one).

    Returns [(replica or None, seconds)]: one visit when no balancer names replicas.
    """
    visits = []
    while len(visits) < MAX_REPLICAS:
        seconds, replica = await first_visit(server_url, page, timeout)
        if any(replica == seen for seen, _ in visits):
            break
        visits.append((replica, seconds))
        if replica is None:
            break
    return visits


async def after_the_class(arguments, server, monitor):
    """Memory mode: wait out the disconnected sessions' TTL, then let one visitor in so they are reaped."""
    ttl = float(flag_value(arguments.server_flag, "server.disconnectedSessionTTL", 120))
    print(f"Waiting server.disconnectedSessionTTL ({ttl:.0f} s) + 5 s for the closed sessions to expire ...")
    deadline = time.perf_counter() + ttl + 5
    while time.perf_counter() < deadline:
        await asyncio.sleep(min(arguments.sample_every, max(0.0, deadline - time.perf_counter())))
        monitor.sample()
    # Streamlit removes expired sessions from its store only when it is written to: one more visitor
    # opening and closing the page is what does it.
    await first_visit(server.url, arguments.page, arguments.timeout)
    await asyncio.sleep(METRICS_REFRESH_SECONDS)
    return monitor.sample("after the TTL and one more visitor (expired sessions reaped)")


def streamlit_accounts(server_url):
    """What the server's /_stcore/metrics says it holds: active sessions and bytes per kind of store."""
    with urllib.request.urlopen(f"{server_url}/_stcore/metrics", timeout=30) as response:
        text = response.read().decode()
    accounts = Counter()
    for line in text.splitlines():
        if line.startswith("active_sessions "):
            accounts["active sessions"] = int(float(line.split()[-1]))
        elif line.startswith("cache_memory_bytes{"):
            store = line.split('cache_type="', 1)[1].split('"', 1)[0]
            accounts[store] += int(float(line.split()[-1]))
    return accounts


def print_accounts(moment, accounts):
    stores = ", ".join(f"{store} {size / 2**20:.1f} MiB" for store, size in sorted(accounts.items())
                       if store != "active sessions")
    print(f"Streamlit's own accounts {moment}: {accounts['active sessions']} active sessions; {stores}")


# ---------------------------------------------------------------------------------------------------
# The report


def print_latencies(results):
    print(f"{'interaction':<22}{'count':>6}{'p50':>9}{'p95':>9}{'max':>9}{'p95/p50':>9}"
          f"{'images p50':>12}{'p95':>9}   ms from the BackMsg to script_finished, then to images loaded")
    names = [OPEN_PAGE] + sorted(name for name in results.script if name != OPEN_PAGE)
    every_click = [seconds for name in names if name != OPEN_PAGE for seconds in results.script[name]]
    every_click_images = [seconds for name in names if name != OPEN_PAGE for seconds in results.images[name]]
    rows = [(name, results.script[name], results.images[name]) for name in names if results.script[name]]
    rows.append(("all interactions", every_click, every_click_images))
    for name, script, images in rows:
        timing, loaded = Summary.of(script), Summary.of(images)
        print(f"{name:<22}{timing.count:>6}{timing.p50:>9.1f}{timing.p95:>9.1f}{timing.largest:>9.1f}"
              f"{timing.p95 / timing.p50:>9.2f}{loaded.p50:>12.1f}{loaded.p95:>9.1f}")
    for (name, reason), count in sorted(results.skipped.items()):
        print(f"  skipped {count} x '{name}': widget {reason} (another interaction was done instead)")
    print_timeline(results)


def print_timeline(results, window=TIMELINE_WINDOW_S):
    """The clicks' p95 in each ``window`` seconds of the class (by when they ended): whether the slow ones
    came while students were still arriving and opening the page, or all along."""
    if not results.clicks_ended:
        return
    ended, seconds = np.asarray(results.clicks_ended).T
    windows = (ended // window).astype(int)
    parts = [f"{Summary.of(seconds[windows == index]).p95 / 1000:.2f}" for index in range(windows.max() + 1)
             if np.any(windows == index)]
    print(f"p95 of the clicks ending in each {window:g} s of the class (s): {' '.join(parts)}")


def print_errors(results):
    total = sum(results.errors.values())
    kinds = ", ".join(f"{kind} {results.errors[kind]}" for kind in ("exception", "disconnect", "timeout", "protocol"))
    print(f"Errors: {total} ({kinds})")
    for text in results.examples:
        print(f"  e.g. {text[:200]}")
    if results.auto_reruns:
        print(f"  note: the server asked for {results.auto_reruns} run_every timers; this client does not run them")


def print_replicas(results):
    if set(results.replicas) == {None}:
        return  # one server, no balancer in front
    counts = ", ".join(f"{replica or 'unnamed'} {count}" for replica, count in sorted(results.replicas.items(),
                                                                                     key=lambda item: str(item[0])))
    print(f"Sessions per replica (HAProxy's {REPLICA_HEADER} header): {counts}")


def print_server(monitor, wall_seconds):
    if monitor is None:
        print("Server: no process id (--url without --pid), so no RSS or CPU figures.")
        return
    memory = memory_mib(monitor.pid)
    cpu = cpu_seconds(monitor.pid) - monitor.cpu_at_start
    print(f"Server: peak RSS (VmHWM) {memory['VmHWM']:.0f} MiB, RSS now {memory['VmRSS']:.0f} MiB; "
          f"CPU {cpu:.1f} s over {wall_seconds:.1f} s of wall time = {cpu / wall_seconds:.2f} cores busy")
    values = [rss for _, rss in monitor.samples]
    step = max(1, len(values) // 40)
    print(f"RSS over time (MiB, every {monitor.interval * step:g} s): "
          + " ".join(f"{rss:.0f}" for rss in values[::step]))
    third = max(1, len(values) // 3)
    print(f"  first third's median {sorted(values[:third])[third // 2]:.0f} MiB, last third's median "
          f"{sorted(values[-third:])[third // 2]:.0f} MiB, largest sample {max(values):.0f} MiB")


def client_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------------


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=None, help="students (default 30)")
    parser.add_argument("--clicks", type=int, default=None,
                        help="interactions per student (default 20; 50 with --memory)")
    parser.add_argument("--page", choices=sorted(PAGE_INTERACTIONS), default="convolution")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="do only this interaction of the page, e.g. --only kernel (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN", "MAX"),
                        help="seconds a student pauses before each interaction, uniform (default 1 3)")
    parser.add_argument("--ramp", type=float, default=5.0, help="students arrive within this many seconds (default 5)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a run counts as timed out")
    parser.add_argument("--url", help="use the server at this URL instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for RSS and CPU")
    parser.add_argument("--server-flag", action="append", default=[], metavar="SECTION.OPTION=VALUE",
                        help="passed to the server started here, e.g. runner.postScriptGC=false (repeatable)")
    parser.add_argument("--memory", action="store_true",
                        help="30 x 50 interactions, RSS printed as they go, then RSS after the sessions' TTL; twice")
    parser.add_argument("--rounds", type=int, default=None,
                        help="classes in a row on the same server (default 1; 2 with --memory)")
    parser.add_argument("--sample-every", type=float, default=None,
                        help="seconds between RSS samples (default 2; 5 with --memory)")
    arguments = parser.parse_args(argv)
    arguments.sessions = arguments.sessions or 30
    arguments.clicks = arguments.clicks if arguments.clicks is not None else (50 if arguments.memory else 20)
    arguments.sample_every = arguments.sample_every or (5.0 if arguments.memory else 2.0)
    arguments.rounds = arguments.rounds or (2 if arguments.memory else 1)
    names = {interaction.name for interaction in PAGE_INTERACTIONS[arguments.page]}
    if set(arguments.only) - names:
        parser.error(f"--only: the {arguments.page} page's interactions are {', '.join(sorted(names))}")
    if arguments.think[0] > arguments.think[1]:
        parser.error("--think MIN MAX needs MIN <= MAX")
    return arguments


def one_class(arguments, server):
    """Run the class and print its report; in memory mode also wait out the TTL. Returns (Results, RSS figures)."""
    start = time.perf_counter()
    results, monitor = asyncio.run(run_class(arguments, server))
    wall = time.perf_counter() - start
    print()
    print_latencies(results)
    print_errors(results)
    print_replicas(results)
    print_server(monitor, wall)
    print(f"Benchmark client (this process): {client_cpu_seconds():.1f} CPU s so far, on the same machine "
          "as the server")
    if not (arguments.memory and monitor):
        return results, None
    largest, at_end = max(rss for _, rss in monitor.samples), monitor.samples[-1][1]
    print_accounts("as the students leave", streamlit_accounts(server.url))
    after_ttl = asyncio.run(after_the_class(arguments, server, monitor))
    print_accounts("after the TTL", streamlit_accounts(server.url))
    return results, (largest, at_end, after_ttl)


def measure_class(arguments, server):
    """Warm the server up, then run the class (``--rounds`` times); returns the total error count."""
    for replica, seconds in asyncio.run(first_visits(server.url, arguments.page, arguments.timeout)):
        print(f"First visit{f' to {replica}' if replica else ''} (on a fresh server: imports, engine warm-up): "
              f"{seconds:.1f} s")
    if server.pid:
        print(f"Server RSS before the class (after that visit): {memory_mib(server.pid)['VmRSS']:.0f} MiB")
    errors, memory = 0, []
    for number in range(1, arguments.rounds + 1):
        if arguments.rounds > 1:
            print(f"\n=== Class {number} of {arguments.rounds}")
        results, figures = one_class(arguments, server)
        errors += sum(results.errors.values())
        if figures:
            memory.append(figures)
    if memory:
        print(f"\nMemory (RSS, MiB) with {arguments.sessions} students, peak (VmHWM) "
              f"{memory_mib(server.pid)['VmHWM']:.0f}. CPython and glibc keep freed memory for reuse, so RSS "
              "need not fall after a class; a later class staying on the same plateau shows it is reused:")
        for number, (largest, at_end, after_ttl) in enumerate(memory, start=1):
            print(f"  class {number}: largest sample {largest:.0f}, as the students left {at_end:.0f}, "
                  f"after the TTL {after_ttl:.0f}")
    return errors


def main(argv=None):
    arguments = parse_arguments(argv)
    print(machine_line())
    with app_server(arguments.url, arguments.server_flag, arguments.pid) as server:
        print(f"Server: {server.command} (pid {server.pid})")
        print(f"Class: {arguments.sessions} students on page '{arguments.page}', {arguments.clicks} interactions "
              f"each, think time {arguments.think[0]:g}-{arguments.think[1]:g} s, arriving within "
              f"{arguments.ramp:g} s, seed {arguments.seed}")
        errors = measure_class(arguments, server)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
