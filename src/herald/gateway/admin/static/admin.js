// The Herald admin page: plain DOM, no framework, no build step.
// Every action is a server API method posted to api/<method> (same-origin, session cookie);
// watching a channel reads the Server-Sent Events of watch?channel=<name>.
"use strict";

const $ = (id) => document.getElementById(id);
const NODES_EVERY_MS = 3000; // nodes announce themselves every 3 s (spec §9.1)

class AdminError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function describeError(body, status) {
  const error = body && body.error;
  if (!error) return `HTTP ${status}`;
  if (typeof error === "string") return error;
  const code = error.code ? ` (${error.code})` : "";
  const hints = { 102: "no such namespace", 108: "not enabled for this channel's namespace" };
  const hint = hints[error.code] ? `: ${hints[error.code]}` : "";
  return `${error.message}${code}${hint}`;
}

async function post(path, params) {
  const resp = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(params || {}),
    credentials: "same-origin",
  });
  const body = await resp.json().catch(() => null);
  if (resp.status === 401 && path.startsWith("api/")) {
    showLogin("Your session ended: log in again.");
  }
  if (!resp.ok) throw new AdminError(describeError(body, resp.status), resp.status);
  return body;
}

async function call(method, params) {
  return (await post(`api/${method}`, params)).result;
}

// --- small DOM helpers (text only: nothing from the server is parsed as HTML)

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function row(cells, attrs) {
  const tr = el("tr", null, attrs);
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.appendChild(cell);
    else td.textContent = cell === undefined || cell === null ? "" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function showError(id, error) {
  $(id).textContent = error ? (error.message || String(error)) : "";
}

function uptime(seconds) {
  seconds = Math.floor(seconds || 0);
  const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

function globEscape(text) {
  // The channels method takes a glob pattern: match this one name only.
  return text.replace(/[*?[]/g, "[$&]");
}

// --- login

let nodesTimer = null;

function showLogin(message) {
  stopWatching();
  clearInterval(nodesTimer);
  nodesTimer = null;
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("whoami").hidden = true;
  $("login-section").hidden = false;
  $("login-error").textContent = message || "";
  $("password").focus();
}

function showDashboard() {
  $("login-section").hidden = true;
  $("dashboard").hidden = false;
  $("logout").hidden = false;
  $("whoami").hidden = false;
  refreshNodes();
  clearInterval(nodesTimer);
  nodesTimer = setInterval(refreshNodes, NODES_EVERY_MS);
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter || $("login-form").querySelector("button");
  button.disabled = true;
  try {
    await post("auth", { password: $("password").value });
    $("password").value = "";
    showDashboard();
  } catch (error) {
    $("login-error").textContent = error.status === 401 ? "Wrong password." : error.message;
  } finally {
    button.disabled = false;
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await post("logout", {});
  } finally {
    showLogin("Logged out.");
  }
});

// --- nodes

async function refreshNodes() {
  try {
    const result = await call("info", {});
    const body = $("nodes").querySelector("tbody");
    const nodes = result.nodes.slice().sort((a, b) => a.name.localeCompare(b.name));
    body.replaceChildren(
      ...nodes.map((n) =>
        row([n.name, n.version, n.num_clients, n.num_users, n.num_channels, n.num_subs, uptime(n.uptime)], {
          "data-node": n.name,
        }),
      ),
    );
    const sum = (key) => nodes.reduce((total, n) => total + (n[key] || 0), 0);
    $("total-clients").textContent = sum("num_clients");
    $("total-users").textContent = `${sum("num_users")} (per node)`;
    $("total-subs").textContent = sum("num_subs");
    showError("nodes-error", null);
  } catch (error) {
    if (error.status !== 401) showError("nodes-error", error);
  }
}

$("refresh-nodes").addEventListener("click", refreshNodes);

// --- channel

async function optional(promise) {
  // Presence and history exist only where the namespace keeps them (108 otherwise).
  try {
    return { value: await promise };
  } catch (error) {
    return { error };
  }
}

$("channel-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const channel = $("channel-name").value.trim();
  showError("channel-error", null);
  $("channel-result").hidden = true;
  try {
    const survey = await call("channels", { pattern: globEscape(channel) });
    const [stats, presence, history] = await Promise.all([
      optional(call("presence_stats", { channel })),
      optional(call("presence", { channel })),
      optional(call("history", { channel, limit: 10, reverse: true })),
    ]);
    const found = survey.channels[channel];
    $("channel-subscribers").textContent = found ? found.num_clients || 0 : 0;
    $("channel-presence-stats").textContent = stats.error
      ? stats.error.message
      : `${stats.value.num_clients} clients, ${stats.value.num_users} users`;
    const presenceBody = $("channel-presence").querySelector("tbody");
    presenceBody.replaceChildren(
      ...(presence.error ? [] : Object.values(presence.value.presence).map((info) => row([info.user, info.client]))),
    );
    const list = $("channel-history");
    if (history.error) {
      $("channel-history-position").textContent = history.error.message;
      list.replaceChildren();
    } else {
      const h = history.value;
      $("channel-history-position").textContent = `offset ${h.offset || 0}, epoch ${h.epoch || "-"}`;
      list.replaceChildren(
        ...h.publications.map((pub) => el("li", `#${pub.offset || "-"} ${JSON.stringify(pub.data)}`)),
      );
    }
    $("channel-result").hidden = false;
    $("channel-result").setAttribute("data-channel", channel);
    refreshNodes();
  } catch (error) {
    showError("channel-error", error);
  }
});

// --- user

async function findUser(user) {
  showError("user-error", null);
  const table = $("user-connections");
  try {
    const result = await call("connections", { user });
    const entries = Object.entries(result.connections);
    const body = table.querySelector("tbody");
    body.replaceChildren(
      ...entries.map(([client, info]) => {
        const button = el("button", "Disconnect", { type: "button", class: "small danger disconnect" });
        button.addEventListener("click", () => disconnect(user, client, button));
        const token = info.token_uid ? `jti ${info.token_uid}` : "";
        return row(
          [el("code", client), info.node, info.protocol, (info.channels || []).join(", "), token, button],
          { "data-client": client, "data-state": "connected" },
        );
      }),
    );
    table.hidden = entries.length === 0;
    $("user-empty").hidden = entries.length !== 0;
    table.setAttribute("data-user", user);
    refreshNodes();
  } catch (error) {
    table.hidden = true;
    $("user-empty").hidden = true;
    showError("user-error", error);
  }
}

async function disconnect(user, client, button) {
  button.disabled = true;
  try {
    await call("disconnect", { user, client });
    button.closest("tr").setAttribute("data-state", "disconnected");
    button.textContent = "Disconnected";
    refreshNodes();
  } catch (error) {
    button.disabled = false;
    showError("user-error", error);
  }
}

$("user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  findUser($("user-id").value.trim());
});

