// The centrifuge-js features of Centrifugo 6.8 against a Chorus node: headers emulation
// (the `headers` option, read back through the "headers" RPC), a stream subscription
// whose state comes from `getState` (position {offset: 0, epoch: ""}: recover everything
// the history holds) and channel compaction (offered by the SDK on every subscribe).
//
//   node session.mjs <ws-url> <channel> <token> <count> [--protobuf]
//
// Prints one JSON object per line:
//   {"event":"rpc","data":...}                 the RPC's answer
//   {"event":"get_state"}                      each getState call
//   {"event":"subscribed","recovered":...,"wasRecovering":...}
//   {"event":"publication","data":...,"offset":...}
// Exits 0 after <count> publications; 1 on a disconnect or unsubscribe; 2 after 10 s.
import WebSocket from "ws";

const [url, channel, token, countArg, flag] = process.argv.slice(2);
if (!url || !channel || !countArg) {
  console.error("usage: node session.mjs <ws-url> <channel> <token> <count> [--protobuf]");
  process.exit(64);
}
const protobuf = flag === "--protobuf";
const count = Number(countArg);
const { Centrifuge } = await import(protobuf ? "centrifuge/build/protobuf" : "centrifuge");

const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const decode = (data) =>
  data instanceof Uint8Array ? JSON.parse(new TextDecoder().decode(data)) : data;

setTimeout(() => {
  console.error("not done within 10 s");
  process.exit(2);
}, 10_000);

const client = new Centrifuge(url, {
  token,
  websocket: WebSocket,
  name: "node-session",
  headers: { "X-Tenant": "acme" },
});
client.on("disconnected", (ctx) => {
  console.error(`disconnected: ${ctx.code} ${ctx.reason}`);
  process.exit(1);
});
client.on("connected", async () => {
  const result = await client.rpc("headers", protobuf ? new TextEncoder().encode("null") : null);
  emit({ event: "rpc", data: decode(result.data) });
});

const sub = client.newSubscription(channel, {
  getState: async () => {
    emit({ event: "get_state" });
    return { offset: 0, epoch: "" };
  },
});
sub.on("subscribed", (ctx) => {
  emit({ event: "subscribed", recovered: ctx.recovered, wasRecovering: ctx.wasRecovering });
});
sub.on("unsubscribed", (ctx) => {
  console.error(`unsubscribed: ${ctx.code} ${ctx.reason}`);
  process.exit(1);
});
let received = 0;
sub.on("publication", (ctx) => {
  emit({ event: "publication", data: decode(ctx.data), offset: ctx.offset ?? null });
  received += 1;
  if (received === count) {
    client.removeAllListeners("disconnected");
    client.disconnect();
    process.exit(0);
  }
});

sub.subscribe();
client.connect();
