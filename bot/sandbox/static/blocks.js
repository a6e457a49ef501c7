"use strict";
// Block Kit, rendered as Slack shows it. The two tables below are the renderer's coverage: the
// tests read their keys and check every block and element type the app emits is among them.
// Anything else shows a "can't render" placeholder (class `cant-render`), never raw JSON.
(function () {
  const { el, render: mrkdwn, plain } = window.Mrkdwn;
  let serial = 0;

  function text(obj, ctx) {
    if (!obj) return el("span");
    if (obj.type === "mrkdwn") return mrkdwn(obj.text, ctx);
    return el("span", "plain", plain(obj.text || ""));
  }

  function cantRender(kind, type) {
    const node = el("div", "cant-render", `This ${kind} can't be displayed here (type "${type}").`);
    node.dataset.type = String(type);
    return node;
  }

  function element(obj, blockId, ctx) {
    const render = Object.prototype.hasOwnProperty.call(ELEMENTS, obj.type) ? ELEMENTS[obj.type] : null;
    return render ? render(obj, blockId, ctx) : cantRender("element", obj.type);
  }

  function block(obj, ctx) {
    const render = Object.prototype.hasOwnProperty.call(BLOCKS, obj.type) ? BLOCKS[obj.type] : null;
    const node = render ? render(obj, ctx) : cantRender("block", obj.type);
    node.classList.add("block");
    if (obj.block_id) node.dataset.blockId = obj.block_id;
    return node;
  }

  function renderBlocks(blocks, ctx) {
    const root = el("div", "blocks");
    for (const obj of blocks || []) root.appendChild(block(obj, ctx));
    return root;
  }

  // -- inputs: each registers how to read its value into `view.state.values` ------------------
  function register(ctx, blockId, obj, read, check) {
    if (ctx.inputs) ctx.inputs.push({ blockId, actionId: obj.action_id || `a${++serial}`, read, check });
  }

  function dispatch(ctx, blockId, obj, extra) {
    if (ctx.inInput || !ctx.onAction) return;
    ctx.onAction(blockId, Object.assign({}, obj, extra || {}));
  }

  function optionLabel(option) {
    return option.text ? plain(option.text.text || "") : "";
  }

  function button(obj, blockId, ctx) {
    const node = el("button", "btn" + (obj.style ? " btn-" + obj.style : ""), plain(obj.text ? obj.text.text : ""));
    node.type = "button";
    node.dataset.actionId = obj.action_id || "";
    node.addEventListener("click", () => {
      const go = () => {
        node.disabled = true;
        setTimeout(() => (node.disabled = false), 1500);
        dispatch(ctx, blockId, obj);
      };
      if (obj.confirm && ctx.confirm) ctx.confirm(obj.confirm, go);
      else go();
    });
    return node;
  }

  function select(obj, blockId, ctx) {
    const node = el("select", "select");
    node.appendChild(el("option", "", obj.placeholder ? plain(obj.placeholder.text) : "Select an item"));
    node.firstChild.value = "";
    const options = [];
    const add = (parent, option) => {
      const item = el("option", "", optionLabel(option));
      item.value = String(options.length);
      options.push(option);
      parent.appendChild(item);
    };
    for (const option of obj.options || []) add(node, option);
    for (const group of obj.option_groups || []) {
      const optgroup = el("optgroup");
      optgroup.label = plain(group.label ? group.label.text : "");
      for (const option of group.options || []) add(optgroup, option);
      node.appendChild(optgroup);
    }
    const initial = obj.initial_option ? options.findIndex((o) => o.value === obj.initial_option.value) : -1;
    if (initial >= 0) node.value = String(initial);
    const chosen = () => (node.value === "" ? null : options[Number(node.value)]);
    register(ctx, blockId, obj, () => ({ type: obj.type, selected_option: chosen() }), () => (chosen() ? "" : "empty"));
    node.addEventListener("change", () => chosen() && dispatch(ctx, blockId, obj, { selected_option: chosen() }));
    return node;
  }

  function overflow(obj, blockId, ctx) {
    const node = select(Object.assign({}, obj, { placeholder: { type: "plain_text", text: "⋯" } }), blockId, ctx);
    node.classList.add("overflow");
    return node;
  }

  function image(obj) {
    const node = el("span", "image", "🖼 " + (obj.alt_text || "image"));
    node.title = obj.image_url || "";
    return node;
  }

  function textInput(obj, blockId, ctx) {
    const node = el(obj.multiline ? "textarea" : "input", "text-input");
    if (!obj.multiline) node.type = "text";
    if (obj.initial_value) node.value = obj.initial_value;
    if (obj.max_length) node.maxLength = obj.max_length;
    if (obj.placeholder) node.placeholder = plain(obj.placeholder.text);
    node.name = blockId;
    register(ctx, blockId, obj, () => ({ type: obj.type, value: node.value }), () => {
      if (!node.value) return "empty";
      if (obj.min_length && node.value.length < obj.min_length) return `Use at least ${obj.min_length} characters.`;
      return "";
    });
    return node;
  }

  function numberInput(obj, blockId, ctx) {
    const node = el("input", "text-input number-input");
    node.type = "text";
    node.inputMode = obj.is_decimal_allowed ? "decimal" : "numeric";
    node.name = blockId;
    if (obj.initial_value !== undefined) node.value = obj.initial_value;
    register(ctx, blockId, obj, () => ({ type: obj.type, value: node.value.trim() }), () => {
      const raw = node.value.trim();
      if (!raw) return "empty";
      const pattern = obj.is_decimal_allowed ? /^-?\d+(\.\d+)?$/ : /^-?\d+$/;
      if (!pattern.test(raw)) return obj.is_decimal_allowed ? "Enter a number." : "Enter a whole number.";
      const value = Number(raw);
      if (obj.min_value !== undefined && value < Number(obj.min_value)) return `Enter ${obj.min_value} or more.`;
      if (obj.max_value !== undefined && value > Number(obj.max_value)) return `Enter ${obj.max_value} or less.`;
      return "";
    });
    return node;
  }

  function choices(obj, blockId, ctx, multiple) {
    const node = el("div", multiple ? "checkboxes" : "radios");
    const name = `${blockId}-${++serial}`;
    const initial = (multiple ? obj.initial_options || [] : obj.initial_option ? [obj.initial_option] : []).map(
      (o) => o.value,
    );
    const boxes = (obj.options || []).map((option) => {
      const row = el("label", "choice");
      const box = el("input");
      box.type = multiple ? "checkbox" : "radio";
      box.name = name;
      box.checked = initial.includes(option.value);
      box.addEventListener("change", () => {
        const value = picked();
        dispatch(ctx, blockId, obj, multiple ? { selected_options: value } : { selected_option: value[0] });
      });
      row.appendChild(box);
      const label = el("span", "choice-text");
      label.appendChild(text(option.text, ctx));
      if (option.description) label.appendChild(el("div", "choice-description")).appendChild(text(option.description, ctx));
      row.appendChild(label);
      node.appendChild(row);
      return [box, option];
    });
    const picked = () => boxes.filter(([box]) => box.checked).map(([, option]) => option);
    register(
      ctx, blockId, obj,
      () => (multiple ? { type: obj.type, selected_options: picked() } : { type: obj.type, selected_option: picked()[0] || null }),
      () => (picked().length ? "" : "empty"),
    );
    return node;
  }

  // -- blocks ---------------------------------------------------------------------------------
  function header(obj) {
    return el("div", "block-header", plain(obj.text ? obj.text.text : ""));
  }

  function section(obj, ctx) {
    const node = el("div", "block-section");
    const body = node.appendChild(el("div", "section-body"));
    if (obj.text) body.appendChild(text(obj.text, ctx));
    if (obj.fields && obj.fields.length) {
      const fields = body.appendChild(el("div", "section-fields"));
      for (const field of obj.fields) fields.appendChild(el("div", "section-field")).appendChild(text(field, ctx));
    }
    if (obj.accessory) node.appendChild(el("div", "section-accessory")).appendChild(element(obj.accessory, obj.block_id, ctx));
    return node;
  }

  function context(obj, ctx) {
    const node = el("div", "block-context");
    for (const item of obj.elements || []) node.appendChild(element(item, obj.block_id, ctx));
    return node;
  }

  function actions(obj, ctx) {
    const node = el("div", "block-actions");
    for (const item of obj.elements || []) node.appendChild(element(item, obj.block_id, ctx));
    return node;
  }

  function input(obj, ctx) {
    const node = el("div", "block-input");
    const label = node.appendChild(el("label", "input-label", plain(obj.label ? obj.label.text : "")));
    if (obj.optional) label.appendChild(el("span", "optional", " (optional)"));
    const blockId = obj.block_id || `b${++serial}`;
    const start = ctx.inputs ? ctx.inputs.length : 0;
    node.appendChild(element(obj.element || {}, blockId, Object.assign({}, ctx, { inInput: true })));
    for (const entry of (ctx.inputs || []).slice(start)) entry.optional = Boolean(obj.optional);
    if (obj.hint) node.appendChild(el("div", "input-hint", plain(obj.hint.text)));
    const error = node.appendChild(el("div", "input-error"));
    error.dataset.errorFor = blockId;
    if (ctx.errors && ctx.errors[blockId]) error.textContent = ctx.errors[blockId];
    return node;
  }

  function imageBlock(obj, ctx) {
    const node = el("figure", "block-image");
    if (obj.title) node.appendChild(el("figcaption")).appendChild(text(obj.title, ctx));
    node.appendChild(image(obj));
    return node;
  }

  const BLOCKS = {
    header: header,
    section: section,
    context: context,
    divider: () => el("hr", "block-divider"),
    actions: actions,
    input: input,
    image: imageBlock,
  };

  const ELEMENTS = {
    plain_text: (obj, blockId, ctx) => text(obj, ctx),
    mrkdwn: (obj, blockId, ctx) => text(obj, ctx),
    image: image,
    button: button,
    static_select: select,
    overflow: overflow,
    plain_text_input: textInput,
    number_input: numberInput,
    checkboxes: (obj, blockId, ctx) => choices(obj, blockId, ctx, true),
    radio_buttons: (obj, blockId, ctx) => choices(obj, blockId, ctx, false),
  };

  window.BlockKit = { renderBlocks, text, BLOCKS, ELEMENTS };
})();
