// Drives any number of centrifuge-js clients from JSON-line commands on stdin and reports
// every SDK event, and every command outcome, as one JSON line on stdout.
//
// Commands ({"op":..., "req":R optional; with "req" the outcome is a reply line}):
//   client      {"id","url","token"?,"tokens"?:[..],"tokensWhenEmpty"?:"wait"|"last","options"?:{..},
//                "trace"?:bool,"wsOptions"?:{..},"connect"?:bool,"protobuf"?:bool}   new Centrifuge(url, options)
//               "url" is a WebSocket URL, or the SDK's array of {transport, endpoint} (http_stream,
//               sse, websocket; pass options.emulationEndpoint with it);
//               "tokens" installs getToken (see TokenQueue); "trace" reports every WebSocket frame;
//               "wsOptions" go to the `ws` constructor (e.g. {"headers":{"Origin":..}});
//               "protobuf" uses the SDK's Protobuf build: payloads are still given and reported
//               as JSON values here, carried as their JSON text in bytes
//   connect / disconnect / ready {"timeout"?} / setToken {"token"} / state / close   {"client"}
//   pushToken   {"client","channel"?,"token"}   feeds the connection's (or a subscription's) queue
//   subscribe   {"client","channel","options"?,"subTokens"?,"subTokensWhenEmpty"?}
//   subReady    {"client","channel","timeout"?}
//   unsubscribe {"client","channel","remove"?}
//   publish {"client","channel","data"} / history {"client","channel","options"?} /
//   presence / presenceStats / deltaStats {"client","channel"} / rpc {"client","method","data"} / send {"client","data"}
//   kill        {"client","mode"?:"terminate"|"pause"|"resume"}   abrupt transport loss / stall
//   ping / exit
//
// Lines written (each has "kind"):
//   {"kind":"hello","node":"v20...","centrifuge":"5.x.y","ws":"8.x.y"}   once, when ready
//   {"kind":"event","seq":N,"t":ms,"client":"c1","source":"client"|"sub","channel":..,"event":"subscribed","ctx":{..}}
//        every SDK event (also "state"), plus "getToken" when a getToken callback is called
//   {"kind":"reply","req":R,"ok":true,"result":..} / {"kind":"reply","req":R,"ok":false,"error":{"code":..,"message":..}}
//   {"kind":"frame","seq":N,"t":ms,"client":"c1","dir":"in"|"out","binary":false,"data":"<frame>"}   with "trace"
//   {"kind":"fault","message":..}                                        a command without "req" failed, or a stray error
// "t" is performance.now() in milliseconds (monotonic, shared by all clients of this process).
// The process ends when stdin closes or on {"op":"exit"}, disconnecting every client first.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Centrifuge, UnauthorizedError } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';

let seq = 0;
const clients = new Map(); // id -> ClientEntry

function packageVersion(name) {
  const url = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')).version;
}

function write(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// SDK contexts are plain data except for the odd Error or DOM-like event; keep what is readable.
// `path` holds the objects being converted, so only true cycles are cut (shared objects are not).
function plain(value, depth = 0, path = new Set()) {
  if (value === undefined) return undefined;
  if (value === null) return null;
  const t = typeof value;
  if (t === 'bigint') return Number(value);
  if (t === 'function' || t === 'symbol') return undefined;
  if (t !== 'object') return value;
  if (depth > 8 || path.has(value)) return '[…]';
  if (value instanceof Uint8Array) return Array.from(value);
  path.add(value);
  try {
    if (value instanceof Error) {
      const out = { name: value.name, message: value.message };
      if ('code' in value) out.code = plain(value.code, depth + 1, path);
      return out;
    }
    if (Array.isArray(value)) return value.map((v) => plain(v, depth + 1, path) ?? null);
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      if (k.startsWith('_') || k === 'target' || k === 'currentTarget') continue;
      const p = plain(v, depth + 1, path);
      if (p !== undefined) out[k] = p;
    }
    return out;
  } finally {
    path.delete(value);
  }
}

