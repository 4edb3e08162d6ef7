// The live dashboard: one connection to the Herald gateway through the official
// centrifuge SDK, one subscription per channel the token grants, and the page updated
// from events. Whenever events may have been lost (first subscribe, or a reconnect the
// gateway could not recover), the page reloads its state from Django instead.
"use strict";

(() => {
  const { UnauthorizedError } = Centrifuge;
  const config = JSON.parse(document.getElementById("demo-config").textContent);
  const initialState = JSON.parse(document.getElementById("demo-state").textContent);
  const SHOWN_ORDERS = 12;
  const TYPING_EVERY_MS = 2000;
  const TYPING_SHOWN_MS = 3500;

  const $ = (id) => document.getElementById(id);
  const stats = { tokenFetches: 0, recoveries: 0, resyncs: 0, events: 0 };
  const orders = new Map(); // id -> order, the most recent ones
  const subscriptions = new Map(); // channel -> state shown in the connection panel
  const typing = new Map(); // user name -> timer
  let paidCount = 0;
  let pendingCount = 0;
  let reloading = null; // the state reload in flight; events wait for it
  const held = [];

  // ---- HTTP ------------------------------------------------------------------------

  function csrfToken() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body ?? {}),
    });
  }

  function loggedOut() {
    window.location.assign(config.loginUrl);
    return new UnauthorizedError("logged out");
  }

  // Called for the first connection and by the SDK whenever it needs a fresh token
  // (before the current one expires, or after the gateway refused it).
  async function fetchToken() {
    stats.tokenFetches += 1;
    renderStats();
    const response = await post(config.tokenUrl);
    // Logged out: stop instead of retrying forever. Other errors are retried with backoff.
    if (response.status === 401 || response.status === 403) throw loggedOut();
    if (!response.ok) throw new Error(`token endpoint answered ${response.status}`);
    return response.json();
  }

  // The token's claims are signed, not secret: its "channels" claim is the grant list.
  function grantedChannels(token) {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    return Array.isArray(claims.channels) ? claims.channels : [];
  }

  // ---- rendering -------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) node.append(child);
    return node;
  }

  function time(iso) {
    return new Date(iso || Date.now()).toLocaleTimeString([], { hour12: false });
  }

  function renderStats() {
    $("paid-count").textContent = paidCount;
    $("pending-count").textContent = pendingCount;
    $("event-count").textContent = stats.events;
    $("recoveries").textContent = stats.recoveries;
    $("resyncs").textContent = stats.resyncs;
    $("token-fetches").textContent = stats.tokenFetches;
  }

  function renderOrders(flashId) {
    const rows = [...orders.values()].sort((a, b) => b.id - a.id).slice(0, SHOWN_ORDERS);
    orders.clear();
    for (const order of rows) orders.set(order.id, order);
    $("orders").tBodies[0].replaceChildren(
      ...rows.map((order) =>
        el(
          "tr",
          {
            "data-order-id": String(order.id),
            "data-status": order.status,
            class: order.id === flashId ? "flash" : "",
          },
          el("td", {}, `#${order.id}`),
          el("td", {}, order.item),
          el("td", { class: "num" }, order.total),
          el("td", {}, order.created_by),
          el("td", {}, el("span", { class: `status ${order.status}` }, order.status)),
        ),
      ),
    );
  }

  function activity(text, kind) {
    const list = $("activity");
    list.prepend(el("li", { class: kind || "" }, el("time", {}, time()), " ", text));
    while (list.children.length > 30) list.lastElementChild.remove();
  }

  function toast(text) {
    const node = el("div", { class: "toast" }, text);
    $("toasts").append(node);
    setTimeout(() => node.remove(), 6000);
  }

  function setConnection(state, detail) {
    const badge = $("connection");
    badge.dataset.state = state;
    badge.textContent = { connected: "live", connecting: "connecting…", disconnected: "offline" }[state];
    badge.title = detail || "";
  }

  function renderSubscriptions() {
    $("subscriptions").replaceChildren(
      ...[...subscriptions].map(([channel, state]) =>
        el(
          "div",
          { class: `sub ${state}`, "data-channel": channel },
          el("code", {}, channel),
          el("span", { class: "state" }, state),
        ),
      ),
    );
  }

  // ---- state -----------------------------------------------------------------------

  function applyState(state) {
    orders.clear();
    for (const order of state.orders) orders.set(order.id, order);
    paidCount = state.paid_count;
    pendingCount = state.pending_count;
    renderOrders();
    renderStats();
  }

  // Events that arrive while the state is loading wait, then apply on top of it: they
  // only ever move orders forward, so applying one twice changes nothing.
  function reloadState(reason) {
    if (reloading) return reloading;
    reloading = (async () => {
      try {
        const response = await fetch(config.stateUrl, { credentials: "same-origin" });
        if (response.status === 401 || response.status === 403) throw loggedOut();
        if (!response.ok) throw new Error(`state endpoint answered ${response.status}`);
        applyState(await response.json());
        if (reason) activity(reason, "warn");
      } catch (error) {
        activity(`Could not reload the state: ${error.message}`, "warn");
      } finally {
        reloading = null;
        for (const data of held.splice(0)) apply(data);
      }
    })();
    return reloading;
  }

  // ---- events ----------------------------------------------------------------------

  function orderCreated(order) {
    if (orders.has(order.id)) return;
    orders.set(order.id, order);
    if (order.status === "pending") pendingCount += 1;
    renderOrders(order.id);
    activity(`Order #${order.id} placed by ${order.created_by}: ${order.item}`);
  }

  function orderCompleted(order) {
    const known = orders.get(order.id);
    if (known && known.status === "paid") return; // already shown (state reload, or twice)
    if (known && known.status === "pending") pendingCount = Math.max(0, pendingCount - 1);
    orders.set(order.id, order);
    paidCount = Math.max(paidCount, order.paid_count);
    renderOrders(order.id);
    activity(`Order #${order.id} paid: ${order.total}`, "paid");
  }

  function chatTyping(payload) {
    if (payload.user_id === config.user.id) return;
    clearTimeout(typing.get(payload.name));
    typing.set(
      payload.name,
      setTimeout(() => {
        typing.delete(payload.name);
        renderTyping();
      }, TYPING_SHOWN_MS),
    );
    renderTyping();
  }

  function renderTyping() {
    const names = [...typing.keys()];
    $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
  }

  function chatMessage(payload) {
    clearTimeout(typing.get(payload.name));
    typing.delete(payload.name);
    renderTyping();
    const log = $("chat-log");
    log.append(el("li", {}, el("strong", {}, payload.name), `: ${payload.text}`));
    while (log.children.length > 20) log.firstElementChild.remove();
  }

  function apply(data) {
    const { type, payload } = data || {};
    if (type === "order.created") orderCreated(payload);
    else if (type === "order.completed") orderCompleted(payload);
    else if (type === "notification") {
      toast(payload.text);
      activity(payload.text, "note");
    } else if (type === "chat.typing") chatTyping(payload);
    else if (type === "chat.message") chatMessage(payload);
    renderStats();
  }

  function onPublication(ctx) {
    stats.events += 1;
    if (reloading) held.push(ctx.data);
    else apply(ctx.data);
  }

  function onSubscribed(ctx) {
    subscriptions.set(ctx.channel, ctx.wasRecovering && ctx.recovered ? "recovered" : "subscribed");
    renderSubscriptions();
    if (ctx.channel !== config.channels.orders) return;
    if (ctx.wasRecovering && ctx.recovered) {
      // The missed publications follow this event, in order.
      stats.recoveries += 1;
      activity("Reconnected: missed events recovered from the gateway's history");
    } else if (ctx.wasRecovering) {
      stats.resyncs += 1;
      reloadState("Reconnected, but the gateway had lost the history (recovered: false): state reloaded");
    } else {
      // First subscribe: catch up with whatever happened since the page was rendered.
      reloadState();
    }
    renderStats();
  }

  // ---- wiring ----------------------------------------------------------------------

  async function connect() {
    let first;
    try {
      first = await fetchToken();
    } catch (error) {
      if (error instanceof UnauthorizedError) return;
      setConnection("disconnected", error.message);
      setTimeout(connect, 3000);
      return;
    }
    $("socket-url").textContent = first.socket_url;
    const options = {
      token: first.token,
      getToken: async () => (await fetchToken()).token,
      minReconnectDelay: 300,
      maxReconnectDelay: 5000,
    };
    // ?transport=sse or ?transport=http_stream: the fallback transports the SDK uses where
    // WebSockets are blocked, on the same gateway (its "sse" / "http_stream" options).
    const forced = new URLSearchParams(window.location.search).get("transport");
    let endpoint = first.socket_url;
    if (forced === "sse" || forced === "http_stream") {
      const base = first.socket_url.replace(/^ws/, "http").replace(/\/connection\/websocket\/?$/, "");
      endpoint = [{ transport: forced, endpoint: `${base}/connection/${forced}` }];
      options.emulationEndpoint = `${base}/emulation`;
    }
    const centrifuge = new Centrifuge(endpoint, options);
    centrifuge.on("connecting", (ctx) => setConnection("connecting", `${ctx.code}: ${ctx.reason}`));
    centrifuge.on("connected", (ctx) => {
      setConnection("connected", `client ${ctx.client}`);
      activity(`Connected to the gateway (${ctx.transport})`);
    });
    centrifuge.on("disconnected", (ctx) => setConnection("disconnected", `${ctx.code}: ${ctx.reason}`));
    for (const channel of grantedChannels(first.token)) {
      const sub = centrifuge.newSubscription(channel);
      sub.on("publication", onPublication);
      sub.on("subscribed", onSubscribed);
      sub.on("subscribing", () => {
        subscriptions.set(channel, "subscribing");
        renderSubscriptions();
      });
      sub.on("error", (ctx) => activity(`Subscription to ${channel} failed: ${ctx.error.message}`, "warn"));
      subscriptions.set(channel, "subscribing");
      sub.subscribe();
    }
    renderSubscriptions();
    centrifuge.connect();
    window.heraldDemo = { centrifuge, stats };
  }

  $("new-order").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const response = await post(config.ordersUrl);
      if (response.status === 401 || response.status === 403) throw loggedOut();
      if (!response.ok) throw new Error(`answered ${response.status}`);
      // Shown at once from the answer too, so the page is right even without the gateway.
      orderCreated(await response.json());
      renderStats();
    } catch (error) {
      activity(`Could not create an order: ${error.message}`, "warn");
    } finally {
      button.disabled = false;
    }
  });

  let lastTyping = 0;
  $("chat-input").addEventListener("input", () => {
    const now = Date.now();
    if (now - lastTyping < TYPING_EVERY_MS) return;
    lastTyping = now;
    post(config.chatUrl, { kind: "typing" }).catch(() => {});
  });
  $("chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    lastTyping = 0;
    const response = await post(config.chatUrl, { kind: "message", text });
    if (!response.ok) activity(`Message not sent (${response.status})`, "warn");
  });

  applyState(initialState);
  setConnection("connecting", "fetching a token");
  connect();
})();
