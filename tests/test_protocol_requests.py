"""Tests for txlightstreamer.protocol.requests and errors."""

from __future__ import annotations

import pickle

import pytest

from txlightstreamer.protocol import (
    CLIENT_ID,
    CONTROL_CODES,
    RETRYABLE_CONERR,
    RETRYABLE_END,
    SESSION_CODES,
    SUPPORTED_VERSIONS,
    LightstreamerError,
    ProtocolError,
    Request,
    ServerError,
    ValueDecodeError,
    add_subscription,
    bind_session,
    constrain,
    create_session,
    delete_subscription,
    destroy,
    encode_value,
    force_rebind,
    heartbeat,
    http_body,
    message,
    protocol_param,
    reconf_subscription,
    ws_message,
    ws_subprotocol,
)

CID = "LS_cid=mgQkwtwdysogQz2BJ4Ji%20kOj2Bg"


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("f1 f2", "f1%20f2"),
        ("f1+f2", "f1%2Bf2"),
        (CLIENT_ID, "mgQkwtwdysogQz2BJ4Ji%20kOj2Bg"),
        ("a&b=c%d", "a%26b%3Dc%25d"),
        ("line\r\nnext", "line%0D%0Anext"),
        ("AZaz09-_.~", "AZaz09-_.~"),
        ("à", "%C3%A0"),
        ("😀", "%F0%9F%98%80"),
        ("/?#[]@!$'()*,;:", "%2F%3F%23%5B%5D%40%21%24%27%28%29%2A%2C%3B%3A"),
        ("", ""),
    ],
)
def test_encode_value(raw: str, encoded: str) -> None:
    assert encode_value(raw) == encoded


def test_schema_examples_from_spec() -> None:
    assert (
        add_subscription(1, 1, mode="MERGE", group="g", schema="f1 f2")
        .encode()
        .endswith("LS_schema=f1%20f2")
    )
    assert (
        "LS_schema=f1%2Bf2"
        in add_subscription(1, 1, mode="MERGE", group="g", schema="f1+f2").encode()
    )


def test_protocol_param() -> None:
    assert protocol_param("2.5.0") == "TLCP-2.5.0"
    assert protocol_param("2.4.0") == "TLCP-2.4.0"
    assert ws_subprotocol("2.5.0") == "TLCP-2.5.0.lightstreamer.com"
    assert SUPPORTED_VERSIONS == ("2.5.0", "2.4.0")
    for bad in ("2.3.0", "TLCP-2.5.0", "", "3.0.0"):
        with pytest.raises(ValueError):
            protocol_param(bad)


# --------------------------------------------------------------------------- Request


def test_request_basics() -> None:
    req = Request("control", (("LS_reqId", "1"), ("LS_op", "add")))
    assert req.path == "/lightstreamer/control.txt"
    assert req.encode() == "LS_reqId=1&LS_op=add"
    assert req.get("LS_op") == "add"
    assert req.get("LS_nope") is None
    assert req == Request("control", (("LS_reqId", "1"), ("LS_op", "add")))
    with pytest.raises(ValueError):
        Request("bogus", ())


def test_request_repr_redacts_password() -> None:
    req = create_session(user="bob", password="s3cr3t&x")
    text = repr(req)
    assert "s3cr3t" not in text
    assert "'LS_password', '***'" in text
    assert "bob" in text
    # The wire form still carries the real password.
    assert req.encode().endswith("LS_password=s3cr3t%26x")


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("create_session", "/lightstreamer/create_session.txt"),
        ("bind_session", "/lightstreamer/bind_session.txt"),
        ("control", "/lightstreamer/control.txt"),
        ("msg", "/lightstreamer/msg.txt"),
        ("heartbeat", "/lightstreamer/heartbeat.txt"),
    ],
)
def test_paths(name: str, path: str) -> None:
    assert Request(name, ()).path == path


# --------------------------------------------------------------------------- framing


def test_http_body_single_and_batch() -> None:
    a = delete_subscription(1, 1)
    b = delete_subscription(2, 2)
    assert http_body([a]) == b"LS_reqId=1&LS_op=delete&LS_subId=1"
    assert http_body([a, b]) == (
        b"LS_reqId=1&LS_op=delete&LS_subId=1\r\nLS_reqId=2&LS_op=delete&LS_subId=2"
    )


def test_http_body_is_utf8() -> None:
    assert http_body([message(1, "é")]) == b"LS_reqId=1&LS_message=%C3%A9"


def test_http_body_heartbeat() -> None:
    assert http_body([heartbeat()]) == b"\r\n"
    assert http_body([heartbeat(session_id="S1")]) == b"LS_session=S1"