// A Protobuf client carries payloads as bytes: the tests' payloads are JSON text in them.
function fromBytes(value) {
  if (value instanceof Uint8Array) {
    const text = new TextDecoder().decode(value);
    try {
      return JSON.parse(text);
    } catch (err) {
      return { notJson: text };
    }
  }
  if (Array.isArray(value)) return value.map(fromBytes);
  if (value !== null && typeof value === 'object' && !(value instanceof Error)) {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = k === 'data' || k === 'publications' ? fromBytes(v) : v;
    return out;
  }
  return value;
}

function toBytes(value) {
  return new TextEncoder().encode(JSON.stringify(value));
}

const protobufClients = new Set();

function emitEvent(client, source, channel, event, ctx) {
  const data = protobufClients.has(client) ? fromBytes(ctx) : ctx;
  write({ kind: 'event', seq: ++seq, t: performance.now(), client, source, channel, event, ctx: plain(data) ?? {} });
}

function errorOf(err) {
  if (err && typeof err === 'object') {
    const code = typeof err.code === 'number' ? err.code : 0;
    const message = typeof err.message === 'string' ? err.message : String(err);
    return { code, message, ...(err instanceof Error ? { name: err.name } : {}) };
  }
  return { code: 0, message: String(err) };
}

// A queue of tokens handed to a getToken callback, one per call.
// Entries: a token string; null (getToken resolves to null: the SDK treats it as unauthorized);
// {"throw":"unauthorized"} (rejects with UnauthorizedError); {"throw":"error","message":..}
// (rejects with a plain Error: the SDK retries). When the queue is empty, "whenEmpty" decides:
// "wait" (default) waits for a pushToken command, "last" repeats the last entry handed out.
class TokenQueue {
  constructor(entries, whenEmpty, onCall) {
    this.entries = [...(entries ?? [])];
    this.whenEmpty = whenEmpty ?? 'wait';
    this.onCall = onCall;
    this.last = undefined;
    this.waiters = [];
    this.calls = 0;
  }

  push(entry) {
    const waiter = this.waiters.shift();
    if (waiter) {
      this.last = entry;
      waiter(entry);
    } else {
      this.entries.push(entry);
    }
  }

  async next(ctx) {
    this.calls += 1;
    let entry;
    let waiting = false;
    if (this.entries.length > 0) {
      entry = this.entries.shift();
      this.last = entry;
    } else if (this.whenEmpty === 'last' && this.last !== undefined) {
      entry = this.last;
    } else {
      waiting = true;
    }
    this.onCall({ call: this.calls, ctx: plain(ctx) ?? {}, waiting, remaining: this.entries.length });
    if (waiting) entry = await new Promise((resolve) => this.waiters.push(resolve));
    if (entry !== null && typeof entry === 'object') {
      if (entry.throw === 'unauthorized') throw new UnauthorizedError(entry.message ?? 'unauthorized');
      throw new Error(entry.message ?? 'token error');
    }
    return entry;
  }

  release() {
    // Pending callbacks resolve to null so that no promise is left hanging on exit.
    for (const waiter of this.waiters.splice(0)) waiter(null);
  }
}

// One WebSocket class per client, so the driver can reach that client's sockets
// (to kill them without a close frame) and trace their frames.
function socketClassFor(entry) {
  return class TrackedWebSocket extends WebSocket {
    constructor(address, protocols) {
      super(address, protocols, entry.wsOptions);
      entry.sockets.add(this);
      this.on('close', () => entry.sockets.delete(this));
      if (entry.trace) {
        this.on('message', (data, isBinary) => entry.frame('in', data, isBinary));
      }
    }

    send(data, ...rest) {
      if (entry.trace) entry.frame('out', data, typeof data !== 'string');
      return super.send(data, ...rest);
    }
  };
}

const CLIENT_EVENTS = [
  'state', 'connecting', 'connected', 'disconnected', 'error', 'message',
  'publication', 'subscribing', 'subscribed', 'unsubscribed', 'join', 'leave',
];
const SUB_EVENTS = ['state', 'subscribing', 'subscribed', 'unsubscribed', 'publication', 'join', 'leave', 'error'];

