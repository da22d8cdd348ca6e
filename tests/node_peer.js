// Drive the official Lightstreamer Node.js client (npm lightstreamer-client-node) against
// a server; print what it saw as one JSON object.
//
// Usage: node node_peer.js <server-url> '<json spec>'
//
// The spec is the one tests/sdk_peer.py takes (subscriptions, messages, expect_updates, expect_errors,
// until, timeout, transport, adapter_set), so both official clients answer the same
// question. The result has the same shape as sdk_peer.py's, plus "events": every
// onItemUpdate of every subscription in arrival order, with its changed fields, so that
// update sequences (not only final states) can be compared.
//
// NODE_PATH must point at the node_modules folder holding lightstreamer-client-node.
"use strict";

const ls = require("lightstreamer-client-node");

function main(argv) {
  if (argv.length !== 2) {
    process.stderr.write("usage: node node_peer.js <url> '<json spec>'\n");
    return 64;
  }
  const url = argv[0];
  const spec = JSON.parse(argv[1]);
  const timeout = Math.min(Number(spec.timeout || 20), 30) * 1000;
  const rec = {
    subscriptions: [],
    messages: [],
    statuses: [],
    server_errors: [],
    updates: 0,
    events: [],
  };
  let untilSeen = !spec.until;

  const client = new ls.LightstreamerClient(url, spec.adapter_set || "DEFAULT");
  client.connectionOptions.setForcedTransport(spec.transport || "WS-STREAMING");
  client.addListener({
    onStatusChange: (status) => { rec.statuses.push(status); check(); },
    onServerError: (code, message) => { rec.server_errors.push([code, message]); check(); },
  });

  spec.subscriptions.forEach((subSpec, index) => {
    const mode = subSpec.mode;
    const record = {
      mode: mode,
      state: mode === "RAW" || mode === "DISTINCT" ? [] : {},
      subscribed: false,
      errors: [],
      second_level_errors: [],
      eos: [],
      clears: [],
      lost: [],
      frequency: null,
      updates: 0,
    };
    rec.subscriptions.push(record);
    const sub = new ls.Subscription(mode, subSpec.items, subSpec.fields);
    if (subSpec.snapshot !== undefined && subSpec.snapshot !== null) {
      const s = subSpec.snapshot;
      sub.setRequestedSnapshot(s === true ? "yes" : s === false ? "no" : String(s));
    }
    if (subSpec.frequency !== undefined && subSpec.frequency !== null) {
      sub.setRequestedMaxFrequency(String(subSpec.frequency));
    }
    if (subSpec.adapter) {
      sub.setDataAdapter(subSpec.adapter);
    }
    const second = subSpec.second_level_fields || [];
    if (second.length) {
      sub.setCommandSecondLevelFields(second);
      if (subSpec.second_level_adapter) {
        sub.setCommandSecondLevelDataAdapter(subSpec.second_level_adapter);
      }
    }
    const fields = subSpec.fields.concat(second);
    sub.addListener({
      onSubscription: () => { record.subscribed = true; check(); },
      onSubscriptionError: (code, message) => { record.errors.push([code, message]); check(); },
      onCommandSecondLevelSubscriptionError: (code, message, key) => {
        record.second_level_errors.push([code, message, key]);
        check();
      },
      onCommandSecondLevelItemLostUpdates: (lost, key) => { record.lost.push([key, lost]); },
      onEndOfSnapshot: (itemName) => { record.eos.push(itemName); },
      onClearSnapshot: (itemName) => {
        record.clears.push(itemName);
        if (mode === "COMMAND" && record.state[itemName]) {
          record.state[itemName] = {};
        }
      },
      onItemLostUpdates: (itemName, itemPos, lost) => { record.lost.push([itemName, lost]); },
      onRealMaxFrequency: (frequency) => { record.frequency = frequency; },
      onItemUpdate: (update) => {
        const item = update.getItemName();
        const values = {};
        for (const name of fields) {
          values[name] = update.getValue(name);
        }
        const changed = [];
        update.forEachChangedField((name) => { changed.push(name); });
        changed.sort();
        if (mode === "MERGE") {
          record.state[item] = values;
        } else if (mode === "COMMAND") {
          const table = record.state[item] || (record.state[item] = {});
          if (values.command === "DELETE") {
            delete table[values.key];
          } else {
            table[values.key] = values;
          }
        } else {
          record.state.push({
            item: item, fields: values, snapshot: update.isSnapshot(), changed: changed,
          });
        }
        rec.events.push({
          sub: index, item: item, fields: values, snapshot: update.isSnapshot(),
          changed: changed,
        });
        record.updates += 1;
        rec.updates += 1;
        const until = spec.until;
        if (until && (until.sub || 0) === index && until.item === item
            && values[until.field] === until.value) {
          untilSeen = true;
        }
        check();
      },
    });
    client.subscribe(sub);
  });

  client.connect();
  for (const msgSpec of spec.messages || []) {
    const record = { text: msgSpec.text, outcome: null };
    rec.messages.push(record);
    const set = (outcome) => (...extra) => { record.outcome = [outcome, ...extra]; check(); };
    client.sendMessage(msgSpec.text, msgSpec.sequence || null, null, {
      onProcessed: (msg, response) => set("processed")(response === undefined ? null : response),
      onDeny: (msg, code, error) => set("deny")(code, error),
      onAbort: () => set("abort")(),
      onDiscarded: () => set("discarded")(),
      onError: () => set("error")(),
    }, true);
  }

  const expected = Number(spec.expect_updates || 0);
  let finished = false;

  const expectedErrors = Number(spec.expect_errors || 0);

  function complete() {
    const errors = rec.subscriptions.reduce((n, s) => n + s.errors.length, 0);
    return rec.updates >= expected && untilSeen && errors >= expectedErrors
      && rec.messages.every((m) => m.outcome !== null);
  }

  function finish(ok) {
    if (finished) {
      return;
    }
    finished = true;
    clearTimeout(timer);
    const text = JSON.stringify(rec);
    if (ok) {
      process.stdout.write(text + "\n");
    } else {
      process.stderr.write("node_peer: incomplete (timeout or server error)\n" + text + "\n");
    }
    client.disconnect();
    // The client keeps timers; give the output time to drain, then leave.
    setTimeout(() => process.exit(ok ? 0 : 2), 50);
  }

  function check() {
    if (finished) {
      return;
    }
    if (rec.server_errors.length) {
      finish(false);
    } else if (complete()) {
      // Let callbacks already queued for this read run before reporting.
      setImmediate(() => finish(complete()));
    }
  }

  const timer = setTimeout(() => finish(complete()), timeout);
  return null;
}

const code = main(process.argv.slice(2));
if (code !== null) {
  process.exit(code);
}