def test_ws_message_shapes() -> None:
    req = add_subscription(1, 1, mode="MERGE", group="item1", schema="last_price")
    assert ws_message([req]) == (
        "control\r\nLS_reqId=1&LS_op=add&LS_subId=1&LS_mode=MERGE&LS_group=item1"
        "&LS_schema=last_price"
    )
    two = ws_message([delete_subscription(1, 1), delete_subscription(2, 2)])
    assert (
        two == "control\r\nLS_reqId=1&LS_op=delete&LS_subId=1\r\nLS_reqId=2&LS_op=delete&LS_subId=2"
    )
    assert ws_message([heartbeat()]) == "heartbeat\r\n\r\n"
    assert ws_message([bind_session(None)]) == "bind_session\r\n\r\n"


def test_batches_must_share_name() -> None:
    with pytest.raises(ValueError):
        ws_message([delete_subscription(1, 1), message(2, "x")])
    with pytest.raises(ValueError):
        http_body([delete_subscription(1, 1), message(2, "x")])
    with pytest.raises(ValueError):
        ws_message([])
    with pytest.raises(ValueError):
        http_body([])


# --------------------------------------------------------------------------- builders


def test_create_session_minimal() -> None:
    req = create_session()
    assert req.name == "create_session"
    assert req.params == (("LS_cid", CLIENT_ID),)
    assert req.encode() == CID


def test_create_session_full() -> None:
    req = create_session(
        adapter_set="DEMO",
        user="user 1",
        password="pw",
        requested_max_bandwidth=2.5,
        content_length=50_000_000,
        supported_diffs="P,T",
        polling=True,
        polling_millis=0,
        idle_millis=19000,
        inactivity_millis=3000,
        keepalive_millis=5000,
        send_sync=False,
        reduce_head=True,
        ttl_millis="unlimited",
    )
    assert req.params[0] == ("LS_cid", CLIENT_ID)
    assert req.params[-1] == ("LS_password", "pw")
    assert dict(req.params) == {
        "LS_cid": CLIENT_ID,
        "LS_adapter_set": "DEMO",
        "LS_user": "user 1",
        "LS_requested_max_bandwidth": "2.5",
        "LS_content_length": "50000000",
        "LS_supported_diffs": "P,T",
        "LS_polling": "true",
        "LS_polling_millis": "0",
        "LS_idle_millis": "19000",
        "LS_inactivity_millis": "3000",
        "LS_keepalive_millis": "5000",
        "LS_send_sync": "false",
        "LS_reduce_head": "true",
        "LS_ttl_millis": "unlimited",
        "LS_password": "pw",
    }
    assert "LS_user=user%201" in req.encode()
    assert "LS_supported_diffs=P%2CT" in req.encode()


def test_create_session_flags_omitted_by_default() -> None:
    req = create_session(polling=False, reduce_head=False, send_sync=None)
    keys = [k for k, _ in req.params]
    assert keys == ["LS_cid"]
    assert create_session(send_sync=True).get("LS_send_sync") == "true"
    assert create_session(supported_diffs="").encode() == CID + "&LS_supported_diffs="
    assert create_session(ttl_millis=1000).get("LS_ttl_millis") == "1000"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.5, "2.5"),
        (10.0, "10"),
        (10, "10"),
        (0.1, "0.1"),
        (1e-7, "0.0000001"),
        (1e20, "100000000000000000000"),
        (123456.75, "123456.75"),
        ("unlimited", "unlimited"),
    ],
)
def test_number_rendering(value: float | str, text: str) -> None:
    assert create_session(requested_max_bandwidth=value).get("LS_requested_max_bandwidth") == text
    assert constrain(1, max_bandwidth=value).get("LS_requested_max_bandwidth") == text


def test_non_finite_numbers_rejected() -> None:
    with pytest.raises(ValueError):
        constrain(1, max_bandwidth=float("inf"))
    with pytest.raises(ValueError):
        reconf_subscription(1, 1, max_frequency=float("nan"))


def test_bind_session() -> None:
    req = bind_session("S1", recovery_from=11, polling=True, polling_millis=0, idle_millis=0)
    assert req.name == "bind_session"
    assert req.encode() == (
        "LS_session=S1&LS_recovery_from=11&LS_polling=true&LS_polling_millis=0&LS_idle_millis=0"
    )
    req = bind_session(
        "S1",
        content_length=50000000,
        keepalive_millis=5000,
        inactivity_millis=1000,
        send_sync=False,
        reduce_head=True,
    )
    assert dict(req.params) == {
        "LS_session": "S1",
        "LS_content_length": "50000000",
        "LS_inactivity_millis": "1000",
        "LS_keepalive_millis": "5000",
        "LS_send_sync": "false",
        "LS_reduce_head": "true",
    }
    assert bind_session(None).params == ()
    assert bind_session(None, polling=True, polling_millis=200).encode() == (
        "LS_polling=true&LS_polling_millis=200"
    )