// --- publish

$("publish-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("publish-error", null);
  $("publish-result").textContent = "";
  let data;
  try {
    data = JSON.parse($("publish-data").value);
  } catch (error) {
    showError("publish-error", new Error(`The data is not JSON: ${error.message}`));
    return;
  }
  const channel = $("publish-channel").value.trim();
  try {
    const result = await call("publish", { channel, data });
    const where = result.offset ? ` at offset ${result.offset} (epoch ${result.epoch})` : "";
    $("publish-result").textContent = `Published to ${channel}${where}.`;
  } catch (error) {
    showError("publish-error", error);
  }
});

// --- watch

let watching = null; // AbortController of the stream being read

function setWatchState(state, text) {
  const badge = $("watch-state");
  badge.setAttribute("data-state", state);
  badge.textContent = text || state;
  $("watch-stop").disabled = state !== "watching" && state !== "connecting";
  $("watch-start").disabled = state === "watching" || state === "connecting";
}

function stopWatching() {
  if (watching) watching.abort();
  watching = null;
}

function showEvent(text, kind) {
  const log = $("watch-log");
  const item = el("li", `${new Date().toLocaleTimeString()} ${text}`, { "data-kind": kind });
  log.appendChild(item);
  log.scrollTop = log.scrollHeight;
}

function handleEvent(block) {
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return; // a keep-alive comment
  const payload = JSON.parse(data.join("\n"));
  if (kind === "subscribed") {
    setWatchState("watching", `watching ${payload.channel}`);
  } else if (kind === "overflow") {
    showError("watch-error", new Error("Stopped: the page fell too far behind the channel."));
  } else if (payload.pub) {
    const offset = payload.pub.offset ? `#${payload.pub.offset} ` : "";
    showEvent(`${offset}${JSON.stringify(payload.pub.data)}`, "publication");
  } else if (payload.join) {
    showEvent(`join ${payload.join.info.user} ${payload.join.info.client}`, "join");
  } else if (payload.leave) {
    showEvent(`leave ${payload.leave.info.user} ${payload.leave.info.client}`, "leave");
  }
}

async function watch(channel) {
  stopWatching();
  const controller = new AbortController();
  watching = controller;
  showError("watch-error", null);
  $("watch-log").replaceChildren();
  setWatchState("connecting", "connecting…");
  try {
    const resp = await fetch(`watch?channel=${encodeURIComponent(channel)}`, {
      signal: controller.signal,
      credentials: "same-origin",
    });
    if (!resp.ok) {
      const body = await resp.json().catch(() => null);
      if (resp.status === 401) showLogin("Your session ended: log in again.");
      throw new AdminError(describeError(body, resp.status), resp.status);
    }
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        handleEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
    if (watching === controller) setWatchState("idle", "stream ended");
  } catch (error) {
    if (controller.signal.aborted) return;
    showError("watch-error", error);
    setWatchState("idle", "stopped");
  } finally {
    if (watching === controller) watching = null;
  }
}

$("watch-form").addEventListener("submit", (event) => {
  event.preventDefault();
  watch($("watch-channel").value.trim());
});

$("watch-stop").addEventListener("click", () => {
  stopWatching();
  setWatchState("idle", "stopped");
});

// --- start: the session cookie is HttpOnly, so ask the server whether it is still good.

(async () => {
  try {
    await call("info", {});
    showDashboard();
  } catch (error) {
    showLogin(error.status === 401 ? "" : error.message);
  }
})();
