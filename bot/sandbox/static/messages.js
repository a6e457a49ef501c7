"use strict";
// One message as Slack shows it: avatar, name (with APP for the bot), time, its blocks (or its
// text as mrkdwn when it has none), "(edited)", the thread's reply count; an ephemeral one says
// it is only visible to you and can be dismissed.
(function () {
  const { el, render: mrkdwn } = window.Mrkdwn;

  function avatar(userId, user) {
    const initial = user.is_bot ? "✓" : (user.name || "?")[0].toUpperCase();
    const node = el("div", "avatar" + (user.is_bot ? " avatar-bot" : ""), initial);
    node.style.setProperty("--hue", String([...userId].reduce((sum, c) => sum + c.charCodeAt(0), 0) % 360));
    return node;
  }

  function time(ts) {
    return new Date(Number(ts) * 1000).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
  }

  // options: {users, channelId, ctx, replies, onReplies(), onDismiss()}
  function node(message, options) {
    const user = options.users[message.user] || { name: message.user };
    const root = el("div", "message" + (message.ephemeral ? " ephemeral" : ""));
    root.dataset.ts = message.ts;
    root.dataset.channel = options.channelId;
    root.dataset.user = message.user;
    if (message.ephemeral) {
      const note = root.appendChild(el("div", "ephemeral-note", "👁 Only visible to you"));
      const dismiss = note.appendChild(el("button", "link-button", "Dismiss"));
      dismiss.type = "button";
      dismiss.addEventListener("click", options.onDismiss);
    }
    const row = root.appendChild(el("div", "message-row"));
    row.appendChild(avatar(message.user, user));
    const body = row.appendChild(el("div", "message-body"));
    const meta = body.appendChild(el("div", "message-meta"));
    meta.appendChild(el("span", "author", user.name));
    if (user.is_bot) meta.appendChild(el("span", "app-badge", "APP"));
    meta.appendChild(el("span", "timestamp", time(message.ts)));
    const content = body.appendChild(el("div", "message-content"));
    if (message.blocks && message.blocks.length) content.appendChild(window.BlockKit.renderBlocks(message.blocks, options.ctx));
    else content.appendChild(mrkdwn(message.text, options.ctx));
    if (message.edited) content.appendChild(el("span", "edited", " (edited)"));
    if (options.replies) {
      const label = `${options.replies} ${options.replies === 1 ? "reply" : "replies"}`;
      const link = body.appendChild(el("button", "replies", label));
      link.type = "button";
      link.addEventListener("click", options.onReplies);
    }
    return root;
  }

  window.Messages = { node, time };
})();
