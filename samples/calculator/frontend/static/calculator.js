// The calculator's state is {total, next, operation}, as in the Dapr sample:
// total is the running result, next the number being typed, operation the
// pending one. Arithmetic happens in the operator services; the state is
// saved through /persist after every key and restored from /state on load.
(function () {
  "use strict";
  const ops = { "+": "add", "-": "subtract", "x": "multiply", "÷": "divide" };
  let state = { total: null, next: null, operation: null };
  // Keys are handled one after another, in the order pressed: a key
  // pressed while an earlier one is still being calculated or saved waits
  // for it rather than being lost.
  let queue = Promise.resolve();
  const display = document.getElementById("display");
  const errorBox = document.getElementById("error");

  function render() {
    display.textContent = state.next ?? state.total ?? "0";
    document.querySelectorAll("button.op").forEach(b =>
      b.classList.toggle("active", b.dataset.key === state.operation && state.next === null));
  }

  function showError(msg) { errorBox.textContent = msg || ""; }

  async function request(path, options) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 10000);
    try {
      const resp = await fetch(path, { ...options, signal: ctl.signal });
      const text = await resp.text();
      if (!resp.ok) {
        let msg = text;
        try { msg = JSON.parse(text).message || text; } catch (_) { /* plain text */ }
        throw new Error(msg.trim() || resp.status + " " + resp.statusText);
      }
      return text;
    } catch (e) {
      throw new Error(e.name === "AbortError" ? "the server did not answer in time" : e.message);
    } finally {
      clearTimeout(timer);
    }
  }

  async function calculate(op, a, b) {
    const text = await request("/calculate/" + ops[op], {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ operandOne: a, operandTwo: b }),
    });
    return String(JSON.parse(text));
  }

  async function persist() {
    await request("/persist", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify([{ key: "calculatorState", value: state }]),
    });
  }

  async function press(key) {
    const s = { ...state };
    if (/^[0-9]$/.test(key)) {
      s.next = s.next === null || s.next === "0" ? key : s.next + key;
      if (s.operation === null && state.next === null) s.total = null;
    } else if (key === ".") {
      if (s.next === null) s.next = "0.";
      else if (!s.next.includes(".")) s.next += ".";
    } else if (key === "AC") {
      s.total = s.next = s.operation = null;
    } else if (key === "+/-") {
      if (s.next !== null) s.next = s.next.startsWith("-") ? s.next.slice(1) : "-" + s.next;
      else if (s.total !== null) s.total = s.total.startsWith("-") ? s.total.slice(1) : "-" + s.total;
    } else if (key === "%") {
      if (s.next !== null) s.next = await calculate("÷", s.next, "100");
      else if (s.total !== null) s.total = await calculate("÷", s.total, "100");
    } else if (key in ops || key === "=") {
      if (s.operation !== null && s.total !== null && s.next !== null) {
        s.total = await calculate(s.operation, s.total, s.next);
        s.next = null;
      } else if (s.next !== null) {
        s.total = s.next;
        s.next = null;
      }
      s.operation = key === "=" ? null : (s.total !== null ? key : null);
    }
    state = s;
    render();
    await persist();
  }

  document.querySelector(".keys").addEventListener("click", ev => {
    const btn = ev.target.closest("button");
    if (!btn) return;
    const key = btn.dataset.key;
    queue = queue.then(async () => {
      try {
        showError("");
        await press(key);
      } catch (e) {
        showError(e.message);
      }
    });
  });

  document.addEventListener("keydown", ev => {
    const map = { "*": "x", "/": "÷", "Enter": "=", "Escape": "AC", "Backspace": "AC" };
    const key = map[ev.key] || ev.key;
    const btn = document.querySelector(`button[data-key="${CSS.escape(key)}"]`);
    if (btn) { ev.preventDefault(); btn.click(); }
  });

  // Keys pressed before the saved state is back wait for it.
  queue = (async function restore() {
    try {
      const saved = JSON.parse(await request("/state"));
      if (saved && typeof saved === "object") {
        state = { total: saved.total ?? null, next: saved.next ?? null, operation: saved.operation ?? null };
      }
    } catch (e) {
      showError("could not load the saved state: " + e.message);
    }
    render();
  })();
})();
