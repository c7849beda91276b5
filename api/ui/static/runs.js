// The runs page: keeps each row's status and progress live from /ui/runs.json (the
// same figures as GET /v1/runs), and takes the server's rows when the set of runs changes.
"use strict";
(function () {
  const table = document.getElementById("runs");
  if (!table) return;

  function money(v) {
    if (v === null || v === undefined) return "–";
    return Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function field(tr, name) { return tr.querySelector('[data-field="' + name + '"]'); }

  function update(tr, r) {
    const status = field(tr, "status");
    status.textContent = r.status;
    status.className = "status s-" + r.status;
    status.title = r.reason || "";
    const bar = field(tr, "bar");
    bar.max = r.total || 1;
    bar.value = r.step;
    field(tr, "steps").textContent = r.step + "/" + r.total;
    field(tr, "equity").textContent = money(r.equity);
    tr.dataset.final = r.final ? "true" : "false";
    const stop = field(tr, "stop");
    if (r.final && stop) stop.remove();
  }

  function replaceRows() {
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (html) {
        if (!html) return;
        const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("#runs tbody");
        if (fresh) table.tBodies[0].replaceWith(document.adoptNode(fresh));
      });
  }

  function refresh() {
    const url = "/ui/runs.json" + location.search;
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (rows) {
        if (!rows) return;
        const shown = Array.from(table.querySelectorAll("tbody tr[data-run]"));
        const same = shown.length === rows.length &&
          shown.every(function (tr, i) { return Number(tr.dataset.run) === rows[i].id; });
        if (!same) { replaceRows(); return; }
        rows.forEach(function (r, i) { update(shown[i], r); });
      })
      .catch(function () { /* the next round tries again */ });
  }

  function active() { return table.querySelector('tbody tr[data-final="false"]') !== null; }

  function loop() {
    const wait = active() ? 1000 : 2000;
    setTimeout(function () {
      if (document.hidden) { loop(); return; }
      refresh().then(loop, loop);
    }, wait);
  }
  loop();
})();