def test_add_subscription_minimal() -> None:
    req = add_subscription(7, 3, mode="RAW", group="item1 item2", schema="a b")
    assert req.name == "control"
    assert req.path == "/lightstreamer/control.txt"
    assert req.encode() == (
        "LS_reqId=7&LS_op=add&LS_subId=3&LS_mode=RAW&LS_group=item1%20item2&LS_schema=a%20b"
    )


def test_add_subscription_full() -> None:
    req = add_subscription(
        1,
        2,
        mode="DISTINCT",
        group="g",
        schema="s",
        data_adapter="QUOTE",
        selector="sel",
        buffer_size="unlimited",
        max_frequency=0.5,
        snapshot=10,
        ack=False,
        session_id="S1",
    )
    assert dict(req.params) == {
        "LS_reqId": "1",
        "LS_op": "add",
        "LS_subId": "2",
        "LS_mode": "DISTINCT",
        "LS_group": "g",
        "LS_schema": "s",
        "LS_data_adapter": "QUOTE",
        "LS_selector": "sel",
        "LS_requested_buffer_size": "unlimited",
        "LS_requested_max_frequency": "0.5",
        "LS_snapshot": "10",
        "LS_ack": "false",
        "LS_session": "S1",
    }


@pytest.mark.parametrize(("snapshot", "text"), [(True, "true"), (False, "false"), (5, "5")])
def test_add_subscription_snapshot(snapshot: bool | int, text: str) -> None:
    req = add_subscription(1, 1, mode="MERGE", group="g", schema="s", snapshot=snapshot)
    assert req.get("LS_snapshot") == text


def test_add_subscription_other_values() -> None:
    req = add_subscription(
        1, 1, mode="COMMAND", group="g", schema="s", buffer_size=3, max_frequency="unfiltered"
    )
    assert req.get("LS_requested_buffer_size") == "3"
    assert req.get("LS_requested_max_frequency") == "unfiltered"
    assert req.get("LS_snapshot") is None
    assert req.get("LS_ack") is None
    assert req.get("LS_session") is None


def test_add_subscription_validation() -> None:
    with pytest.raises(ValueError):
        add_subscription(1, 1, mode="merge", group="g", schema="s")
    with pytest.raises(ValueError):
        add_subscription(1, 0, mode="MERGE", group="g", schema="s")


def test_delete_subscription() -> None:
    assert delete_subscription(4, 2).encode() == "LS_reqId=4&LS_op=delete&LS_subId=2"
    assert delete_subscription(4, 2, ack=False, session_id="S1").encode() == (
        "LS_reqId=4&LS_op=delete&LS_subId=2&LS_ack=false&LS_session=S1"
    )


def test_reconf_subscription() -> None:
    assert reconf_subscription(5, 2, max_frequency=10.0).encode() == (
        "LS_reqId=5&LS_op=reconf&LS_subId=2&LS_requested_max_frequency=10"
    )
    assert reconf_subscription(5, 2, max_frequency="unlimited", session_id="S").encode() == (
        "LS_reqId=5&LS_op=reconf&LS_subId=2&LS_requested_max_frequency=unlimited&LS_session=S"
    )
    assert reconf_subscription(5, 2, max_frequency=None).encode() == (
        "LS_reqId=5&LS_op=reconf&LS_subId=2"
    )


def test_constrain() -> None:
    assert constrain(6, max_bandwidth="unlimited").encode() == (
        "LS_reqId=6&LS_op=constrain&LS_requested_max_bandwidth=unlimited"
    )
    assert constrain(6, max_bandwidth=40, session_id="S1").encode() == (
        "LS_reqId=6&LS_op=constrain&LS_requested_max_bandwidth=40&LS_session=S1"
    )


def test_force_rebind() -> None:
    assert force_rebind(8).encode() == "LS_reqId=8&LS_op=force_rebind"
    assert force_rebind(8, polling_millis=100, close_socket=True, session_id="S").encode() == (
        "LS_reqId=8&LS_op=force_rebind&LS_polling_millis=100&LS_close_socket=true&LS_session=S"
    )