class ClientEntry {
  constructor(cmd) {
    this.id = cmd.id;
    this.sockets = new Set();
    this.trace = Boolean(cmd.trace);
    this.wsOptions = cmd.wsOptions ?? {};
    this.subTokens = new Map(); // channel -> TokenQueue
    const options = { ...(cmd.options ?? {}), websocket: socketClassFor(this) };
    if (cmd.token !== undefined) options.token = cmd.token;
    this.tokens = null;
    if (cmd.tokens !== undefined) {
      this.tokens = new TokenQueue(cmd.tokens, cmd.tokensWhenEmpty, (info) =>
        emitEvent(this.id, 'client', null, 'getToken', info));
      options.getToken = (ctx) => this.tokens.next(ctx);
    }
    if (cmd.protobuf) protobufClients.add(this.id);
    this.protobuf = Boolean(cmd.protobuf);
    this.centrifuge = new (cmd.protobuf ? ProtobufCentrifuge : Centrifuge)(cmd.url, options);
    for (const name of CLIENT_EVENTS) {
      this.centrifuge.on(name, (ctx) => emitEvent(this.id, 'client', ctx?.channel ?? null, name, ctx));
    }
  }

  frame(dir, data, isBinary) {
    const text = isBinary ? Buffer.from(data).toString('base64') : data.toString();
    write({ kind: 'frame', seq: ++seq, t: performance.now(), client: this.id, dir, binary: Boolean(isBinary), data: text });
  }

  sub(channel) {
    const sub = this.centrifuge.getSubscription(channel);
    if (!sub) throw codeError(`client ${this.id} has no subscription to ${channel}`);
    return sub;
  }

  newSub(cmd) {
    const options = { ...(cmd.options ?? {}) };
    if (cmd.subTokens !== undefined) {
      const queue = new TokenQueue(cmd.subTokens, cmd.subTokensWhenEmpty, (info) =>
        emitEvent(this.id, 'sub', cmd.channel, 'getToken', info));
      this.subTokens.set(cmd.channel, queue);
      options.getToken = (ctx) => queue.next(ctx);
    }
    const sub = this.centrifuge.newSubscription(cmd.channel, options);
    for (const name of SUB_EVENTS) {
      sub.on(name, (ctx) => emitEvent(this.id, 'sub', cmd.channel, name, ctx));
    }
    return sub;
  }

  kill(mode) {
    const sockets = [...this.sockets];
    for (const socket of sockets) {
      if (mode === 'pause') socket.pause();
      else if (mode === 'resume') socket.resume();
      else socket.terminate(); // destroys the TCP socket: no close frame is sent
    }
    return { sockets: sockets.length };
  }

  close() {
    this.centrifuge.disconnect();
    this.tokens?.release();
    for (const queue of this.subTokens.values()) queue.release();
    for (const socket of this.sockets) socket.terminate();
    this.centrifuge.removeAllListeners();
  }
}

function codeError(message, code = 0) {
  const err = new Error(message);
  err.code = code;
  return err;
}

// Calls that carry payloads: bytes in and out for a Protobuf client (see fromBytes).
async function payloadCall(cmd, call, data) {
  const entry = entryOf(cmd);
  const result = await call(entry, entry.protobuf && data !== undefined ? toBytes(data) : data);
  return entry.protobuf ? fromBytes(result) : result;
}

function entryOf(cmd) {
  const entry = clients.get(cmd.client);
  if (!entry) throw codeError(`unknown client ${JSON.stringify(cmd.client)}`);
  return entry;
}

function subscriptionStates(entry) {
  const out = {};
  for (const [channel, sub] of Object.entries(entry.centrifuge.subscriptions())) out[channel] = sub.state;
  return out;
}

