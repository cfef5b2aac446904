// Subscribe to one channel of a Chorus node with the official centrifuge-js SDK and print
// the first publication as one JSON line, then exit.
//
//   node subscribe.mjs <ws-url> <channel> <token> [--protobuf]
//
// Prints (one JSON object per line, to stdout):
//   {"event":"subscribed","channel":...,"client":...}   once subscribed: publish now
//   {"event":"publication","channel":...,"data":...,"offset":...,"info":...}
// Exit codes: 0 after the publication; 1 on a terminal disconnect or an unsubscribe;
// 2 when nothing arrived within 10 s.
import WebSocket from "ws";

const [url, channel, token, flag] = process.argv.slice(2);
if (!url || !channel) {
  console.error("usage: node subscribe.mjs <ws-url> <channel> <token> [--protobuf]");
  process.exit(64);
}
const protobuf = flag === "--protobuf";
// Node 20 has no global WebSocket (22 has): hand the SDK the `ws` package's.
const { Centrifuge } = await import(protobuf ? "centrifuge/build/protobuf" : "centrifuge");

const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const decode = (data) =>
  data instanceof Uint8Array ? JSON.parse(new TextDecoder().decode(data)) : data;

const deadline = setTimeout(() => {
  console.error("no publication within 10 s");
  process.exit(2);
}, 10_000);

const client = new Centrifuge(url, { token, websocket: WebSocket, name: "node-check" });
let clientId = null;
client.on("connected", (ctx) => {
  clientId = ctx.client;
});
client.on("disconnected", (ctx) => {
  console.error(`disconnected: ${ctx.code} ${ctx.reason}`);
  process.exit(1);
});

const sub = client.newSubscription(channel);
sub.on("subscribed", (ctx) => {
  emit({ event: "subscribed", channel: ctx.channel, client: clientId });
});
sub.on("unsubscribed", (ctx) => {
  console.error(`unsubscribed: ${ctx.code} ${ctx.reason}`);
  process.exit(1);
});
sub.on("publication", (ctx) => {
  emit({
    event: "publication",
    channel: ctx.channel,
    data: decode(ctx.data),
    offset: ctx.offset ?? null,
    info: ctx.info ?? null,
  });
  clearTimeout(deadline);
  client.removeAllListeners("disconnected");
  client.disconnect();
  process.exit(0);
});

sub.subscribe();
client.connect();
