// nbmodels widget: one job ("job") or every job with a submit form ("panel").
//
// Python owns the truth: the `state` trait always holds a full snapshot (never a delta), with
// every text already formatted. This file only draws it. Rules kept here:
//   - server-provided text goes into the DOM with textContent, never innerHTML;
//   - buttons are real <button>s that send small messages ({type: "action" | "submit" | "poll"});
//   - render() returns a cleanup function that removes every listener and timer it created.

const POLL_CHECK_MS = 1000; // how often the backstop looks at the clock
const POLL_IDLE_MS = 4000; // no update for this long while a job runs: ask Python for the state
const FILES_SHOWN = 8; // file rows shown before "Show all"
const COPIED_MS = 1500;

const LABELS = { pause: "Pause", resume: "Resume", cancel: "Cancel", retry: "Retry" };
const FITS = new Set(["fits", "tight", "does not fit", "unknown"]);
// An unknown size animates the bar only while something is happening (never on a failed job).
const MOVING = new Set(["queued", "resolving", "downloading", "verifying"]);
let uid = 0;

function h(tag, className, attrs) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function setText(node, text) {
  const value = text == null ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

function percent(fraction) {
  return fraction == null ? null : Math.max(0, Math.min(100, Math.floor(fraction * 100)));
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_err) {
    const area = h("textarea", "nbm-offscreen", { readonly: "", "aria-hidden": "true" });
    area.value = text;
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (_err2) {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

/** A progress bar: role=progressbar with aria-valuenow; indeterminate while the size is unknown. */
class Bar {
  constructor(className, label) {
    this.el = h("div", `nbm-bar ${className}`, {
      role: "progressbar",
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-label": label,
      "data-testid": "nbm-bar",
    });
    this.fill = h("div", "nbm-bar-fill");
    this.el.appendChild(this.fill);
  }

  update(fraction, text, status, stalled) {
    const pct = percent(fraction);
    if (pct == null) {
      this.el.removeAttribute("aria-valuenow");
      this.el.classList.toggle("nbm-indeterminate", MOVING.has(status));
      this.fill.style.width = MOVING.has(status) ? "" : "0";
    } else {
      this.el.setAttribute("aria-valuenow", String(pct));
      this.el.classList.remove("nbm-indeterminate");
      this.fill.style.width = `${fraction * 100}%`;
    }
    this.el.setAttribute("aria-valuetext", text || "");
    this.el.dataset.status = status;
    this.el.dataset.stalled = stalled ? "true" : "false";
  }
}

/** One job: header, model card, bar, text, buttons, file rows, error detail, final path. */
class JobCard {
  constructor(send, tag) {
    this.send = send;
    this.state = null;
    this.showAll = false;
    this.timers = new Set();
    this.actionsKey = null;
    this.rows = new Map();

    this.el = h(tag || "section", "nbm-job", { "data-testid": "nbm-job" });
    const head = h("div", "nbm-head");
    this.name = h("span", "nbm-name", { "data-testid": "nbm-name" });
    this.badge = h("span", "nbm-badge", { "data-testid": "nbm-status", "aria-live": "polite" });
    head.append(this.name, this.badge);
    this.ref = h("div", "nbm-ref", { "data-testid": "nbm-ref" });
    // The model card (read from the file header while the download runs): one line + fit badge.
    this.card = h("div", "nbm-card", { "data-testid": "model-card" });
    this.cardText = h("span", "nbm-card-text", { "data-testid": "model-card-text" });
    this.cardFit = h("span", "nbm-badge nbm-badge-small nbm-fit", { "data-testid": "model-card-fit" });
    this.card.append(this.cardText, this.cardFit);
    this.card.hidden = true;
    this.bar = new Bar("nbm-bar-job", "Download progress");
    const line = h("div", "nbm-line");
    this.text = h("span", "nbm-text", { "data-testid": "nbm-text" });
    this.actions = h("div", "nbm-actions", { role: "group", "aria-label": "Download controls" });
    line.append(this.text, this.actions);
    this.files = h("ul", "nbm-files", { "data-testid": "nbm-files", "aria-label": "Files" });
    this.more = h("button", "nbm-link", { type: "button", "data-testid": "nbm-show-all" });
    this.more.dataset.action = "toggle-files";
    this.error = h("details", "nbm-error", { "data-testid": "nbm-error" });
    this.errorSummary = h("summary", "nbm-error-summary");
    this.errorMessage = h("p", "nbm-error-message", { "data-testid": "nbm-error-message" });
    this.errorHint = h("p", "nbm-error-hint", { "data-testid": "nbm-error-hint" });
    this.error.append(this.errorSummary, this.errorMessage, this.errorHint);
    this.pathRow = h("div", "nbm-path", { "data-testid": "nbm-path" });
    this.pathText = h("code", "nbm-path-text", { "data-testid": "nbm-path-text" });
    this.copy = h("button", "nbm-btn nbm-btn-copy", { type: "button", "data-testid": "nbm-copy" });
    this.copy.dataset.action = "copy";
    this.copy.textContent = "Copy path";
    this.pathRow.append(this.pathText, this.copy);
    this.notice = h("p", "nbm-notice", { "data-testid": "nbm-job-notice", role: "status" });
    this.el.append(head, this.ref, this.card, this.bar.el, line, this.files, this.more, this.error);
    this.el.append(this.pathRow, this.notice);

    this.onClick = (event) => this.click(event);
    this.el.addEventListener("click", this.onClick);
  }

  click(event) {
    const button = event.target.closest("button[data-action]");
    if (!button || !this.el.contains(button) || !this.state) return;
    const action = button.dataset.action;
    if (action === "toggle-files") {
      this.showAll = !this.showAll;
      this.drawFiles(this.state);
    } else if (action === "copy") {
      copyText(this.state.path || "").then((ok) => {
        setText(this.copy, ok ? "Copied" : "Copy failed");
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          setText(this.copy, "Copy path");
        }, COPIED_MS);
        this.timers.add(timer);
      });
    } else if (LABELS[action]) {
      this.send({ type: "action", action, job_id: this.state.job_id });
    }
  }

  update(s) {
    this.state = s;
    const el = this.el;
    el.dataset.status = s.status || "";
    el.dataset.jobId = s.job_id || "";
    el.dataset.downloaded = String(s.downloaded_bytes || 0);
    el.dataset.stalled = s.stalled ? "true" : "false";
    el.dataset.done = s.done ? "true" : "false";
    setText(this.name, s.name || s.ref);
    setText(this.badge, s.badge || s.status_label);
    this.badge.dataset.status = s.badge_status || s.status;
    setText(this.ref, s.ref);
    this.ref.hidden = !s.ref || s.ref === s.name;
    this.ref.title = s.ref || "";
    this.drawCard(s);
    this.bar.el.setAttribute("aria-label", `Download progress of ${s.name || s.ref}`);
    this.bar.update(s.fraction, s.text, s.status, s.stalled);
    setText(this.text, s.text);
    this.drawActions(s);
    this.drawFiles(s);
    this.drawError(s);
    const ok = s.status === "completed" || s.status === "already_downloaded";
    this.pathRow.hidden = !(ok && s.path);
    setText(this.pathText, ok ? s.path_display || s.path : "");
    this.pathText.title = ok && s.path ? s.path : "";
    this.copy.setAttribute("aria-label", `Copy the path of ${s.name || s.ref}`);
    setText(this.notice, s.notice || "");
    this.notice.hidden = !s.notice;
  }

  drawCard(s) {
    const card = s.card && typeof s.card === "object" ? s.card : null;
    this.card.hidden = !card;
    this.el.dataset.card = card ? "true" : "false";
    if (!card) {
      delete this.card.dataset.fit;
      this.card.removeAttribute("title");
      return;
    }
    const fit = FITS.has(card.fit) ? card.fit : "unknown";
    this.card.dataset.fit = fit;
    this.cardFit.dataset.fit = fit;
    setText(this.cardText, card.text || card.summary);
    setText(this.cardFit, card.fit_text);
    this.cardFit.hidden = !card.fit_text;
    this.card.title = card.title ? String(card.title) : String(card.summary || "");
  }

  drawActions(s) {
    const actions = Array.isArray(s.actions) ? s.actions.filter((a) => LABELS[a]) : [];
    const key = actions.join(",");
    if (key === this.actionsKey) return;
    this.actionsKey = key;
    const hadFocus = this.actions.contains(document.activeElement);
    const buttons = actions.map((action) => {
      const b = h("button", `nbm-btn nbm-btn-${action}`, {
        type: "button",
        "data-testid": `nbm-${action}`,
        "aria-label": `${LABELS[action]} ${s.name || s.ref}`,
      });
      b.dataset.action = action;
      b.textContent = LABELS[action];
      return b;
    });
    this.actions.replaceChildren(...buttons);
    // Keep keyboard users in place: Pause becomes Resume under their focus.
    if (hadFocus && buttons.length) buttons[0].focus();
  }

  drawFiles(s) {
    const files = Array.isArray(s.files) ? s.files : [];
    const many = files.length > FILES_SHOWN;
    const shown = files.length > 1 ? (this.showAll || !many ? files : files.slice(0, FILES_SHOWN)) : [];
    this.files.hidden = shown.length === 0;
    const keep = new Set();
    shown.forEach((f, i) => {
      const key = `${i}\u0000${f.name}`;
      keep.add(key);
      let row = this.rows.get(key);
      if (!row) {
        row = this.makeRow();
        this.rows.set(key, row);
      }
      if (this.files.children[i] !== row.el) this.files.insertBefore(row.el, this.files.children[i] || null);
      row.el.dataset.status = f.status || "";
      setText(row.name, f.name);
      row.name.title = f.path || f.name || "";
      setText(row.badge, f.badge || f.status_label || f.status);
      row.badge.dataset.status = f.badge_status || f.status || "";
      row.bar.el.setAttribute("aria-label", `Progress of ${f.name}`);
      row.bar.update(f.fraction, f.text, f.status, f.stalled);
      setText(row.text, f.error ? f.error : f.text);
    });
    for (const [key, row] of this.rows) {
      if (!keep.has(key)) {
        row.el.remove();
        this.rows.delete(key);
      }
    }
    this.more.hidden = !(files.length > 1 && many);
    this.more.setAttribute("aria-expanded", this.showAll ? "true" : "false");
    setText(this.more, this.showAll ? "Show fewer files" : `Show all ${files.length} files`);
  }

  makeRow() {
    const el = h("li", "nbm-file", { "data-testid": "nbm-file" });
    const name = h("span", "nbm-file-name");
    const badge = h("span", "nbm-badge nbm-badge-small");
    const bar = new Bar("nbm-bar-file", "File progress");
    const text = h("span", "nbm-file-text");
    el.append(name, badge, bar.el, text);
    return { el, name, badge, bar, text };
  }

  drawError(s) {
    // A canceled job's "error" is the user's own click: the badge says enough.
    this.error.hidden = !s.error || s.status === "canceled";
    if (this.error.hidden) return;
    // `error` is "fact next-step"; the summary shows the fact, the detail the next step.
    const error = String(s.error);
    const hint = s.error_hint ? String(s.error_hint) : "";
    const fact = hint && error.endsWith(hint) ? error.slice(0, -hint.length).trim() : error;
    const [first, ...rest] = fact.split("\n");
    setText(this.errorSummary, s.error_type ? `${s.error_type}: ${first}` : first);
    setText(this.errorMessage, rest.join("\n").trim());
    this.errorMessage.hidden = !this.errorMessage.textContent;
    setText(this.errorHint, hint ? `Next step: ${hint}` : "");
    this.errorHint.hidden = !hint;
  }

  destroy() {
    this.el.removeEventListener("click", this.onClick);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.el.remove();
  }
}

/** The panel: a submit form and one card per job, newest first. */
class Panel {
  constructor(root, send) {
    this.send = send;
    this.cards = new Map();
    const id = `nbm-${++uid}`;
    this.form = h("form", "nbm-form", { "data-testid": "nbm-form", "aria-label": "Start a download" });
    const refLabel = h("label", "nbm-label", { for: `${id}-ref` });
    refLabel.textContent = "Reference";
    this.refInput = h("input", "nbm-input", {
      id: `${id}-ref`,
      type: "text",
      name: "ref",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "owner/repo:Q4_K_M, owner/repo or https://…",
      "data-testid": "nbm-ref-input",
    });
    const fileLabel = h("label", "nbm-label", { for: `${id}-file` });
    fileLabel.textContent = "File (optional)";
    this.fileInput = h("input", "nbm-input nbm-input-file", {
      id: `${id}-file`,
      type: "text",
      name: "file",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "model.gguf",
      "data-testid": "nbm-file-input",
    });
    const submit = h("button", "nbm-btn nbm-btn-primary", { type: "submit", "data-testid": "nbm-submit" });
    submit.textContent = "Download";
    this.form.append(refLabel, this.refInput, fileLabel, this.fileInput, submit);
    this.notice = h("p", "nbm-notice", { "data-testid": "nbm-notice", role: "status", "aria-live": "polite" });
    this.list = h("div", "nbm-list", { role: "list", "data-testid": "nbm-list", "aria-label": "Downloads" });
    this.empty = h("p", "nbm-empty", { "data-testid": "nbm-empty" });
    this.empty.textContent = "No downloads yet.";
    root.append(this.form, this.notice, this.list, this.empty);

    this.onSubmit = (event) => {
      event.preventDefault();
      const ref = this.refInput.value.trim();
      if (!ref) {
        setText(this.notice, "Enter a reference first.");
        this.notice.dataset.kind = "error";
        this.refInput.focus();
        return;
      }
      this.send({ type: "submit", ref, file: this.fileInput.value.trim() });
      this.refInput.value = "";
      this.fileInput.value = "";
    };
    this.form.addEventListener("submit", this.onSubmit);
  }

  update(s, root) {
    const jobs = Array.isArray(s.jobs) ? s.jobs : [];
    root.dataset.count = String(jobs.length);
    root.dataset.running = String(jobs.filter((j) => j.active).length);
    setText(this.notice, s.notice || "");
    this.notice.dataset.kind = s.notice_kind || "info";
    this.empty.hidden = jobs.length > 0;
    const seen = new Set();
    jobs.forEach((job, i) => {
      seen.add(job.job_id);
      let card = this.cards.get(job.job_id);
      if (!card) {
        card = new JobCard(this.send, "article");
        card.el.setAttribute("role", "listitem");
        this.cards.set(job.job_id, card);
      }
      card.update(job);
      if (this.list.children[i] !== card.el) this.list.insertBefore(card.el, this.list.children[i] || null);
    });
    for (const [id, card] of this.cards) {
      if (!seen.has(id)) {
        card.destroy();
        this.cards.delete(id);
      }
    }
  }

  active(s) {
    return Array.isArray(s.jobs) && s.jobs.some((j) => j.active);
  }

  destroy() {
    this.form.removeEventListener("submit", this.onSubmit);
    for (const card of this.cards.values()) card.destroy();
    this.cards.clear();
  }
}

function render({ model, el }) {
  const kind = model.get("kind") === "panel" ? "panel" : "job";
  const root = h("div", `nbm-root nbm-${kind}-root`, { "data-testid": kind === "panel" ? "nbm-panel" : "nbm-widget" });
  root.dataset.kind = kind;
  const send = (msg) => model.send(msg);
  let view;
  if (kind === "panel") {
    view = new Panel(root, send);
  } else {
    view = new JobCard(send, "section");
    root.appendChild(view.el);
  }
  el.appendChild(root);

  let lastUpdate = Date.now();
  let lastPoll = 0;
  const draw = () => {
    const s = model.get("state") || {};
    if (kind === "panel") {
      view.update(s, root);
    } else {
      view.update(s);
      root.dataset.status = s.status || "";
      root.dataset.jobId = s.job_id || "";
      root.dataset.downloaded = String(s.downloaded_bytes || 0);
      root.dataset.stalled = s.stalled ? "true" : "false";
    }
    root.dataset.seq = String(s.seq || 0);
  };
  const onChange = () => {
    lastUpdate = Date.now();
    draw();
  };
  model.on("change:state", onChange);
  draw();

  // Backstop for front ends that hold back updates sent from a background thread (Colab): a
  // running job that has sent nothing for a while is asked for its state.
  const timer = setInterval(() => {
    const s = model.get("state") || {};
    const running = kind === "panel" ? view.active(s) : Boolean(s.active);
    const now = Date.now();
    if (running && now - lastUpdate > POLL_IDLE_MS && now - lastPoll > POLL_IDLE_MS) {
      lastPoll = now;
      send({ type: "poll" });
    }
  }, POLL_CHECK_MS);

  return () => {
    clearInterval(timer);
    model.off("change:state", onChange);
    view.destroy();
    root.remove();
  };
}

export default { render };
