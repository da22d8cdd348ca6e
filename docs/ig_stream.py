"""Stream IG prices and account updates with txlightstreamer (the IG recipe of the docs).

Usage::

    IG_CST=<CST token> IG_XST=<X-SECURITY-TOKEN> python ig_stream.py <endpoint> <account id>

The tokens and the endpoint (``lightstreamerEndpoint``) come from IG's REST login
(``POST /session``). tests/test_testing_ig.py runs this file as it is, against the IG-like
test server of ``txlightstreamer.testing.ig``.
"""

import os
import sys

from twisted.internet import defer, task

from txlightstreamer import MODE_MERGE, LsClient, Table

EPICS = ["CS.D.EURUSD.MINI.IP", "IX.D.FTSE.DAILY.IP"]
PRICE_FIELDS = ["BID", "OFFER", "CHANGE_PCT", "MARKET_STATE", "UPDATE_TIME"]
ACCOUNT_FIELDS = ["PNL", "EQUITY", "AVAILABLE_CASH"]


async def main(reactor, url, account_id, cst, xst, updates=20):
    # Default settings: TLCP 2.5.0 first, then 2.4.0 once IG answers CONERR 65.
    client = LsClient(url, reactor=reactor)
    client.on_status(lambda status, reason: print("status", status, reason or ""))
    prices = Table(client, mode=MODE_MERGE, item_ids=[f"MARKET:{epic}" for epic in EPICS],
                   schema=PRICE_FIELDS, snapshot=True)
    account = Table(client, mode=MODE_MERGE, item_ids=[f"ACCOUNT:{account_id}"],
                    schema=ACCOUNT_FIELDS, snapshot=True)
    enough = defer.Deferred()
    count = 0

    def show(name, fields, row):
        nonlocal count
        print(name, dict(zip(fields, row, strict=True)))
        count += 1
        if count == updates:
            enough.callback(None)

    prices.on_update(lambda position, row: show(EPICS[position - 1], PRICE_FIELDS, row))
    account.on_update(lambda position, row: show("ACCOUNT", ACCOUNT_FIELDS, row))
    # IG's convention: the user is the account id, the password the two session tokens.
    await client.create_session(username=account_id, password=f"CST-{cst}|XST-{xst}")
    await enough
    await client.destroy()


if __name__ == "__main__":
    endpoint, account = sys.argv[1], sys.argv[2]
    tokens = os.environ["IG_CST"], os.environ["IG_XST"]
    task.react(lambda reactor: defer.Deferred.fromCoroutine(
        main(reactor, endpoint, account, *tokens)))
