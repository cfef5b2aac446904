// Browser harness for tests/functional/test_pusher_browser.py: pusher-js (the
// with-encryption web build, global `Pusher`) and Laravel Echo (the IIFE build, global
// `Echo`) in a real page, driven by Playwright through `page.evaluate`.
//
//   start({key, host, port, echo})          connect (with Laravel Echo over pusher-js)
//   subscribe(name) | unsubscribe(name) | trigger(channel, event, data) | bind(channel, name)
//   echoListen({kind, name, event}) | whisper(name, event, data) | listenForWhisper(name, event)
//   take(kind, fields, timeoutMs)  -> the first event not yet taken of this kind whose
//                                     fields equal `fields` (rejects after timeoutMs)
//   pending(kind)                  -> how many events of this kind are not yet taken
//
// Events recorded (same shapes as tests/js/pusher.mjs): connected, error, members,
// subscription_error, message, member_added, member_removed, bound, here, joining,
// leaving, echo, echo_subscribed, whisper.
"use strict";

const events = [];
const waiters = [];
let pusher = null;
let echo = null;

function emit(event) {
  events.push(event);
  for (const waiter of [...waiters]) waiter();
}

function matches(event, kind, fields) {
  if (event.event !== kind) return false;
  return Object.entries(fields).every(([k, v]) => JSON.stringify(event[k]) === JSON.stringify(v));
}

window.take = (kind, fields = {}, timeoutMs = 15000) => new Promise((resolve, reject) => {
  const look = () => {
    const index = events.findIndex((e) => matches(e, kind, fields));
    if (index < 0) return false;
    const [event] = events.splice(index, 1);
    resolve(event);
    return true;
  };
  if (look()) return;
  const waiter = () => {
    if (look()) {
      waiters.splice(waiters.indexOf(waiter), 1);
      clearTimeout(timer);
    }
  };
  const timer = setTimeout(() => {
    waiters.splice(waiters.indexOf(waiter), 1);
    reject(new Error(`no ${kind} ${JSON.stringify(fields)} within ${timeoutMs} ms; ` +
                     `untaken: ${JSON.stringify(events)}`));
  }, timeoutMs);
  waiters.push(waiter);
});

window.pending = (kind) => events.filter((e) => e.event === kind).length;

window.start = (options) => {
  const config = {
    cluster: "mt1", wsHost: options.host, wsPort: options.port, forceTLS: false,
    enabledTransports: ["ws"], disableStats: true,
    // same origin as this page: the test's backend signs with the official library
    channelAuthorization: { endpoint: "/auth", transport: "ajax" },
    userAuthentication: { endpoint: "/user-auth", transport: "ajax" },
  };
  if (options.echo) {
    echo = new Echo.default({ broadcaster: "pusher", key: options.key, Pusher, ...config,
                              authEndpoint: "/auth" });
    pusher = echo.connector.pusher;
  } else {
    pusher = new Pusher(options.key, config);
  }
  pusher.connection.bind("connected", () =>
    emit({ event: "connected", socket_id: pusher.connection.socket_id }));
  pusher.bind_global((name, data) => {
    if (name === "pusher:error") emit({ event: "error", code: data?.code ?? null,
                                        message: data?.message ?? "" });
  });
};

function watch(channel) {
  channel.bind_global((name, data, metadata) => {
    if (name === "pusher:subscription_succeeded") {
      const ids = [];
      if (channel.members) channel.members.each((m) => ids.push(m.id));
      emit({ event: "members", channel: channel.name, ids: ids.sort(),
             me: channel.members?.me?.id ?? null, count: channel.members?.count ?? null });
    } else if (name === "pusher:subscription_error") {
      emit({ event: "subscription_error", channel: channel.name,
             status: data?.status ?? null });
    } else if (name === "pusher:member_added" || name === "pusher:member_removed") {
      emit({ event: name.slice(7), channel: channel.name, id: data.id, info: data.info });
    } else if (!name.startsWith("pusher")) {
      emit({ event: "message", channel: channel.name, name, data,
             user_id: metadata?.user_id ?? null });
    }
  });
}

window.subscribe = (name) => { watch(pusher.subscribe(name)); };
window.unsubscribe = (name) => { pusher.unsubscribe(name); };
window.trigger = (channel, event, data) => pusher.channel(channel).trigger(event, data);
window.bind = (channel, name) => {
  // a named binding: pusher-js passes metadata (user_id) only to these
  pusher.channel(channel).bind(name, (data, metadata) => emit({
    event: "bound", channel, name, data, user_id: metadata?.user_id ?? null }));
};

window.echoListen = ({ kind, name, event }) => {
  let channel;
  if (kind === "join") {
    channel = echo.join(name)
      .here((users) => emit({ event: "here", name, users }))
      .joining((user) => emit({ event: "joining", name, user }))
      .leaving((user) => emit({ event: "leaving", name, user }));
  } else {
    channel = echo[kind](name);
  }
  channel.listen(event, (data) => emit({ event: "echo", name, listened: event, data }));
  channel.subscribed(() => emit({ event: "echo_subscribed", name }));
};
window.listenForWhisper = (kind, name, event) => {
  const channel = kind === "join" ? echo.join(name) : echo.private(name);
  channel.listenForWhisper(event, (data) => emit({ event: "whisper", name, data }));
};
window.whisper = (kind, name, event, data) => {
  const channel = kind === "join" ? echo.join(name) : echo.private(name);
  channel.whisper(event, data);
};
window.leave = (name) => { echo.leave(name); };
