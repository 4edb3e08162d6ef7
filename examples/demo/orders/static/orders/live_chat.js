// The live chat in proxy mode: the official centrifuge SDK with no token and no getToken,
// so the gateway authenticates the connection by asking Django (the session cookie goes
// with the WebSocket handshake). Lines are published by the browser itself; Django's
// publish proxy validates and stores each one, and the gateway publishes Django's version.
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("live-chat-config").textContent);
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function setConnection(state, detail) {
    const badge = $("connection");
    badge.dataset.state = state;
    badge.textContent = { connected: "live", connecting: "connecting…", disconnected: "offline" }[state];
    badge.title = detail || "";
  }

  function showLine(line) {
    if (document.querySelector(`#live-chat-log li[data-line-id="${line.id}"]`)) return;
    $("live-chat-log").append(
      el("li", { "data-line-id": String(line.id) }, el("strong", {}, line.author), `: ${line.text}`),
    );
  }

  function showError(text) {
    $("live-chat-error").textContent = text;
  }

  for (const line of config.lines) showLine(line);
  const centrifuge = new Centrifuge(config.socketUrl, { minReconnectDelay: 300, maxReconnectDelay: 5000 });
  centrifuge.on("connecting", (ctx) => setConnection("connecting", `${ctx.code}: ${ctx.reason}`));
  centrifuge.on("connected", (ctx) => setConnection("connected", `client ${ctx.client}`));
  centrifuge.on("disconnected", (ctx) => setConnection("disconnected", `${ctx.code}: ${ctx.reason}`));

  const sub = centrifuge.newSubscription(config.channel);
  sub.on("publication", (ctx) => showLine(ctx.data));
  sub.on("subscribed", () => ($("chat-channel").dataset.state = "subscribed"));
  sub.on("error", (ctx) => showError(`subscription: ${ctx.error.message}`));
  sub.subscribe();
  centrifuge.connect();
  window.heraldLiveChat = { centrifuge, sub };

  $("live-chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("live-chat-input");
    const text = input.value;
    showError("");
    try {
      await sub.publish({ text });
      input.value = "";
    } catch (error) {
      // Django's HeraldProxyError, passed through by the gateway: code and message.
      showError(`refused (${error.code}): ${error.message}`);
      $("live-chat-error").dataset.code = String(error.code);
    }
  });

  $("rpc-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("rpc-status").textContent = "searching…";
    try {
      const result = await centrifuge.rpc("orders.search", { q: $("rpc-query").value });
      $("rpc-results").replaceChildren(
        ...result.data.orders.map((order) =>
          el("li", { "data-order-id": String(order.id) }, `#${order.id} ${order.item} (${order.total}, ${order.status})`),
        ),
      );
      $("rpc-status").textContent = `${result.data.orders.length} found`;
    } catch (error) {
      $("rpc-status").textContent = `failed (${error.code}): ${error.message}`;
    }
  });
})();
