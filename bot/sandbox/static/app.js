"use strict";
// The sandbox's Slack client: polls the workspace as the chosen person sees it, renders channels,
// threads, ephemerals, modals and the App Home, and posts what the person does to the sandbox,
// which sends it to the app as a signed Slack request.
(function () {
  const { el } = window.Mrkdwn;
  const { renderBlocks } = window.BlockKit;
  const params = new URLSearchParams(location.search);
  const ui = {
    me: params.get("as") || localStorage.getItem("countersign.as") || "",
    view: { kind: "channel", id: params.get("channel") || "" },
    thread: null, // {channel, ts}
    lastText: "",
    data: null,
    seen: {}, // channel → newest ts seen
    dismissed: new Set(),
    modalKey: "",
    modal: null, // {id, inputs, errors: {blockId: node}}
    highlight: null, // ts of the message a permalink opened
    highlightShown: null,
  };
  const $ = (id) => document.getElementById(id);
  // The server wrote its token into this page; only this page can read it, and the API wants it.
  const token = document.querySelector('meta[name="countersign-token"]').content;
  function api(path, init = {}) {
    const headers = Object.assign({ "X-Countersign-Token": token }, init.headers);
    return fetch(path, Object.assign({}, init, { headers }));
  }

  async function post(path, body) {
    const response = await api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ user: ui.me }, body)),
    });
    const result = await response.json().catch(() => ({ ok: false, notice: `HTTP ${response.status}` }));
    if (result.notice) toast(result.notice);
    if (result.error) toast(result.error);
    setTimeout(poll, 150);
    return result;
  }

  function toast(message) {
    const node = $("toast");
    node.textContent = message;
    node.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (node.hidden = true), 6000);
  }

  function ctxFor(extra) {
    const data = ui.data;
    return Object.assign(
      {
        me: ui.me,
        users: data.users,
        usergroups: data.usergroups,
        channelName: (id) => (data.channels.find((c) => c.id === id) || {}).name,
        openChannel: (id) => openView({ kind: "channel", id }),
        permalink: (href) => permalink(href),
        openMessage: (where) => openMessage(where),
        confirm: (confirm, go) => Modals.confirm(confirm, go, ctxFor({})),
      },
      extra,
    );
  }

  // -- polling ----------------------------------------------------------------------------
  async function poll() {
    const who = ui.me;
    if (!who) return;
    try {
      const response = await api(`/api/state?user=${encodeURIComponent(who)}`, { cache: "no-store" });
      const textBody = await response.text();
      if (who !== ui.me || textBody === ui.lastText) return; // switched people meanwhile, or nothing new
      ui.lastText = textBody;
      ui.data = JSON.parse(textBody);
      render();
    } catch (error) {
      $("connection").hidden = false;
      return;
    }
    $("connection").hidden = true;
  }

  function render() {
    const data = ui.data;
    if (!ui.view.id && ui.view.kind === "channel") ui.view.id = (data.channels[0] || {}).id || "";
    if (!Object.keys(ui.seen).length) {
      for (const channel of data.channels) ui.seen[channel.id] = newest(channel.id);
    }
    renderSwitcher();
    renderSidebar();
    if (ui.view.kind === "home") renderHome();
    else renderChannel();
    renderThread();
    renderModal();
    showHighlight();
  }

  function newest(channelId) {
    const messages = ui.data.messages[channelId] || [];
    return messages.length ? messages[messages.length - 1].ts : "0";
  }

  function openView(view) {
    ui.view = view;
    ui.thread = null;
    ui.highlight = null;
    setSidebar(false);
    if (view.kind === "home") post("/api/home", {});
    render();
  }

  // A link to a message of this workspace (as chat.getPermalink makes them:
  // {workspace url}archives/{channel}/p{ts without its dot}[?thread_ts=…]) opens it here.
  function permalink(href) {
    const base = ui.data && ui.data.team.url;
    if (!base || !href.startsWith(base + "archives/")) return null;
    const url = new URL(href);
    const [, , channel, p] = url.pathname.split("/");
    if (!channel || !/^p\d{7,}$/.test(p || "")) return null;
    const digits = p.slice(1);
    const ts = digits.slice(0, -6) + "." + digits.slice(-6);
    return { channel, ts, thread_ts: url.searchParams.get("thread_ts") };
  }

  function openMessage(where) {
    openView({ kind: "channel", id: where.channel });
    if (where.thread_ts && where.thread_ts !== where.ts) ui.thread = { channel: where.channel, ts: where.thread_ts };
    ui.highlight = where.ts;
    render();
  }

  function showHighlight() {
    if (!ui.highlight) return;
    for (const node of document.querySelectorAll(".message.highlight")) node.classList.remove("highlight");
    const found = [...document.querySelectorAll(".message")].filter((node) => node.dataset.ts === ui.highlight);
    for (const node of found) node.classList.add("highlight");
    if (found.length && ui.highlightShown !== ui.highlight) {
      found[found.length - 1].scrollIntoView({ block: "center" });
      ui.highlightShown = ui.highlight;
    }
  }

  function setSidebar(open) {
    document.querySelector(".frame").classList.toggle("sidebar-open", open);
    $("sidebar-toggle").setAttribute("aria-expanded", String(open));
  }

  // -- the frame ---------------------------------------------------------------------------
  function renderSwitcher() {
    const select = $("as-user");
    if (select.options.length !== ui.data.personas.length) {
      select.textContent = "";
      for (const persona of ui.data.personas) {
        const option = el("option", "", `${persona.name} · ${persona.role}`);
        option.value = persona.id;
        select.appendChild(option);
      }
    }
    select.value = ui.me;
    const me = ui.data.users[ui.me] || {};
    $("me-about").textContent = me.about || "";
  }

  function sidebarItem(label, active, unread, onClick, cls) {
    const item = el("button", "side-item" + (active ? " active" : "") + (unread ? " unread" : "") + (cls ? " " + cls : ""));
    item.type = "button";
    item.appendChild(el("span", "side-label", label));
    if (unread) item.appendChild(el("span", "badge", String(unread)));
    item.addEventListener("click", onClick);
    return item;
  }

  function renderSidebar() {
    const data = ui.data;
    const nav = $("channels");
    nav.textContent = "";
    const unread = (id) => (data.messages[id] || []).filter((m) => m.ts > (ui.seen[id] || "0")).length;
    const section = (title) => nav.appendChild(el("div", "side-section", title));
    section("Channels");
    for (const channel of data.channels.filter((c) => c.kind === "channel")) {
      const active = ui.view.kind === "channel" && ui.view.id === channel.id;
      nav.appendChild(sidebarItem("# " + channel.name, active, active ? 0 : unread(channel.id),
        () => openView({ kind: "channel", id: channel.id }), "channel-" + channel.name));
    }
    section("Direct messages");
    for (const channel of data.channels.filter((c) => c.kind === "dm")) {
      const active = ui.view.kind === "channel" && ui.view.id === channel.id;
      nav.appendChild(sidebarItem("countersign", active, active ? 0 : unread(channel.id),
        () => openView({ kind: "channel", id: channel.id }), "dm"));
    }
    section("Apps");
    nav.appendChild(sidebarItem("countersign · Home", ui.view.kind === "home", 0, () => openView({ kind: "home" }), "app-home"));
  }

  // -- messages ------------------------------------------------------------------------------
  function messageNode(message, channelId, options) {
    const where = { channel: channelId, ts: message.ts, ephemeral: Boolean(message.ephemeral) };
    return Messages.node(message, {
      users: ui.data.users,
      channelId,
      ctx: ctxFor({ onAction: (blockId, element) => post("/api/click", { where, block_id: blockId, element }) }),
      replies: options ? options.replies : 0,
      onReplies: () => {
        ui.thread = { channel: channelId, ts: message.ts };
        render();
      },
      onDismiss: () => {
        ui.dismissed.add(message.ts);
        render();
      },
    });
  }

  function ephemeralsIn(channelId, threadTs) {
    return ui.data.ephemerals
      .filter((e) => e.channel === channelId && (e.thread_ts || null) === threadTs && !ui.dismissed.has(e.ts))
      .map((e) => Object.assign({ ephemeral: true }, e));
  }

  function keepBottom(list, fill) {
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40 || list.dataset.for !== fill.key;
    list.textContent = "";
    fill.run();
    list.dataset.for = fill.key;
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function renderChannel() {
    const data = ui.data;
    const channel = data.channels.find((c) => c.id === ui.view.id) || { id: ui.view.id, name: ui.view.id, kind: "channel" };
    ui.seen[channel.id] = newest(channel.id);
    $("pane-title").textContent = channel.kind === "dm" ? "countersign" : "# " + channel.name;
    $("pane-tabs").hidden = channel.kind !== "dm";
    setTab("messages");
    $("composer").hidden = false;
    $("composer-input").placeholder = channel.kind === "dm" ? "Message countersign" : `Message #${channel.name}`;
    const all = data.messages[channel.id] || [];
    const top = all.filter((m) => !m.thread_ts || m.thread_ts === m.ts || m.broadcast);
    const items = top.concat(ephemeralsIn(channel.id, null)).sort((a, b) => (a.ts < b.ts ? -1 : 1));
    const list = $("messages");
    keepBottom(list, {
      key: channel.id,
      run: () => {
        if (!items.length) list.appendChild(el("div", "empty", "No messages yet. Try the composer below."));
        for (const message of items) {
          const replies = all.filter((m) => m.thread_ts === message.ts && m.ts !== message.ts).length;
          list.appendChild(messageNode(message, channel.id, { replies }));
        }
      },
    });
  }

  function renderThread() {
    const pane = $("thread");
    if (!ui.thread) {
      pane.hidden = true;
      return;
    }
    pane.hidden = false;
    const { channel, ts } = ui.thread;
    const info = ui.data.channels.find((c) => c.id === channel) || { name: channel };
    $("thread-title").textContent = `Thread · #${info.name}`;
    const all = ui.data.messages[channel] || [];
    const items = all.filter((m) => m.ts === ts || m.thread_ts === ts).concat(ephemeralsIn(channel, ts));
    items.sort((a, b) => (a.ts < b.ts ? -1 : 1));
    const list = $("thread-messages");
    keepBottom(list, { key: channel + ts, run: () => items.forEach((m) => list.appendChild(messageNode(m, channel))) });
  }

  function setTab(tab) {
    for (const node of document.querySelectorAll(".tab")) node.classList.toggle("active", node.dataset.tab === tab);
  }

  function renderHome() {
    $("pane-title").textContent = "countersign";
    $("pane-tabs").hidden = false;
    setTab("home");
    $("composer").hidden = true;
    const list = $("messages");
    const home = ui.data.home;
    keepBottom(list, {
      key: "home",
      run: () => {
        if (!home) {
          list.appendChild(el("div", "empty", "Loading the App Home…"));
          return;
        }
        const where = { view_id: home.id };
        const ctx = ctxFor({ onAction: (blockId, element) => post("/api/click", { where, block_id: blockId, element }) });
        list.appendChild(el("div", "home")).appendChild(renderBlocks(home.view.blocks, ctx));
      },
    });
    list.scrollTop = 0;
  }

  // -- modals -------------------------------------------------------------------------------
  function renderModal() {
    const root = $("modal-root");
    const modal = ui.data.modal;
    const key = modal ? modal.id + "@" + modal.hash : "";
    if (key !== ui.modalKey) {
      ui.modalKey = key;
      root.textContent = "";
      ui.modal = modal ? Modals.build(modal, ctxFor, post) : null;
      if (ui.modal) root.appendChild(ui.modal.node);
    }
    if (ui.modal) {
      for (const [blockId, node] of Object.entries(ui.modal.errorNodes)) node.textContent = modal.errors[blockId] || "";
    }
  }

  // -- composer and wiring ---------------------------------------------------------------------
  function wireComposer(form, input, threadTs) {
    const send = async () => {
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      const channel = threadTs ? ui.thread.channel : ui.view.id;
      await post("/api/compose", { channel, text, thread_ts: threadTs ? ui.thread.ts : null });
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        send();
      }
    });
  }

  function start() {
    wireComposer($("composer"), $("composer-input"), false);
    wireComposer($("thread-composer"), $("thread-input"), true);
    $("sidebar-toggle").addEventListener("click", () =>
      setSidebar(!document.querySelector(".frame").classList.contains("sidebar-open")),
    );
    $("thread-close").addEventListener("click", () => {
      ui.thread = null;
      render();
    });
    $("as-user").addEventListener("change", (event) => {
      ui.me = event.target.value;
      localStorage.setItem("countersign.as", ui.me);
      ui.lastText = "";
      ui.thread = null;
      ui.modalKey = "";
      ui.modal = null;
      $("modal-root").textContent = "";
      ui.seen = {};
      ui.dismissed.clear();
      if (ui.view.kind === "home") post("/api/home", {});
      poll();
    });
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => {
        if (tab.dataset.tab === "home") return openView({ kind: "home" });
        const dm = ui.data.channels.find((c) => c.kind === "dm");
        if (dm) openView({ kind: "channel", id: dm.id });
        else toast("No messages with countersign yet.");
      });
    }
    bootstrap();
  }

  async function bootstrap() {
    const personas = await (await api("/api/personas")).json();
    if (!personas.some((p) => p.id === ui.me)) ui.me = personas.length ? personas[0].id : "";
    await poll();
    setInterval(poll, 1000);
  }

  window.addEventListener("DOMContentLoaded", start);
})();
