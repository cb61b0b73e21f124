// Test harness for the widget ESM on a blank page (tests/test_browser.py; docs/browser-tests.md,
// layer 1).
//
// Evaluated by Playwright with {src, css}: counts active timers and event listeners (so a test
// can prove that render()'s cleanup removes them), injects the CSS, imports the ESM from a Blob
// URL and defines window.mount(kind, state), which renders the widget with a small fake of the
// anywidget model (get / set / on / off / save_changes / send) and keeps {model, el, cleanup,
// before} in window.w.
async ({ src, css }) => {
  const active = { intervals: new Set(), timeouts: new Set(), listeners: 0 };
  const { setInterval: si, clearInterval: ci, setTimeout: st, clearTimeout: ct } = window;
  window.setInterval = (f, ms, ...a) => {
    const id = si(f, ms, ...a);
    active.intervals.add(id);
    return id;
  };
  window.clearInterval = (id) => {
    active.intervals.delete(id);
    ci(id);
  };
  window.setTimeout = (f, ms, ...a) => {
    const id = st(() => {
      active.timeouts.delete(id);
      f(...a);
    }, ms);
    active.timeouts.add(id);
    return id;
  };
  window.clearTimeout = (id) => {
    active.timeouts.delete(id);
    ct(id);
  };
  const proto = EventTarget.prototype;
  const add = proto.addEventListener;
  const rem = proto.removeEventListener;
  proto.addEventListener = function (type, fn, opts) {
    active.listeners++;
    return add.call(this, type, fn, opts);
  };
  proto.removeEventListener = function (type, fn, opts) {
    active.listeners--;
    return rem.call(this, type, fn, opts);
  };
  window.__active = active;

  const style = document.createElement("style");
  style.textContent = css;
  document.head.appendChild(style);
  const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
  window.widget = (await import(url)).default;

  window.mount = (kind, state) => {
    const attrs = { kind, state };
    const handlers = new Map();
    const model = {
      sent: [],
      get: (k) => attrs[k],
      set: (k, v) => {
        attrs[k] = v;
      },
      on: (ev, fn) => {
        if (!handlers.has(ev)) handlers.set(ev, new Set());
        handlers.get(ev).add(fn);
      },
      off: (ev, fn) => {
        if (handlers.has(ev)) handlers.get(ev).delete(fn);
      },
      save_changes: () => {},
      send(msg) {
        this.sent.push(msg);
      },
      push(s) {
        attrs.state = s;
        for (const fn of handlers.get("change:state") || []) fn();
      },
      handlers() {
        let n = 0;
        for (const set of handlers.values()) n += set.size;
        return n;
      },
    };
    const el = document.createElement("div");
    document.body.appendChild(el);
    const before = active.listeners;
    const cleanup = window.widget.render({ model, el });
    window.w = { model, el, cleanup, before };
    return true;
  };
};
