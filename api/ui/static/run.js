// The run page: draws the API's chart data and follows the run's event stream.
// Text from the server (reasoning above all: an LLM wrote it) only ever goes through
// textContent; no HTML is built from strings here.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const runId = live.dataset.run;
  const LC = window.LightweightCharts;
  const charts = {};
  let equityChart = null;
  const pendingTrades = {};

  function money(v) {
    if (v === null || v === undefined || v === "") return "–";
    return Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function when(iso, seconds) {  // as render.when: New York time; a daily bar as its date
    if (!iso) return "–";
    const d = new Date(iso);
    if (d.getUTCHours() === 0 && d.getUTCMinutes() === 0 && d.getUTCSeconds() === 0) {
      return d.toISOString().slice(0, 10);
    }
    const parts = {};
    new Intl.DateTimeFormat("en-CA", { timeZone: "America/New_York", hourCycle: "h23",
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
      second: seconds ? "2-digit" : undefined })
      .formatToParts(d).forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute +
      (seconds ? ":" + parts.second : "") + " ET";
  }
  // Minute bars read in exchange time (New York), as a trader reads them; daily bars
  // are stamped at midnight UTC, so their dates stay UTC.
  const NY = { timeZone: "America/New_York", hour12: false };
  const nyTime = new Intl.DateTimeFormat("en-US", Object.assign({ hour: "2-digit", minute: "2-digit" }, NY));
  const nyDay = new Intl.DateTimeFormat("en-US", Object.assign({ month: "short", day: "numeric" }, NY));
  function nyTick(time, type) {
    const d = new Date(time * 1000);
    return type >= 3 ? nyTime.format(d) : nyDay.format(d);  // 3: a time of day
  }
  function chartOptions(el) {
    const intraday = el.dataset.intraday !== "false";
    const options = {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#24292f", fontSize: 12 },
      grid: { vertLines: { color: "#eef1f4" }, horzLines: { color: "#eef1f4" } },
      timeScale: { timeVisible: intraday, secondsVisible: false },
      rightPriceScale: { borderColor: "#d0d7de" },
    };
    if (intraday) {
      options.timeScale.tickMarkFormatter = nyTick;
      options.localization = { timeFormatter: function (t) {
        const d = new Date(t * 1000);
        return nyDay.format(d) + " " + nyTime.format(d) + " ET";
      } };
    }
    return options;
  }

  function priceChart(el) {
    const chart = LC.createChart(el, chartOptions(el));
    const series = chart.addSeries(LC.CandlestickSeries, {
      upColor: "#2da44e", downColor: "#cf222e", borderVisible: false,
      wickUpColor: "#2da44e", wickDownColor: "#cf222e",
    });
    return { chart: chart, series: series, markers: LC.createSeriesMarkers(series, []), lives: {} };
  }

  // A resting order's life: a dashed level from the bar it was decided on to the bar
  // it ended on (or the last bar drawn, while open).
  function drawLives(c, orders) {
    orders.forEach(function (o) {
      let line = c.lives[o.id];
      if (!line) {
        line = c.lives[o.id] = c.chart.addSeries(LC.LineSeries, {
          color: o.side === "buy" || o.side === "cover" ? "#1a7f37" : "#cf222e",
          lineWidth: 1, lineStyle: 2, priceLineVisible: false, lastValueVisible: false,
          pointMarkersVisible: o.from === o.to, crosshairMarkerVisible: false,
          title: o.type + " #" + o.id + " " + o.state,
        });
      }
      const points = [{ time: o.from, value: o.price }];
      if (o.to > o.from) points.push({ time: o.to, value: o.price });
      line.setData(points);
    });
  }

  function marker(f) {
    return {
      time: f.time, price: f.price, id: String(f.id),
      position: f.buy ? "atPriceBottom" : "atPriceTop",
      shape: f.buy ? "arrowUp" : "arrowDown",
      color: f.buy ? "#1a7f37" : "#cf222e",
      text: f.buy ? "B" : "S",
    };
  }

  function drawSymbol(el, data) {
    const symbol = el.dataset.symbol;
    const own = data.symbols[symbol] || { bars: [], fills: [] };
    if (!charts[symbol]) charts[symbol] = priceChart(el);
    const c = charts[symbol];
    c.series.setData(own.bars);
    const fills = own.fills.slice().sort(function (a, b) { return a.time - b.time; });
    c.markers.setMarkers(fills.map(marker));
    el.dataset.bars = String(own.bars.length);
    el.dataset.fills = String(fills.length);
    drawLives(c, own.orders || []);
    el.dataset.orders = String((own.orders || []).length);
  }

  function drawEquity(data) {
    const el = document.getElementById("equity-chart");
    if (!equityChart) {
      const chart = LC.createChart(el, chartOptions(el));
      equityChart = {
        chart: chart,
        equity: chart.addSeries(LC.LineSeries, { color: "#0969da", lineWidth: 2 }),
        bench: chart.addSeries(LC.LineSeries, { color: "#8c959f", lineWidth: 2, lineStyle: 2 }),
      };
    }
    equityChart.equity.setData(data.equity);
    equityChart.bench.setData(data.benchmark);
    el.dataset.points = String(data.equity.length);
    el.dataset.benchmark = String(data.benchmark.length);
  }

  function draw(data) {
    if (!LC) return;
    document.querySelectorAll(".chart[data-symbol]").forEach(function (el) { drawSymbol(el, data); });
    drawEquity(data);
    Object.keys(charts).forEach(function (s) { charts[s].chart.timeScale().fitContent(); });
    equityChart.chart.timeScale().fitContent();
    document.body.dataset.chartSteps = String(data.steps);
    document.getElementById("no-bars").hidden = data.steps > 0;
  }

  let chartTimer = null;
  let chartAgain = false;
  function refreshChart() {
    if (chartTimer) { chartAgain = true; return; }
    chartTimer = setTimeout(function () { chartTimer = null; if (chartAgain) { chartAgain = false; refreshChart(); } }, 1500);
    fetch("/ui/runs/" + runId + "/chart.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) draw(data); })
      .catch(function () { /* the next event tries again */ });
  }

  // Orders and positions as the server renders them, at most every 2 s while they change.
  let ledgerTimer = null;
  let ledgerAgain = false;
  function refreshLedger() {
    if (ledgerTimer) { ledgerAgain = true; return; }
    ledgerTimer = setTimeout(function () {
      ledgerTimer = null;
      if (ledgerAgain) { ledgerAgain = false; refreshLedger(); }
    }, 2000);
    fetch("/ui/runs/" + runId + "/ledger", { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("ledger");
        const old = document.getElementById("ledger");
        if (fresh && old) old.replaceWith(document.adoptNode(fresh));
      })
      .catch(function () { /* the next change tries again */ });
  }

  function setStatus(status, reason) {
    const el = document.getElementById("status");
    el.textContent = status;
    el.className = "status s-" + status;
    if (reason !== undefined) document.getElementById("reason").textContent = reason || "";
    const final = ["completed", "stopped", "failed", "deleted"].indexOf(status) >= 0;
    if (final) {
      live.dataset.final = "true";
      document.getElementById("stop-form").hidden = true;
    }
  }

  function onProgress(p) {
    const bar = document.getElementById("progress");
    if (p.total) bar.max = p.total;
    bar.value = p.step;
    document.getElementById("steps").textContent = p.step + "/" + p.total;
    if (p.equity !== undefined) document.getElementById("equity").textContent = money(p.equity);
    if (p.phase) document.getElementById("reason").textContent = p.phase;
    if (p.wall_time) {  // a live run: its clock, and how long after its bar closed
      document.getElementById("clock-box").hidden = false;
      document.getElementById("clock").textContent = when(p.wall_time, true);
      document.getElementById("lag").textContent =
        p.lag_seconds === undefined || p.lag_seconds === null ? "–" : Number(p.lag_seconds).toFixed(1) + " s";
    }
    refreshChart();
  }

  function field(li, name) { return li.querySelector('[data-field="' + name + '"]'); }

  function tradeItem(t) {
    const item = document.createElement("li");
    item.dataset.trade = t.step + "-" + t.seq;
    const what = t.side + " " + t.quantity + " " + t.symbol;
    if (t.status === "refused") {
      item.className = "refusal";
      item.textContent = "refused " + what + ": " + (t.reason || "no reason given");
    } else {
      item.className = "fill";
      item.textContent = "filled " + what + " @ " + money(t.price) + (t.filled_at ? " (" + when(t.filled_at) + ")" : "");
    }
    return item;
  }

  function addTrade(t) {
    const li = document.querySelector('#timeline > li[data-step="' + t.step + '"]');
    if (!li) { (pendingTrades[t.step] = pendingTrades[t.step] || []).push(t); return; }
    const list = field(li, "trades");
    if (list.querySelector('[data-trade="' + t.step + "-" + t.seq + '"]')) return;
    list.appendChild(tradeItem(t));
  }

  function decisionItem(d) {
    const li = document.getElementById("decision-template").content.firstElementChild.cloneNode(true);
    li.dataset.step = String(d.step);
    li.className = "decision o-" + d.outcome;
    li.querySelector(".d-step").textContent = "step " + d.step;
    const time = field(li, "bar_time");
    time.dateTime = d.bar_time;
    time.textContent = when(d.bar_time);
    field(li, "action").textContent = d.action;
    field(li, "outcome").textContent = d.outcome;
    field(li, "usage").textContent = d.tokens_in + " in / " + d.tokens_out + " out" +
      (d.tokens_cached ? " (" + d.tokens_cached + " cached)" : "") + " tokens · " +
      (d.cost !== null && d.cost !== undefined ? "$" + d.cost : "cost –") + " · " +
      Math.round(d.latency_ms) + " ms";
    field(li, "reasoning").textContent = d.reasoning || "";
    if (d.error) { field(li, "error").hidden = false; field(li, "error").textContent = d.error; }
    const tools = d.tool_calls || [];
    if (tools.length) {
      field(li, "tools").hidden = false;
      field(li, "tool_count").textContent = tools.length + " tool call" + (tools.length === 1 ? "" : "s");
      field(li, "tool_names").textContent = tools.join(", ");
      field(li, "tools").addEventListener("toggle", function () { loadTools(li, d.step); }, { once: true });
    }
    return li;
  }

  // The stream names the tools only; their arguments and answers are the decision's.
  function loadTools(li, step) {
    fetch("/ui/runs/" + runId + "/decisions/" + step + ".json",
          { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (d) field(li, "tool_json").textContent = JSON.stringify(d.tool_calls, null, 2);
      })
      .catch(function () { /* the placeholder says to reload */ });
  }

  function addDecision(d) {
    const list = document.getElementById("timeline");
    if (list.querySelector(':scope > li[data-step="' + d.step + '"]')) return;
    const li = decisionItem(d);
    let before = list.firstElementChild;
    while (before && Number(before.dataset.step) > d.step) before = before.nextElementSibling;
    list.insertBefore(li, before);
    (pendingTrades[d.step] || []).forEach(addTrade);
    delete pendingTrades[d.step];
    document.getElementById("decision-count").textContent = String(list.children.length);
  }

  function swapFinalSections() {
    // The final result, orders and positions as the server renders them (escaped there).
    fetch(location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        const doc = new DOMParser().parseFromString(html, "text/html");
        ["meta", "result-card", "ledger"].forEach(function (id) {
          const fresh = doc.getElementById(id);
          const old = document.getElementById(id);
          if (fresh && old) old.replaceWith(document.adoptNode(fresh));
        });
        document.body.dataset.done = "true";
      });
  }

  function follow() {
    if (live.dataset.final === "true") { document.body.dataset.done = "true"; return; }
    const after = live.dataset.after;
    const url = "/ui/runs/" + runId + "/events" + (after ? "?after=" + encodeURIComponent(after) : "");
    const source = new EventSource(url);
    const note = document.getElementById("stream");
    function on(type, fn) {
      source.addEventListener(type, function (e) {
        note.textContent = "live";
        fn(JSON.parse(e.data).data || {}, e);
      });
    }
    on("status", function (s) { setStatus(s.status, s.reason); });
    on("progress", onProgress);
    on("decision", addDecision);
    on("trade", function (t) {
      addTrade(t);
      refreshLedger();
      if (t.status === "filled") refreshChart();
    });
    on("order", refreshLedger);
    on("result", function (r) {
      source.close();
      note.textContent = "ended";
      setStatus(r.status, r.reason);
      refreshChart();
      swapFinalSections();
    });
    source.onerror = function () {
      // EventSource reconnects by itself with Last-Event-ID; CLOSED means it gave up.
      note.textContent = source.readyState === EventSource.CLOSED ?
        "disconnected: reload the page" : "reconnecting…";
    };
    source.onopen = function () { note.textContent = "live"; };
  }

  const initial = document.getElementById("chart-data");
  if (initial) draw(JSON.parse(initial.textContent));
  follow();
})();
