"""
What a user's type checker and repr see (review, third round): ``updates()`` yields
`ItemUpdate`, an ``on_*`` method used as a decorator keeps the function's type,
`TlcpServer.url` is a ``str``, and no credentials reach a repr or an error.
"""

from __future__ import annotations

import typing

import pytest
from twisted.internet import reactor
from twisted.internet.task import Clock

from txlightstreamer import ItemUpdate, LsClient, Table, UpdateQueue
from txlightstreamer.testing import TlcpServer
from txlightstreamer.transport import TransportOptions


def test_the_updates_iterator_yields_item_updates() -> None:
    queue = typing.get_type_hints(Table.updates)["return"]
    assert queue is UpdateQueue
    awaited = typing.get_type_hints(UpdateQueue.__anext__)["return"]
    assert typing.get_args(awaited) == (ItemUpdate,)


def test_an_on_method_returns_the_callback_typed_as_given() -> None:
    hints = typing.get_type_hints(LsClient.on_error)
    # Callable[[LightstreamerError], _R] in and out: the same type variable.
    assert typing.get_args(hints["callback"])[1] is typing.get_args(hints["return"])[1]
    assert isinstance(typing.get_args(hints["return"])[1], typing.TypeVar)
    hints = typing.get_type_hints(Table.on_update)
    assert typing.get_args(hints["callback"])[1] is typing.get_args(hints["return"])[1]


def test_the_test_server_url_is_a_str_while_it_listens() -> None:
    assert typing.get_type_hints(TlcpServer.url.fget)["return"] is str
    server = TlcpServer(clock=Clock())
    assert not server.listening
    with pytest.raises(RuntimeError, match="not listening"):
        server.url  # noqa: B018


@pytest.mark.parametrize("url", [
    "https://me:s3cret@push.example.com", "http://me:s3cret@127.0.0.1:1/x",
    "me:s3cret@push.example.com",
])
def test_credentials_in_the_url_are_refused_without_showing_them(url: str) -> None:
    with pytest.raises(ValueError, match="credentials") as refused:
        LsClient(url, reactor=reactor)
    assert "s3cret" not in str(refused.value)


def test_credentials_in_the_proxy_url_are_refused_without_showing_them() -> None:
    with pytest.raises(ValueError, match="credentials") as refused:
        LsClient("http://127.0.0.1:1", reactor=reactor,
                 transport_options=TransportOptions(http_proxy="http://bob:hunter2@p:3128"))
    assert "hunter2" not in str(refused.value)


def test_transport_options_keep_their_headers_out_of_the_repr() -> None:
    options = TransportOptions(headers={"Authorization": "Bearer 0123456789abcdef"},
                               create_headers={"X-Token": "fedcba9876543210"})
    assert "0123456789abcdef" not in repr(options)
    assert "fedcba9876543210" not in repr(options)


def test_an_at_sign_in_the_path_or_query_is_no_credential() -> None:
    client = LsClient("http://127.0.0.1:1/push@2?x=a@b", reactor=reactor)
    assert client.url.endswith("x=a@b")
