"""A Klein app that shows a Lightstreamer feed live and serves it to other programs."""

import json
import sys

from klein import Klein
from twisted.internet import defer, endpoints, task
from twisted.web.server import Site

from txlightstreamer import MODE_MERGE, LsClient, Table
from txlightstreamer.web import Relay


class Prices:
    app = Klein()

    def __init__(self, url):
        self.client = LsClient(url)
        self.stocks = Table(self.client, mode=MODE_MERGE, item_ids=["item1", "item2"],
                            schema=["stock_name", "last_price"], snapshot=True)
        self.relay = Relay(self.client, [self.stocks])

    @app.route("/")
    def home(self, request):
        request.setHeader("content-type", "text/plain; charset=utf-8")
        return "Live page: /live/  JSON: /live/snapshot  Server-Sent Events: /live/events\n"

    @app.route("/price/<item>")
    def price(self, request, item):
        # Application code reads the same tables that the relay serves.
        if item not in self.stocks.items:
            request.setResponseCode(404)
            return "unknown item\n"
        row = self.stocks.rows.get(self.stocks.items.index(item) + 1)
        request.setHeader("content-type", "application/json")
        return json.dumps({"item": item, "last_price": row[1] if row else None})

    @app.route("/live/", branch=True)
    def live(self, request):
        return self.relay.resource()


async def serve(reactor, url, endpoint="tcp:8080:interface=127.0.0.1"):
    prices = Prices(url)
    await prices.client.create_session()
    site = Site(prices.app.resource())
    port = await endpoints.serverFromString(reactor, endpoint).listen(site)
    address = port.getHost()
    print(f"live page: http://{address.host}:{address.port}/live/")
    return prices, port


if __name__ == "__main__":
    async def forever(reactor):
        await serve(reactor, sys.argv[1])
        await defer.Deferred()

    task.react(lambda reactor: defer.ensureDeferred(forever(reactor)))