const handlers = {
  ping: () => ({ pong: true }),

  client(cmd) {
    if (clients.has(cmd.id)) throw codeError(`client ${cmd.id} exists`);
    const entry = new ClientEntry(cmd);
    clients.set(cmd.id, entry);
    if (cmd.connect) entry.centrifuge.connect();
    return { id: cmd.id };
  },

  connect(cmd) {
    entryOf(cmd).centrifuge.connect();
    return {};
  },

  disconnect(cmd) {
    entryOf(cmd).centrifuge.disconnect();
    return {};
  },

  close(cmd) {
    entryOf(cmd).close();
    clients.delete(cmd.client);
    return {};
  },

  async ready(cmd) {
    await entryOf(cmd).centrifuge.ready(cmd.timeout);
    return { state: entryOf(cmd).centrifuge.state };
  },

  setToken(cmd) {
    entryOf(cmd).centrifuge.setToken(cmd.token);
    return {};
  },

  pushToken(cmd) {
    const entry = entryOf(cmd);
    const queue = cmd.channel === undefined ? entry.tokens : entry.subTokens.get(cmd.channel);
    if (!queue) throw codeError(`no getToken queue for ${cmd.channel ?? 'the connection'}`);
    queue.push(cmd.token === undefined ? null : cmd.token);
    return { waiting: queue.waiters.length, queued: queue.entries.length };
  },

  subscribe(cmd) {
    const entry = entryOf(cmd);
    const sub = entry.centrifuge.getSubscription(cmd.channel) ?? entry.newSub(cmd);
    sub.subscribe();
    return { state: sub.state };
  },

  async subReady(cmd) {
    const sub = entryOf(cmd).sub(cmd.channel);
    await sub.ready(cmd.timeout);
    return { state: sub.state };
  },

  unsubscribe(cmd) {
    const entry = entryOf(cmd);
    const sub = entry.sub(cmd.channel);
    sub.unsubscribe();
    if (cmd.remove) entry.centrifuge.removeSubscription(sub);
    return { state: sub.state };
  },

  publish: async (cmd) => payloadCall(cmd, (e, data) => e.centrifuge.publish(cmd.channel, data), cmd.data),
  history: async (cmd) => payloadCall(cmd, (e) => e.centrifuge.history(cmd.channel, cmd.options ?? {})),
  deltaStats: (cmd) => entryOf(cmd).sub(cmd.channel).deltaStats(),
  presence: async (cmd) => entryOf(cmd).centrifuge.presence(cmd.channel),
  presenceStats: async (cmd) => entryOf(cmd).centrifuge.presenceStats(cmd.channel),
  rpc: async (cmd) => payloadCall(cmd, (e, data) => e.centrifuge.rpc(cmd.method, data), cmd.data ?? {}),

  async send(cmd) {
    await entryOf(cmd).centrifuge.send(cmd.data);
    return {};
  },

  // Abrupt transport loss: "terminate" (default) drops the TCP connection without a close
  // frame; "pause"/"resume" stop/restart reading from the socket (a stalled client).
  kill: (cmd) => entryOf(cmd).kill(cmd.mode ?? 'terminate'),

  state(cmd) {
    const entry = entryOf(cmd);
    return { state: entry.centrifuge.state, subs: subscriptionStates(entry), sockets: entry.sockets.size };
  },

  exit() {
    setImmediate(shutdown);
    return {};
  },
};

async function handle(line) {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    write({ kind: 'fault', message: `bad command line: ${err.message}`, line });
    return;
  }
  const req = cmd.req ?? null;
  try {
    const handler = Object.hasOwn(handlers, cmd.op) ? handlers[cmd.op] : null;
    if (!handler) throw codeError(`unknown op ${JSON.stringify(cmd.op)}`);
    const result = plain(await handler(cmd)) ?? null;
    if (req !== null) write({ kind: 'reply', req, ok: true, result });
  } catch (err) {
    const error = errorOf(err);
    if (req !== null) write({ kind: 'reply', req, ok: false, error });
    else write({ kind: 'fault', message: `${cmd.op} failed`, error });
  }
}

let shuttingDown = false;

function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  for (const entry of clients.values()) {
    try {
      entry.close();
    } catch (err) {
      process.stderr.write(`closing ${entry.id}: ${err?.stack ?? err}\n`);
    }
  }
  clients.clear();
  // Let stdout drain, then leave even if some timer of the SDK is still armed.
  process.stdout.write('', () => process.exit(0));
}

process.on('unhandledRejection', (reason) => {
  write({ kind: 'fault', message: 'unhandled rejection', error: errorOf(reason) });
});
process.on('uncaughtException', (err) => {
  write({ kind: 'fault', message: 'uncaught exception', error: errorOf(err) });
  process.stderr.write(`${err?.stack ?? err}\n`);
});

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (line.trim() !== '') handle(line);
});
rl.on('close', shutdown);

write({
  kind: 'hello',
  node: process.version,
  centrifuge: packageVersion('centrifuge'),
  ws: packageVersion('ws'),
});
