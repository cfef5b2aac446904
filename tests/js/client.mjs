// Drive the official centrifuge-js SDK over any of its transports, one command at a time.
//
//   node client.mjs '<options JSON>'
//
// Options: {"endpoints": "ws://…" | [{"transport": "http_stream", "endpoint": "http://…"}, …],
//           "emulation": "http://…/emulation", "token": "…", "protobuf": false}
//
// Reads commands from stdin, one JSON object per line, each with an "id":
//   {"op": "connect"} | {"op": "disconnect"} | {"op": "drop"} (close the transport under
//   the SDK, as a network failure would) | {"op": "subscribe", "channel": …}
//   | {"op": "publish", "channel": …, "data": …} | {"op": "presence", "channel": …}
//   | {"op": "history", "channel": …, "limit": n} | {"op": "rpc", "method": …, "data": …}
//   | {"op": "exit"}
// Writes events to stdout, one JSON object per line:
//   {"event": "reply", "id": …, ...result} or {"event": "reply", "id": …, "error": {…}}
//   {"event": "connected", "client", "transport"}, {"event": "connecting"|"disconnected",
//   "code", "reason"}, {"event": "subscribed", "channel", "recovered", "wasRecovering",
//   "offset", "epoch"}, {"event": "publication", "channel", "data", "offset"},
//   {"event": "unsubscribed"|"subscribing", "channel", "code"}
import readline from "node:readline";
import WebSocket from "ws";
import { EventSource } from "eventsource";

const options = JSON.parse(process.argv[2] ?? "{}");
const protobuf = options.protobuf === true;
const { Centrifuge } = await import(protobuf ? "centrifuge/build/protobuf" : "centrifuge");

const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const decode = (data) =>
  data instanceof Uint8Array ? JSON.parse(new TextDecoder().decode(data)) : data;
const encode = (value) =>
  protobuf ? new TextEncoder().encode(JSON.stringify(value)) : value;
const errorOf = (e) => ({ code: e?.code ?? 0, message: e?.message ?? String(e) });

// Node 20 has fetch and ReadableStream; WebSocket and EventSource come from packages.
const client = new Centrifuge(options.endpoints, {
  token: options.token,
  websocket: WebSocket,
  eventsource: EventSource,
  emulationEndpoint: options.emulation,
  name: "node-transports",
  minReconnectDelay: 50,
  maxReconnectDelay: 500,
  timeout: 5000,
});
client.on("connected", (ctx) =>
  emit({ event: "connected", client: ctx.client, transport: ctx.transport }));
client.on("connecting", (ctx) => emit({ event: "connecting", code: ctx.code, reason: ctx.reason }));
client.on("disconnected", (ctx) =>
  emit({ event: "disconnected", code: ctx.code, reason: ctx.reason }));

const subs = new Map();

function subscribe(channel) {
  const sub = client.newSubscription(channel);
  sub.on("subscribed", (ctx) => emit({
    event: "subscribed", channel, recovered: ctx.recovered, wasRecovering: ctx.wasRecovering,
    offset: ctx.streamPosition?.offset ?? null, epoch: ctx.streamPosition?.epoch ?? null,
  }));
  sub.on("subscribing", (ctx) => emit({ event: "subscribing", channel, code: ctx.code }));
  sub.on("unsubscribed", (ctx) => emit({ event: "unsubscribed", channel, code: ctx.code }));
  sub.on("publication", (ctx) => emit({
    event: "publication", channel, data: decode(ctx.data), offset: ctx.offset ?? null,
  }));
  subs.set(channel, sub);
  sub.subscribe();
  return {};
}

const commands = {
  connect: () => (client.connect(), {}),
  disconnect: () => (client.disconnect(), {}),
  drop: () => {
    // A network failure as the SDK sees it: its transport closes under it.
    client._transport.close();
    return {};
  },
  subscribe: (c) => subscribe(c.channel),
  publish: async (c) => (await client.publish(c.channel, encode(c.data)), {}),
  presence: async (c) => ({ clients: Object.keys((await subs.get(c.channel).presence()).clients) }),
  history: async (c) => {
    const result = await subs.get(c.channel).history({ limit: c.limit ?? -1 });
    return {
      offset: result.offset, epoch: result.epoch,
      publications: result.publications.map((p) => ({ data: decode(p.data), offset: p.offset })),
    };
  },
  rpc: async (c) => ({ data: decode((await client.rpc(c.method, encode(c.data))).data) }),
  exit: () => {
    client.removeAllListeners();
    client.disconnect();
    setTimeout(() => process.exit(0), 50);
    return {};
  },
};

readline.createInterface({ input: process.stdin }).on("line", async (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  try {
    emit({ event: "reply", id: command.id, ...(await commands[command.op](command)) });
  } catch (e) {
    emit({ event: "reply", id: command.id, error: errorOf(e) });
  }
});
