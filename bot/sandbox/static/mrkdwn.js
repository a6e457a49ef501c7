"use strict";
// Slack's mrkdwn, rendered into DOM nodes (never innerHTML, so untrusted text can't become markup):
// *bold*, _italic_, ~strike~, `code`, ```code blocks```, > quotes, <links|label>, <@U…>, <#C…>,
// <!date^UNIX^{format}|fallback>, <!here>, <!subteam^S…>, :emoji: and Slack's &amp; &lt; &gt; escapes.
(function () {
  const EMOJI = {
    alarm_clock: "⏰", arrow_forward: "▶️", eyes: "👀", gear: "⚙️", heavy_check_mark: "✔️",
    heavy_multiplication_x: "✖️", hourglass: "⌛", hourglass_flowing_sand: "⏳", large_green_circle: "🟢",
    large_orange_circle: "🟠", large_yellow_circle: "🟡", lock: "🔒", no_entry: "⛔", no_entry_sign: "🚫",
    pause_button: "⏸️", pencil2: "✏️", raised_hand: "✋", red_circle: "🔴", repeat: "🔁", robot_face: "🤖",
    point_right: "👉", rotating_light: "🚨", tada: "🎉", thinking_face: "🤔", warning: "⚠️", white_check_mark: "✅",
    white_circle: "⚪", x: "❌", bell: "🔔", mag: "🔍", wave: "👋", rocket: "🚀", arrow_up: "⬆️",
    arrow_down: "⬇️", information_source: "ℹ️", memo: "📝", package: "📦", money_with_wings: "💸",
    triangular_flag_on_post: "🚩", busts_in_silhouette: "👥", clipboard: "📋", hammer_and_wrench: "🛠️",
    ballot_box_with_check: "☑️", key: "🔑", leftwards_arrow_with_hook: "↩️", outbox_tray: "📤", scroll: "📜",
    speech_balloon: "💬", twisted_rightwards_arrows: "🔀",
  };
  const ENTITIES = { "&amp;": "&", "&lt;": "<", "&gt;": ">" };
  const INLINE = new RegExp(
    [
      "<([^<>\\n]+)>", // 1: <token>
      "`([^`\\n]+)`", // 2: code
      "(?<![\\p{L}\\p{N}*])\\*(?=\\S)([^*\\n]+?)\\*(?![\\p{L}\\p{N}*])", // 3: bold
      "(?<![\\p{L}\\p{N}_])_(?=\\S)([^_\\n]+?)_(?![\\p{L}\\p{N}_])", // 4: italic
      "(?<![\\p{L}\\p{N}~])~(?=\\S)([^~\\n]+?)~(?![\\p{L}\\p{N}~])", // 5: strike
      ":([a-z0-9_+-]+):", // 6: emoji
    ].join("|"),
    "gu",
  );
  const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December"];
  const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

  function decode(text) {
    return String(text).replace(/&(amp|lt|gt);/g, (m) => ENTITIES[m]);
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function emoji(name) {
    return Object.prototype.hasOwnProperty.call(EMOJI, name) ? EMOJI[name] : null;
  }

  // Plain text as Slack shows it: literal, except :emoji: shortcodes.
  function plain(text) {
    return String(text).replace(/:([a-z0-9_+-]+):/g, (m, name) => emoji(name) || m);
  }

  function ordinal(n) {
    const s = ["th", "st", "nd", "rd"];
    const v = n % 100;
    return n + (s[(v - 20) % 10] || s[v] || s[0]);
  }

  function dayDiff(date, now) {
    const a = new Date(date.getFullYear(), date.getMonth(), date.getDate());
    const b = new Date(now.getFullYear(), now.getMonth(), now.getDate());
    return Math.round((a - b) / 86400000);
  }

  function ago(date, now) {
    const seconds = Math.round((date - now) / 1000);
    const abs = Math.abs(seconds);
    const [n, unit] = abs < 60 ? [abs, "second"] : abs < 3600 ? [Math.round(abs / 60), "minute"]
      : abs < 86400 ? [Math.round(abs / 3600), "hour"] : [Math.round(abs / 86400), "day"];
    const phrase = `${n} ${unit}${n === 1 ? "" : "s"}`;
    return seconds < 0 ? `${phrase} ago` : `in ${phrase}`;
  }

  // Slack's date tokens, in the reader's own time zone.
  function formatDate(unix, format, fallback, now) {
    const date = new Date(Number(unix) * 1000);
    if (!Number.isFinite(date.getTime())) return fallback;
    now = now || new Date();
    const y = date.getFullYear();
    const pretty = (plainDate) => {
      const diff = dayDiff(date, now);
      return diff === 0 ? "today" : diff === -1 ? "yesterday" : diff === 1 ? "tomorrow" : plainDate;
    };
    const long = `${DAYS[date.getDay()]}, ${MONTHS[date.getMonth()]} ${ordinal(date.getDate())}, ${y}`;
    const full = `${MONTHS[date.getMonth()]} ${ordinal(date.getDate())}, ${y}`;
    const short = `${MONTHS[date.getMonth()].slice(0, 3)} ${date.getDate()}, ${y}`;
    const pad = (n) => String(n).padStart(2, "0");
    const tokens = {
      date_num: () => `${y}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`,
      date: () => full,
      date_short: () => short,
      date_long: () => long,
      date_pretty: () => pretty(full),
      date_short_pretty: () => pretty(short),
      date_long_pretty: () => pretty(long),
      time: () => date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" }),
      time_secs: () => date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit", second: "2-digit" }),
      ago: () => ago(date, now),
    };
    return String(format).replace(/\{(\w+)\}/g, (m, key) => (tokens[key] ? tokens[key]() : m));
  }

  function token(body, parent, ctx) {
    const bar = body.indexOf("|");
    const target = bar === -1 ? body : body.slice(0, bar);
    const label = bar === -1 ? "" : decode(body.slice(bar + 1));
    if (target.startsWith("@")) {
      const id = target.slice(1);
      const user = (ctx.users || {})[id];
      const node = el("span", "mention", "@" + (user ? user.name : label || id));
      node.dataset.user = id;
      if (id === ctx.me) node.classList.add("mention-me");
      parent.appendChild(node);
    } else if (target.startsWith("#")) {
      const id = target.slice(1);
      const name = (ctx.channelName && ctx.channelName(id)) || label || id;
      const link = el("a", "channel-link", "#" + name);
      link.href = "#";
      link.addEventListener("click", (event) => {
        event.preventDefault();
        if (ctx.openChannel) ctx.openChannel(id);
      });
      parent.appendChild(link);
    } else if (target.startsWith("!date^")) {
      const [, unix, format] = target.split("^");
      const node = el("span", "date", formatDate(unix, format || "{date}", label || unix));
      node.title = new Date(Number(unix) * 1000).toString();
      parent.appendChild(node);
    } else if (target.startsWith("!subteam^")) {
      const id = target.slice("!subteam^".length);
      const handle = (ctx.usergroups || {})[id];
      parent.appendChild(el("span", "mention", handle ? "@" + handle : label || "@group"));
    } else if (["!here", "!channel", "!everyone"].includes(target)) {
      parent.appendChild(el("span", "mention mention-me", "@" + target.slice(1)));
    } else if (/^(https?:|mailto:)/i.test(target)) {
      const href = decode(target);
      const link = el("a", "link", label || href);
      link.href = href;
      const message = ctx.permalink && ctx.permalink(href); // a message of this workspace: opened here
      if (message) {
        link.classList.add("permalink");
        link.addEventListener("click", (event) => {
          event.preventDefault();
          ctx.openMessage(message);
        });
      } else {
        link.target = "_blank";
        link.rel = "noopener noreferrer";
      }
      parent.appendChild(link);
    } else {
      parent.appendChild(document.createTextNode(label || decode(target)));
    }
  }

  function inline(text, parent, ctx) {
    let last = 0;
    INLINE.lastIndex = 0;
    const matches = [...text.matchAll(INLINE)];
    for (const m of matches) {
      if (m.index > last) parent.appendChild(document.createTextNode(decode(text.slice(last, m.index))));
      last = m.index + m[0].length;
      if (m[1] !== undefined) token(m[1], parent, ctx);
      else if (m[2] !== undefined) parent.appendChild(el("code", "inline-code", decode(m[2])));
      else if (m[6] !== undefined) {
        const char = emoji(m[6]);
        parent.appendChild(char ? el("span", "emoji", char) : document.createTextNode(m[0]));
        if (char) parent.lastChild.title = m[0];
      } else {
        const tag = m[3] !== undefined ? "b" : m[4] !== undefined ? "i" : "s";
        const node = el(tag);
        inline(m[3] ?? m[4] ?? m[5], node, ctx);
        parent.appendChild(node);
      }
    }
    if (last < text.length) parent.appendChild(document.createTextNode(decode(text.slice(last))));
  }

  function lines(text, parent, ctx) {
    let quote = null;
    let needBreak = false;
    for (const line of text.split("\n")) {
      const quoted = /^(?:>|&gt;) ?(.*)$/.exec(line);
      if (quoted) {
        if (!quote) {
          quote = el("blockquote");
          parent.appendChild(quote);
          needBreak = false;
        } else {
          quote.appendChild(el("br"));
        }
        inline(quoted[1], quote, ctx);
        continue;
      }
      if (quote) {
        quote = null;
        needBreak = false;
      }
      if (needBreak) parent.appendChild(el("br"));
      inline(line, parent, ctx);
      needBreak = true;
    }
  }

  function render(text, ctx) {
    const root = el("span", "mrkdwn");
    const parts = String(text || "").split("```");
    parts.forEach((part, i) => {
      const fenced = i % 2 === 1 && i < parts.length - 1;
      if (fenced) {
        root.appendChild(el("pre", "code-block", decode(part.replace(/^\n/, "").replace(/\n$/, ""))));
        return;
      }
      let body = i % 2 === 1 ? "```" + part : part; // an unclosed fence is plain text
      if (i > 0) body = body.replace(/^\n/, "");
      if (i < parts.length - 1) body = body.replace(/\n$/, "");
      if (body) lines(body, root, ctx || {});
    });
    return root;
  }

  window.Mrkdwn = { render, plain, decode, formatDate, el };
})();
