// centrifuge-js against a Chorus node whose application backend is asked through
// proxies: connect WITHOUT a token (the connect proxy authenticates; an emulated header
// travels in the connect command), one subscription the subscribe proxy refuses, one it
// allows, a publication the publish proxy rewrites, an RPC answered by the backend.
//
//   node proxy.mjs <ws-url> [--protobuf]
//
// Prints one JSON object per line:
//   {"event":"connected","data":...}
//   {"event":"refused","channel":...,"code":...,"reason":...}
//   {"event":"subscribed","channel":...,"data":...}
//   {"event":"publication","data":...}
//   {"event":"rpc","data":...}
// Exits 0 after the RPC answer; 1 on a disconnect; 2 after 10 s.
import WebSocket from "ws";

const [url, flag] = process.argv.slice(2);
if (!url) {
  console.error("usage: node proxy.mjs <ws-url> [--protobuf]");
  process.exit(64);
}
const protobuf = flag === "--protobuf";
const { Centrifuge } = await import(protobuf ? "centrifuge/build/protobuf" : "centrifuge");

const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const encode = (value) => (protobuf ? new TextEncoder().encode(JSON.stringify(value)) : value);
const decode = (data) =>
  data instanceof Uint8Array ? JSON.parse(new TextDecoder().decode(data)) : data;

setTimeout(() => {
  console.error("not done within 10 s");
  process.exit(2);
}, 10_000);

const client = new Centrifuge(url, {
  websocket: WebSocket,  // no token: the connect proxy decides
  name: "js-proxy",
  headers: { "X-Tenant": "acme" },
  data: encode({ sdk: "js" }),
});
client.on("disconnected", (ctx) => {
  console.error(`disconnected: ${ctx.code} ${ctx.reason}`);
  process.exit(1);
});
client.on("connected", (ctx) => {
  emit({ event: "connected", data: ctx.data === undefined ? null : decode(ctx.data) });
});

const refused = client.newSubscription("app:secret");
refused.on("unsubscribed", (ctx) => {
  emit({ event: "refused", channel: "app:secret", code: ctx.code, reason: ctx.reason });
  allowed.subscribe();
});

const allowed = client.newSubscription("app:open");
allowed.on("subscribed", async (ctx) => {
  emit({ event: "subscribed", channel: ctx.channel, data: decode(ctx.data) });
  await allowed.publish(encode({ text: "hello" }));
});
allowed.on("publication", async (ctx) => {
  emit({ event: "publication", data: decode(ctx.data) });
  const result = await client.rpc("app:sum", encode({ a: 2, b: 3 }));
  emit({ event: "rpc", data: decode(result.data) });
  client.removeAllListeners("disconnected");
  client.disconnect();
  process.exit(0);
});

refused.subscribe();
client.connect();
