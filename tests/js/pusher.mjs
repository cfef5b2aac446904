// Drive pusher-js (and optionally Laravel Echo over it) against a Chorus node.
//
//   node pusher.mjs '<options JSON>'
//
// Options: {"key", "host", "port", "authEndpoint", "userAuthEndpoint", "echo": false}
// Reads commands from stdin, one JSON object per line, each with an "id":
//   {"op": "subscribe", "channel"} | {"op": "unsubscribe", "channel"}
//   | {"op": "trigger", "channel", "event", "data"} (a client event) | {"op": "signin"}
//   | {"op": "bind", "channel", "name"} (reports {"event": "bound", ..., "user_id"})
//   | {"op": "echo", "kind": "channel"|"private"|"encryptedPrivate"|"join", "name",
//      "event"} (Laravel Echo) | {"op": "disconnect"} | {"op": "exit"}
// Writes events to stdout, one JSON object per line:
//   {"event": "reply", "id", ...} | {"event": "state", "current"} | {"event": "connected",
//   "socket_id"} | {"event": "error", "code", "message"} | {"event": "message", "channel",
//   "name", "data", "user_id"} | {"event": "members", "channel", "ids", "me", "count"}
//   | {"event": "here"|"joining"|"leaving", "name", ...} (Echo presence callbacks)
import readline from "node:readline";
import Pusher from "pusher-js";

const options = JSON.parse(process.argv[2] ?? "{}");
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const config = {
  cluster: "mt1",
  wsHost: options.host,
  wsPort: options.port,
  forceTLS: false,
  enabledTransports: ["ws"],
  disableStats: true,
  channelAuthorization: { endpoint: options.authEndpoint, transport: "ajax" },
  userAuthentication: { endpoint: options.userAuthEndpoint, transport: "ajax" },
};

let pusher;
let echo = null;
if (options.echo) {
  const { default: Echo } = await import("laravel-echo");
  echo = new Echo({ broadcaster: "pusher", key: options.key, Pusher, ...config,
                    authEndpoint: options.authEndpoint });
  pusher = echo.connector.pusher;
} else {
  pusher = new Pusher(options.key, config);
}

pusher.connection.bind("state_change", (s) => emit({ event: "state", current: s.current }));
pusher.connection.bind("connected", () =>
  emit({ event: "connected", socket_id: pusher.connection.socket_id }));
pusher.connection.bind("error", (e) => emit({
  event: "error", code: e?.data?.code ?? e?.error?.data?.code ?? null,
  message: e?.data?.message ?? e?.error?.data?.message ?? String(e?.type ?? e),
}));
pusher.bind_global((name, data) => {
  if (name === "pusher:error") emit({ event: "error", code: data?.code ?? null,
                                      message: data?.message ?? "" });
});

function watch(channel) {
  channel.bind_global((name, data) => {
    if (name === "pusher:subscription_succeeded") {
      const ids = [];
      if (channel.members) channel.members.each((m) => ids.push(m.id));
      emit({ event: "members", channel: channel.name, ids: ids.sort(),
             me: channel.members?.me?.id ?? null, count: channel.members?.count ?? null });
    }
    if (name === "pusher:subscription_error") {
      emit({ event: "subscription_error", channel: channel.name, status: data?.status ?? null,
             type: data?.type ?? null });
    }
  });
  channel.bind_global((name, data, metadata) => {
    if (name.startsWith("pusher")) {
      if (name === "pusher:member_added" || name === "pusher:member_removed") {
        emit({ event: name.slice(7), channel: channel.name, id: data.id, info: data.info });
      }
      return;
    }
    emit({ event: "message", channel: channel.name, name, data,
           user_id: metadata?.user_id ?? null });
  });
}

function echoListen(command) {
  let channel;
  if (command.kind === "join") {
    channel = echo.join(command.name)
      .here((users) => emit({ event: "here", name: command.name, users }))
      .joining((user) => emit({ event: "joining", name: command.name, user }))
      .leaving((user) => emit({ event: "leaving", name: command.name, user }));
  } else {
    channel = echo[command.kind](command.name);
  }
  channel.listen(command.event, (data) =>
    emit({ event: "echo", name: command.name, listened: command.event, data }));
  channel.subscribed?.(() => emit({ event: "echo_subscribed", name: command.name }));
  channel.error?.((error) => emit({ event: "echo_error", name: command.name,
                                    status: error?.status ?? null }));
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const command = JSON.parse(line);
  const reply = { event: "reply", id: command.id };
  try {
    switch (command.op) {
      case "subscribe": watch(pusher.subscribe(command.channel)); break;
      case "unsubscribe": pusher.unsubscribe(command.channel); break;
      case "trigger":
        reply.sent = pusher.channel(command.channel).trigger(command.event, command.data);
        break;
      case "bind": // a named binding: pusher-js passes metadata (user_id) only to these
        pusher.channel(command.channel).bind(command.name, (data, metadata) => emit({
          event: "bound", channel: command.channel, name: command.name, data,
          user_id: metadata?.user_id ?? null }));
        break;
      case "signin": pusher.signin(); break;
      case "echo": echoListen(command); break;
      case "disconnect": pusher.disconnect(); break;
      case "exit": emit(reply); process.exit(0);
      default: reply.error = `unknown op ${command.op}`;
    }
  } catch (e) {
    reply.error = String(e?.message ?? e);
  }
  emit(reply);
}
