// The Sluice console's only script: live throughput charts on the cluster
// page. Progressive: without it the page shows the latest rates as tables.
// Names from the cluster go into the page through textContent only.
"use strict";
(function () {
  const charts = document.querySelectorAll(".chart[data-series]");
  if (!charts.length) return;
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const WIDTH = 520, HEIGHT = 180, PAD = 34;

  function el(name, attrs) {
    const node = document.createElementNS(SVG, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    return node;
  }

  function draw(container, series) {
    container.textContent = "";
    const svg = el("svg", { width: WIDTH, height: HEIGHT, role: "img" });
    let tMin = Infinity, tMax = -Infinity, yMax = 1;
    for (const s of series) for (const [t, y] of s.points) {
      tMin = Math.min(tMin, t); tMax = Math.max(tMax, t); yMax = Math.max(yMax, y);
    }
    const x = t => PAD + (tMax > tMin ? (t - tMin) / (tMax - tMin) : 1) * (WIDTH - PAD - 8);
    const y = v => HEIGHT - 18 - (v / yMax) * (HEIGHT - 30);
    svg.appendChild(el("line", { x1: PAD, y1: y(0), x2: WIDTH - 8, y2: y(0), stroke: "#aaa" }));
    const top = el("text", { x: 2, y: y(yMax) + 4, "font-size": 10 });
    top.textContent = yMax >= 1000 ? (yMax / 1000).toFixed(1) + "k/s" : yMax.toFixed(0) + "/s";
    svg.appendChild(top);
    series.forEach((s, i) => {
      if (!s.points.length) return;
      const points = s.points.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
      svg.appendChild(el("polyline", { points, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2 }));
    });
    container.appendChild(svg);
    const legend = document.createElement("div");
    legend.className = "legend";
    series.forEach((s, i) => {
      const item = document.createElement("span");
      item.style.color = COLORS[i % COLORS.length];
      item.textContent = "\u25A0 " + s.name + "  ";
      legend.appendChild(item);
    });
    if (!series.length) legend.textContent = "Waiting for two samples\u2026";
    container.appendChild(legend);
  }

  async function refresh() {
    try {
      const response = await fetch("/api/throughput", { cache: "no-store" });
      if (!response.ok) return;
      const data = await response.json();
      for (const chart of charts) draw(chart, data[chart.dataset.series] || []);
    } catch (error) {
      // The console went away; try again on the next tick.
    }
  }
  refresh();
  setInterval(refresh, 5000);
})();
