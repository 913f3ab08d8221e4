/* The monitoring charts of a service page: GET …/metrics/?window=1h|24h, drawn with uPlot,
   refreshed every 10 s; scaling and health events are vertical marks on every chart. */
(function () {
  "use strict";
  var root = document.getElementById("monitoring");
  if (!root || typeof uPlot === "undefined") { return; }
  var url = root.getAttribute("data-url");
  var windowName = "1h";
  var charts = [];
  var CHARTS = [
    {id: "replicas", title: "Replicas", series: [["replicas", "instances", "#2b6cb0"]]},
    {id: "rps", title: "Requests per second", series: [["rps", "req/s", "#2f855a"]]},
    {id: "latency", title: "Latency (ms)", series: [["p50_ms", "p50", "#805ad5"], ["p99_ms", "p99", "#d53f8c"]]},
    {id: "errors", title: "Error rate (5xx share)", series: [["error_rate", "errors", "#c53030"]]},
    {id: "usage", title: "Utilisation (% of limits)", series: [["cpu_percent", "CPU", "#dd6b20"], ["memory_percent", "memory", "#3182ce"], ["gpu_percent", "GPU", "#38a169"]]}
  ];
  var COLORS = {autoscaled: "#2b6cb0", scaled: "#2b6cb0", capped: "#d69e2e", woken: "#38a169",
                sleeping: "#718096", crashed: "#c53030", replaced: "#c53030", unhealthy: "#c53030"};

  function align(doc, spec) {
    var xs = {};
    spec.series.forEach(function (s) { (doc.series[s[0]] || []).forEach(function (p) { xs[p[0]] = true; }); });
    var x = Object.keys(xs).map(Number).sort(function (a, b) { return a - b; });
    var index = {};
    x.forEach(function (t, i) { index[t] = i; });
    var data = [x];
    spec.series.forEach(function (s) {
      var ys = new Array(x.length).fill(null);
      (doc.series[s[0]] || []).forEach(function (p) { ys[index[p[0]]] = p[1]; });
      data.push(ys);
    });
    return data;
  }

  function eventsPlugin(getEvents) {
    return {hooks: {draw: [function (u) {
      var ctx = u.ctx;
      getEvents().forEach(function (e) {
        var x = u.valToPos(e.at, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) { return; }
        ctx.save();
        ctx.strokeStyle = COLORS[e.kind] || "#a0aec0";
        ctx.setLineDash([4, 3]);
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.restore();
      });
    }]}};
  }

  var lastEvents = [];
  function build(doc) {
    var grid = root.querySelector(".charts");
    grid.innerHTML = "";
    charts = CHARTS.map(function (spec) {
      var box = document.createElement("figure");
      box.className = "chart chart-" + spec.id;
      grid.appendChild(box);
      var width = Math.max(280, Math.min(560, (grid.clientWidth || 600) / 2 - 16));
      var opts = {
        title: spec.title, width: width, height: 180,
        scales: {x: {time: true}},
        series: [{}].concat(spec.series.map(function (s) {
          return {label: s[1], stroke: s[2], width: 1.5, spanGaps: false};
        })),
        axes: [{}, {size: 50}],
        plugins: [eventsPlugin(function () { return lastEvents; })]
      };
      return {spec: spec, plot: new uPlot(opts, align(doc, spec), box)};
    });
  }

  function listEvents(events) {
    var list = root.querySelector(".chart-events");
    list.innerHTML = "";
    events.slice(-12).reverse().forEach(function (e) {
      var li = document.createElement("li");
      li.className = "level-" + e.level;
      li.textContent = new Date(e.at * 1000).toLocaleTimeString() + " " + e.kind + ": " + e.message;
      list.appendChild(li);
    });
  }

  function refresh() {
    fetch(url + "?window=" + windowName, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (doc) {
        lastEvents = doc.events || [];
        if (!charts.length) { build(doc); } else {
          charts.forEach(function (c) { c.plot.setData(align(doc, c.spec)); });
        }
        listEvents(lastEvents);
        root.setAttribute("data-updated", String(Date.now()));
        root.querySelector(".chart-status").textContent = "";
      })
      .catch(function (err) { root.querySelector(".chart-status").textContent = "metrics unavailable (" + err.message + ")"; });
  }

  root.querySelectorAll("button[data-window]").forEach(function (b) {
    b.addEventListener("click", function () {
      windowName = b.getAttribute("data-window");
      root.querySelectorAll("button[data-window]").forEach(function (o) { o.setAttribute("aria-pressed", String(o === b)); });
      charts = [];
      refresh();
    });
  });
  refresh();
  setInterval(refresh, 10000);
})();
