// DistrictPulse live view: swap the server-rendered sections on every server-sent event, and keep the chart.
(function () {
  "use strict";
  var body = document.body;
  if (!body.dataset.page) return; // the login page
  var plot = null;
  var dot = document.getElementById("live-dot");
  var text = document.getElementById("live-text");

  function setLive(ok, label) {
    dot.className = "dot " + (ok ? "on" : "off");
    text.textContent = label;
  }

  function numbers() {
    var out = {};
    document.querySelectorAll(".tile").forEach(function (t) {
      var n = t.querySelector(".num");
      if (n) out[t.id] = n.textContent;
    });
    return out;
  }

  function chart(c) {
    var el = document.getElementById("chart-plot");
    if (!el || !c || !window.uPlot) return;
    var data = [c.t, c.grid, c.pv, c.ev];
    if (plot) { plot.setData(data); return; }
    var width = el.clientWidth || 800;
    plot = new uPlot({
      width: width,
      height: 240,
      scales: {
        x: { time: true },
        y: { range: function (u, min, max) { return [Math.min(0, min), Math.max(1, max * 1.1)]; } }
      },
      legend: { live: false },
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), body.dataset.tz || "UTC"); },
      axes: [{ stroke: "#5b6b7f" }, { stroke: "#5b6b7f", label: "kW", size: 56 }],
      series: [
        {},
        { label: "grid import", stroke: "#2563eb", width: 2, fill: "rgba(37,99,235,0.08)" },
        { label: "PV", stroke: "#d97706", width: 2 },
        { label: "EV charging", stroke: "#059669", width: 2 }
      ]
    }, data, el);
    window.addEventListener("resize", function () { plot.setSize({ width: el.clientWidth, height: 240 }); });
  }

  function apply(payload) {
    var before = numbers();
    Object.keys(payload.sections).forEach(function (id) {
      var el = document.getElementById(id);
      var html = payload.sections[id];
      if (el && el.innerHTML !== html) el.innerHTML = html;
    });
    var after = numbers();
    Object.keys(after).forEach(function (id) {
      if (before[id] !== undefined && before[id] !== after[id]) {
        var t = document.getElementById(id);
        t.classList.add("changed");
        setTimeout(function () { t.classList.remove("changed"); }, 900);
      }
    });
    chart(payload.chart);
    body.dataset.updated = String(payload.at_ms);
  }

  var url = "/events?page=" + encodeURIComponent(body.dataset.page) + "&key=" + encodeURIComponent(body.dataset.key);
  var source = new EventSource(url);
  source.addEventListener("snapshot", function (e) {
    var payload = JSON.parse(e.data);
    apply(payload);
    setLive(true, payload.pinned ? "recorded day" : "live");
  });
  source.addEventListener("gone", function () { source.close(); setLive(false, "no longer exists"); });
  source.onopen = function () { setLive(true, "connected"); };
  source.onerror = function () { setLive(false, "reconnecting…"); };
})();
