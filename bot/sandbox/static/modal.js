"use strict";
// Modals as Slack shows them: title, close (×), the view's blocks with inline errors, Cancel and
// Submit; Slack's own check of required fields before anything is sent; and the confirm dialog
// of a button that asks "are you sure?".
(function () {
  const { el, plain } = window.Mrkdwn;
  const REQUIRED = "Please complete this required field.";

  // modal: {id, hash, view, errors}; ctxFor(extra) → a render context; send(path, body) → Promise.
  function build(modal, ctxFor, send) {
    const view = modal.view;
    const inputs = [];
    const overlay = el("div", "overlay");
    const box = overlay.appendChild(el("form", "modal"));
    box.noValidate = true;
    box.dataset.viewId = modal.id;
    const head = box.appendChild(el("div", "modal-head"));
    head.appendChild(el("div", "modal-title", plain(view.title ? view.title.text : "")));
    const x = head.appendChild(el("button", "modal-x", "×"));
    x.type = "button";
    x.setAttribute("aria-label", "Close");
    const ctx = ctxFor({
      inputs,
      errors: modal.errors,
      onAction: (blockId, element) => send("/api/click", { where: { view_id: modal.id }, block_id: blockId, element }),
    });
    box.appendChild(el("div", "modal-body")).appendChild(window.BlockKit.renderBlocks(view.blocks, ctx));
    const foot = box.appendChild(el("div", "modal-foot"));
    const close = foot.appendChild(el("button", "btn", plain(view.close ? view.close.text : "Cancel")));
    close.type = "button";
    const submit = view.submit ? foot.appendChild(el("button", "btn btn-primary", plain(view.submit.text))) : null;
    const errorNodes = {};
    for (const node of box.querySelectorAll("[data-error-for]")) errorNodes[node.dataset.errorFor] = node;
    const dismiss = () => send("/api/close", { view_id: modal.id });
    x.addEventListener("click", dismiss);
    close.addEventListener("click", dismiss);
    box.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = {};
      let problems = 0;
      for (const input of inputs) {
        const problem = input.check();
        const shown = problem === "empty" ? (input.optional ? "" : REQUIRED) : problem;
        if (errorNodes[input.blockId]) errorNodes[input.blockId].textContent = shown;
        if (shown) problems += 1;
        (values[input.blockId] = values[input.blockId] || {})[input.actionId] = input.read();
      }
      if (problems || !submit) return; // Slack checks required fields before it sends anything
      submit.disabled = true;
      await send("/api/submit", { view_id: modal.id, values });
      submit.disabled = false;
    });
    return { node: overlay, errorNodes };
  }

  function confirm(dialog, onConfirm, ctx) {
    const overlay = el("div", "overlay confirm");
    const box = overlay.appendChild(el("div", "modal modal-small"));
    const title = dialog.title ? dialog.title.text : "Are you sure?";
    box.appendChild(el("div", "modal-head")).appendChild(el("div", "modal-title", plain(title)));
    box.appendChild(el("div", "modal-body")).appendChild(window.BlockKit.text(dialog.text, ctx));
    const foot = box.appendChild(el("div", "modal-foot"));
    const deny = foot.appendChild(el("button", "btn", plain(dialog.deny ? dialog.deny.text : "Cancel")));
    const style = dialog.style === "danger" ? "btn-danger" : "btn-primary";
    const ok = foot.appendChild(el("button", "btn " + style, plain(dialog.confirm ? dialog.confirm.text : "Yes")));
    deny.type = ok.type = "button";
    deny.addEventListener("click", () => overlay.remove());
    ok.addEventListener("click", () => {
      overlay.remove();
      onConfirm();
    });
    document.body.appendChild(overlay);
  }

  window.Modals = { build, confirm };
})();