def test_destroy() -> None:
    assert destroy(9).encode() == "LS_reqId=9&LS_op=destroy"
    assert destroy(9, close_socket=True).encode() == (
        "LS_reqId=9&LS_op=destroy&LS_close_socket=true"
    )
    assert destroy(9, cause_code=-3, cause_message="bye now", session_id="S").encode() == (
        "LS_reqId=9&LS_op=destroy&LS_cause_code=-3&LS_cause_message=bye%20now&LS_session=S"
    )
    with pytest.raises(ValueError):
        destroy(9, cause_message="no code")


def test_message() -> None:
    req = message(10, "hello world+1&x")
    assert req.name == "msg"
    assert req.path == "/lightstreamer/msg.txt"
    assert req.encode() == "LS_reqId=10&LS_message=hello%20world%2B1%26x"
    req = message(
        11,
        "t",
        sequence="seq_1",
        prog=3,
        max_wait=500,
        outcome=False,
        ack=False,
        session_id="S1",
    )
    assert req.encode() == (
        "LS_reqId=11&LS_message=t&LS_sequence=seq_1&LS_msg_prog=3&LS_max_wait=500"
        "&LS_outcome=false&LS_ack=false&LS_session=S1"
    )
    assert message(1, "", outcome=True).encode() == "LS_reqId=1&LS_message=&LS_outcome=true"


def test_heartbeat() -> None:
    assert heartbeat().name == "heartbeat"
    assert heartbeat().params == ()
    assert heartbeat(session_id="S1").encode() == "LS_session=S1"


# --------------------------------------------------------------------------- errors


def test_error_hierarchy() -> None:
    assert issubclass(ProtocolError, LightstreamerError)
    assert issubclass(ValueDecodeError, ProtocolError)
    assert issubclass(ServerError, LightstreamerError)
    assert not issubclass(ServerError, ProtocolError)


def test_protocol_error_attributes() -> None:
    err = ProtocolError("bad tag", "FOO,1")
    assert err.reason == "bad tag"
    assert err.line == "FOO,1"
    assert err.code == 61
    assert str(err) == "bad tag: 'FOO,1'"
    assert str(ProtocolError("no line")) == "no line"
    assert ProtocolError("no line").line is None


def test_protocol_error_truncates() -> None:
    err = ProtocolError("long", "x" * 500)
    assert err.line == "x" * 200 + "…"
    assert ProtocolError("ok", "y" * 200).line == "y" * 200


def test_protocol_error_redacts_password() -> None:
    err = ProtocolError("leak", "LS_user=a&LS_password=hunter2&LS_adapter_set=X")
    assert err.line == "LS_user=a&LS_password=***"
    assert "hunter2" not in str(err)
    assert "hunter2" not in repr(err)
    long = ProtocolError("leak", "a" * 190 + "LS_password=" + "p" * 100)
    assert long.line is not None
    assert "p" not in long.line.replace("LS_pa", "")


def test_errors_pickle() -> None:
    err = pickle.loads(pickle.dumps(ValueDecodeError("why", "line", 3)))
    assert (err.reason, err.line, err.field) == ("why", "line", 3)
    serr = pickle.loads(pickle.dumps(ServerError(1, "m", "CONERR")))
    assert (serr.code, serr.message, serr.tag) == (1, "m", "CONERR")


def test_value_decode_error() -> None:
    err = ValueDecodeError("field 2: bad", field=2)
    assert err.field == 2
    assert err.code == 61
    assert err.line is None
    assert ValueDecodeError("x").field is None


def test_server_error() -> None:
    err = ServerError(1, "User/password check failed", "CONERR")
    assert str(err) == "CONERR 1: User/password check failed"
    assert (err.code, err.message, err.tag) == (1, "User/password check failed", "CONERR")
    assert str(ServerError(19, "nope")) == "19: nope"


def test_code_tables() -> None:
    assert RETRYABLE_CONERR == frozenset({4, 5, 6, 20, 40, 41, 48})
    assert RETRYABLE_END == frozenset({41, 48})
    for code in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 20, 21, 31, 32, 33, 34, 35, 40, 41, 48):
        assert code in SESSION_CODES
    for code in range(60, 72):
        if code not in (61, 62, 63):
            assert code in SESSION_CODES
    for code in (3, 11, *range(13, 18), *range(19, 31), 32, 33, 34, 35, 38, 39, 65, 66, 67, 68):
        assert code in CONTROL_CODES
    for code in (*range(40, 54), 56):
        assert code in CONTROL_CODES
    assert "password" in SESSION_CODES[1].lower()
    assert "not found" in CONTROL_CODES[19].lower()
