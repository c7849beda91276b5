// The batch page: each counted run's equity curve (as its decisions recorded it), one
// colour per player. Names go in with textContent only.
"use strict";
(function () {
  const el = document.getElementById("curves-chart");
  const data = document.getElementById("curves-data");
  const LC = window.LightweightCharts;
  if (!el || !data || !LC) return;
  const curves = JSON.parse(data.textContent);
  const palette = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#57606a", "#bf3989", "#0a3069"];
  const colours = {};
  const chart = LC.createChart(el, {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#24292f", fontSize: 12 },
    grid: { vertLines: { color: "#eef1f4" }, horzLines: { color: "#eef1f4" } },
    rightPriceScale: { borderColor: "#d0d7de" },
  });
  curves.forEach(function (c) {
    if (!(c.player in colours)) colours[c.player] = palette[Object.keys(colours).length % palette.length];
    const line = chart.addSeries(LC.LineSeries, {
      color: colours[c.player], lineWidth: 1, priceLineVisible: false, lastValueVisible: false,
    });
    line.setData(c.points);
  });
  chart.timeScale().fitContent();
  el.dataset.curves = String(curves.length);
  const legend = document.getElementById("curves-legend");
  Object.keys(colours).forEach(function (player) {
    const key = document.createElement("span");
    key.className = "key";
    key.style.background = colours[player];
    legend.appendChild(key);
    legend.appendChild(document.createTextNode(player));
  });
})();
