"""
The subscription registry: the tables of one client, their subscription ids, and the
routing of each subscription's notifications to its table. It is the `TableOwner` every
`Table` of the client is given, and drives each table through its `TableLink`.

No table stays ``subscribing`` forever: a subscription the server accepted (``REQOK``)
whose ``SUBOK`` does not follow within `SUBOK_TIMEOUT` of bound session (injected clock)
is dropped and made again with a new id, and fails with a `RequestTimeoutError` after
`MAX_SUBSCRIBES` attempts. (A request without an answer is the control channel's case.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer._control import ControlChannel
from txlightstreamer._subscription import (
    ACTIVE,
    DELETING,
    FAILED,
    PENDING,
    SUBSCRIBING,
    Table,
    TableLink,
)
from txlightstreamer.errors import (
    ClientStateError,
    LightstreamerError,
    RequestTimeoutError,
    ServerError,
    SessionLostError,
    SubscriptionError,
    without_frames,
)
from txlightstreamer.protocol import (
    ClearSnapshot,
    Conf,
    EndOfSnapshot,
    Notification,
    Overflow,
    Request,
    SubCmd,
    SubOk,
    Unsub,
    add_subscription,
    delete_subscription,
    reconf_subscription,
)
from txlightstreamer.protocol._hotpath import UpdateRouter
from txlightstreamer.states import TableState

__all__ = ["MAX_SUBSCRIBES", "SUBOK_TIMEOUT", "SubscriptionRegistry"]

log = Logger()

#: Seconds of bound session a subscription accepted by ``REQOK`` waits for its ``SUBOK``.
SUBOK_TIMEOUT: Final = 30.0
#: Times a table is subscribed for a ``SUBOK`` that never comes before it fails.
MAX_SUBSCRIBES: Final = 3


class SubscriptionRegistry:
    """
    Subscribes tables through ``control`` and routes their notifications. Plain updates
    of an active table go straight to its hot-path lane (``router.lanes[sub_id]``).

    ``can_subscribe()`` says whether a session exists to subscribe in; ``closed()``
    whether the client refuses new tables; ``bound()`` whether the session is bound and
    read now (a missing SUBOK counts only then); ``report`` gets the errors the
    application should know of.
    """

    def __init__(
        self,
        control: ControlChannel,
        router: UpdateRouter,
        clock: IReactorTime,
        *,
        can_subscribe: Callable[[], bool],
        closed: Callable[[], bool],
        bound: Callable[[], bool],
        report: Callable[[LightstreamerError], None],
    ) -> None:
        self._control = control
        self._router = router
        self._clock = clock
        self._can_subscribe = can_subscribe
        self._closed = closed
        self._bound = bound
        self._report = report
        #: Seconds to wait for a SUBOK after the REQOK (while bound).
        self.subok_timeout = SUBOK_TIMEOUT
        self._subok_timers: dict[int, IDelayedCall] = {}
        self._missing_subok: dict[TableLink, int] = {}  # SUBOKs missed in a row
        self._links: list[TableLink] = []  # top-level tables, not deleted
        self._by_sub_id: dict[int, TableLink] = {}
        self._next_sub_id = 0
        # The frequency each table's subscription has on the server (its add's, or the
        # last reconf answered REQOK): what a refused reconf leaves in force.
        self._frequency_in_force: dict[TableLink, float | str | None] = {}
        # The control requests of the adds not answered yet, by subscription id.
        self._adds: dict[int, Deferred[None]] = {}
        # Frequencies asked while a table's add was on its way: sent once its SUBOK came.
        self._reconf_after_subok: dict[int, tuple[float | str, list[Deferred[None]]]] = {}

    @property
    def tables(self) -> tuple[Table, ...]:
        return tuple(link.table for link in self._links)

    # -- TableOwner: what tables ask --------------------------------------------------------

    def attach(self, link: TableLink) -> None:
        if self._closed():
            raise ClientStateError("cannot add a Table to a destroyed client")
        if link.top_level:
            # Second-level tables belong to their parent, which re-creates them.
            self._links.append(link)
        if not link.table.silent:
            self.ready(link)

    def ready(self, link: TableLink) -> None:
        if self._can_subscribe():
            self.subscribe(link)

    def delete(self, link: TableLink, previous: TableState) -> None:
        sub_id = link.table.sub_id
        if previous in (PENDING, FAILED) or sub_id is None:
            self.finish(link)
            return
        if not self._bound():
            # No session to answer now, and maybe never: with its id forgotten nothing more
            # reaches the table, and the server is told if this session comes back.
            self.abandon(sub_id)
            self.finish(link)
            return
        if previous == SUBSCRIBING and self._control.withdraw(self._adds.get(sub_id)):
            self.finish(link)  # its add was never written: nothing to delete (one batch
            return  # with both would run them concurrently, tlcp.md §2.2)

        def build(req_id: int) -> Request:
            return delete_subscription(req_id, sub_id)

        def failed(failure: Failure) -> None:
            # REQERR 19 (not found) or a lost session: either way nothing more will come.
            if self._by_sub_id.get(sub_id) is link:
                self._unbind(sub_id)
            self.finish(link)

        self._control.send(build).addErrback(failed)

    def reconf(self, link: TableLink, max_frequency: float | str) -> Deferred[None]:
        sub_id = link.table.sub_id
        if link.table.state == SUBSCRIBING and sub_id in self._by_sub_id:
            # The add went with the old value: the reconf follows the SUBOK.
            waiting = self._reconf_after_subok.get(sub_id, (max_frequency, []))[1]
            self._reconf_after_subok[sub_id] = (max_frequency, waiting)
            d: Deferred[None] = Deferred()
            waiting.append(d)
            return d
        if link.table.state != ACTIVE or sub_id is None:
            return succeed(None)  # applies when the table is next subscribed
        return self._send_reconf(link, sub_id, max_frequency)

    def _send_reconf(self, link: TableLink, sub_id: int,
                     max_frequency: float | str) -> Deferred[None]:
        def accepted(result: None) -> None:
            if self._by_sub_id.get(sub_id) is link:  # still that subscription
                self._frequency_in_force[link] = max_frequency

        def failed(failure: Failure) -> Failure:
            error = failure.value
            if isinstance(error, ServerError) and error.code != 20:  # refused, not lost
                link.frequency_refused(max_frequency, self._frequency_in_force.get(link))
            return failure

        return self._control.send(
            lambda req_id: reconf_subscription(req_id, sub_id, max_frequency=max_frequency)
        ).addCallbacks(accepted, failed)

    def abandon(self, sub_id: int) -> None:
        self._unbind(sub_id)

        def build(req_id: int) -> Request:
            return delete_subscription(req_id, sub_id)

        self._control.send(build).addErrback(lambda _: None)

    def forget(self, link: TableLink) -> None:
        sub_id = link.table.sub_id
        if sub_id is not None and self._by_sub_id.get(sub_id) is link:
            self._unbind(sub_id)

    # -- driven by the client ---------------------------------------------------------------

    def subscribe(self, link: TableLink) -> None:
        """Send the table's subscription with a new id (if it waits for one)."""
        table = link.table
        if table.state != PENDING or table.silent:
            return
        self._next_sub_id += 1
        sub_id = self._next_sub_id
        params = link.begin(sub_id)
        self._by_sub_id[sub_id] = link
        self._frequency_in_force[link] = params["max_frequency"]

        def build(req_id: int) -> Request:
            return add_subscription(req_id, sub_id, **params)

        def refused(failure: Failure) -> None:
            if self._by_sub_id.get(sub_id) is not link:
                return  # superseded (new session)
            error = failure.value
            if isinstance(error, ServerError) and error.code == 20:
                return  # the session is lost, not the table: it goes again in the next one
            self._unbind(sub_id)
            if isinstance(error, ServerError) and not isinstance(error, SubscriptionError):
                error = SubscriptionError(error.code, error.message, error.tag)
            if isinstance(error, SessionLostError):
                return
            if not isinstance(error, LightstreamerError):  # unwritable: the table never is
                error = LightstreamerError(f"the subscription cannot be sent: {error}")
            if isinstance(error, LightstreamerError):
                link.failed(error)
                if not isinstance(error, RequestTimeoutError):
                    self._report(error)  # (the control channel reported the timeout)
            self._missing_subok.pop(link, None)
            if link in self._links:
                self._links.remove(link)

        added = self._adds[sub_id] = self._control.send(build)
        added.addBoth(self._answered_add, sub_id)
        added.addCallbacks(lambda _: self._await_subok(link, sub_id), refused)

    def _answered_add(self, result: Any, sub_id: int) -> Any:
        self._adds.pop(sub_id, None)
        return result

    def _await_subok(self, link: TableLink, sub_id: int) -> None:
        """The server accepted the subscription: its SUBOK must follow, in bounded time."""
        if self._by_sub_id.get(sub_id) is link and link.table.state == SUBSCRIBING \
                and sub_id not in self._subok_timers:
            self._subok_timers[sub_id] = self._clock.callLater(
                self.subok_timeout, self._no_subok, link, sub_id)

    def _no_subok(self, link: TableLink, sub_id: int) -> None:
        self._subok_timers.pop(sub_id, None)
        if self._by_sub_id.get(sub_id) is not link or link.table.state != SUBSCRIBING:
            return
        if not self._bound():
            self._await_subok(link, sub_id)  # rebinding, or we paused reading: wait more
            return
        missed = self._missing_subok.get(link, 0) + 1
        self.abandon(sub_id)  # in case the server has it (its SUBOK was lost)
        if missed >= MAX_SUBSCRIBES:
            self._missing_subok.pop(link, None)
            error = RequestTimeoutError(
                f"no SUBOK for {link.table!r} within {self.subok_timeout:g} s of its REQOK, "
                f"{missed} times")
            link.failed(error)
            self._report(error)
            if link in self._links:
                self._links.remove(link)
            return
        self._missing_subok[link] = missed
        log.warn("No SUBOK for {table!r}: subscribing it again", table=link.table)
        link.reset()
        self.subscribe(link)

    def finish(self, link: TableLink, session_gone: bool = False) -> None:
        """The table is deleted for good (once: a second call does nothing)."""
        if link.table.state == TableState.DELETED:
            return
        sub_id = link.table.sub_id
        if sub_id is not None:
            self._unbind(sub_id)
        self._missing_subok.pop(link, None)
        if link in self._links:
            self._links.remove(link)
        self._frequency_in_force.pop(link, None)
        link.finished(session_gone)

    def session_started(self) -> None:
        """A new session: every subscription id of the old one is void."""
        self._unbind_all()
        for link in list(self._links):  # finish() takes a deleted table out of the list
            state = link.table.state
            if state in (ACTIVE, SUBSCRIBING):
                link.unsubscribed(session_gone=True)
            if link.table.state == DELETING:
                self.finish(link, session_gone=True)

    def subscribe_all(self) -> None:
        for link in list(self._links):
            self.subscribe(link)

    def session_lost(self) -> None:
        """The subscriptions ended with their session (they wait for the next one)."""
        for link in list(self._links):
            if link.table.state in (ACTIVE, SUBSCRIBING):
                link.unsubscribed(session_gone=True)

    def session_closed(self) -> None:
        self.session_lost()
        self._unbind_all()

    def close(self) -> None:
        """The client is destroyed: every table is deleted."""
        for link in list(self._links):
            self.finish(link, session_gone=True)
        self._cancel_timers()

    # -- routing ------------------------------------------------------------------------------

    def update(self, sub_id: int, item: int, values: str) -> None:
        """Route one ``U`` notification (one the hot path left) to its table."""
        link = self._by_sub_id.get(sub_id)
        if link is None:
            log.debug("Update for unknown subscription {sub}", sub=sub_id)
            return
        try:
            link.update(item, values)
        except LightstreamerError as e:
            self._broken(link, without_frames(e))

    def route(self, sub_id: int, n: Notification) -> None:
        """Route a subscription's notification (SUBOK, EOS, CS, OV, CONF, UNSUB...)."""
        link = self._by_sub_id.get(sub_id)
        if link is None:
            log.debug("{n!r} for unknown subscription", n=n)
            if isinstance(n, SubOk | SubCmd):
                # A subscription we no longer want (a "zombie"): drop it on the server.
                self.abandon(sub_id)
            return
        if isinstance(n, SubOk | SubCmd):
            self._subok_came(sub_id, link)
            reconf = self._reconf_after_subok.pop(sub_id, None)
            if isinstance(n, SubCmd):
                lane = link.subscribed(n.num_items, n.num_fields, n.key_pos, n.command_pos)
            else:
                lane = link.subscribed(n.num_items, n.num_fields)
            if lane is not None:
                self._router.lanes[sub_id] = lane
            if reconf is not None:
                self._reconf_came_due(link, sub_id, *reconf)
        elif isinstance(n, EndOfSnapshot):
            link.end_of_snapshot(n.item)
        elif isinstance(n, ClearSnapshot):
            link.clear_snapshot(n.item)
        elif isinstance(n, Overflow):
            link.overflow(n.item, n.lost)
        elif isinstance(n, Conf):
            link.config(n.max_frequency, n.filtered)
        elif isinstance(n, Unsub):
            self._unbind(sub_id)
            if link.table.state == DELETING and link in self._links:
                self._links.remove(link)
            link.unsubscribed()

    def _reconf_came_due(self, link: TableLink, sub_id: int, max_frequency: float | str,
                         waiting: list[Deferred[None]]) -> None:
        """The SUBOK of a table whose frequency changed meanwhile: send that change now."""
        if link.table.state == ACTIVE:
            sent = self._send_reconf(link, sub_id, max_frequency)
        else:
            sent = succeed(None)  # refused, or deleted: nothing to change

        def fire(result: object) -> None:
            for d in waiting:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(None)

        sent.addBoth(fire)

    def _broken(self, link: TableLink, error: LightstreamerError) -> None:
        """Undecodable data for one table: report it and subscribe the table afresh."""
        log.error("Bad update for {table!r}: {error}", table=link.table, error=error)
        self._report(error)
        link.broken(error)
        if link.table.state == DELETING:
            self.finish(link)  # being deleted: its delete is on its way, nothing to redo
            return
        if link.table.sub_id is not None:
            self.abandon(link.table.sub_id)
        link.reset()
        self.subscribe(link)

    def _subok_came(self, sub_id: int, link: TableLink) -> None:
        timer = self._subok_timers.pop(sub_id, None)
        if timer is not None and timer.active():
            timer.cancel()
        self._missing_subok.pop(link, None)

    def _unbind(self, sub_id: int) -> None:
        """Forget a subscription id: no more notifications go to its table."""
        link = self._by_sub_id.pop(sub_id, None)
        if link is not None:  # the frequency in force was that subscription's
            self._frequency_in_force.pop(link, None)
        self._adds.pop(sub_id, None)
        # A frequency waiting for this id's SUBOK goes with the table's next add.
        for d in self._reconf_after_subok.pop(sub_id, (None, []))[1]:
            d.callback(None)
        self._router.lanes.pop(sub_id, None)
        timer = self._subok_timers.pop(sub_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _unbind_all(self) -> None:
        for sub_id in list(self._reconf_after_subok):
            self._unbind(sub_id)
        self._by_sub_id.clear()
        self._frequency_in_force.clear()
        self._adds.clear()
        self._router.lanes.clear()
        self._cancel_timers()

    def _cancel_timers(self) -> None:
        timers, self._subok_timers = self._subok_timers, {}
        for timer in timers.values():
            if timer.active():
                timer.cancel()

