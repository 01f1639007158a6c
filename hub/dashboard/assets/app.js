// warren dashboard: fetches api/snapshot and draws it with Chart.js.
// After each render it records what it drew in data-* attributes
// (data-rendered, data-points, data-total, data-labels, data-datasets,
// data-painted, data-color-pixels) so a headless browser test can check
// the charts without reading pixels itself.
(function () {
  'use strict';
  var body = document.body;
  var refreshMS = parseInt(body.dataset.refreshMs, 10) || 15000;
  var charts = {};
  var colors = {
    logins: '#2563eb', connections: '#16a34a', auth_failures: '#dc2626', alerts: '#f59e0b',
    events: '#7c3aed', publishes: '#0891b2', deliveries: '#db2777', in: '#2563eb', out: '#f97316'
  };
  var renders = 0;

  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function hhmm(ms) { var d = new Date(ms); return pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()); }
  function when(iso) {
    if (!iso) { return '-'; }
    var d = new Date(iso);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' +
      pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds());
  }
  function rgb(hex) { return [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)]; }

  // painted counts the non-transparent pixels of a canvas, and per color
  // the pixels close to it.
  function painted(canvas, want) {
    var out = { any: 0, colors: {} };
    var names = Object.keys(want);
    names.forEach(function (n) { out.colors[n] = 0; });
    try {
      var img = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      for (var i = 0; i < img.length; i += 4) {
        if (img[i + 3] === 0) { continue; }
        out.any++;
        if (img[i + 3] < 200) { continue; }
        for (var k = 0; k < names.length; k++) {
          var c = want[names[k]];
          if (Math.abs(img[i] - c[0]) + Math.abs(img[i + 1] - c[1]) + Math.abs(img[i + 2] - c[2]) < 40) { out.colors[names[k]]++; }
        }
      }
    } catch (e) { out.any = -1; }
    return out;
  }

  function draw(id, config) {
    var box = document.getElementById(id);
    var canvas = box.querySelector('canvas');
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].update('none');
    } else {
      config.options = Object.assign({
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: 'index', intersect: false },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } }
      }, config.options || {});
      charts[id] = new Chart(canvas, config);
    }
    var points = 0, total = 0, want = {};
    config.data.datasets.forEach(function (ds) {
      ds.data.forEach(function (v) { points++; total += v; });
      want[ds.label] = rgb(ds.borderColor);
    });
    var p = painted(canvas, want);
    box.dataset.rendered = 'true';
    box.dataset.points = String(points);
    box.dataset.total = String(total);
    box.dataset.labels = JSON.stringify(config.data.labels);
    box.dataset.datasets = JSON.stringify(config.data.datasets.map(function (d) { return d.label; }));
    box.dataset.painted = String(p.any);
    box.dataset.colorPixels = JSON.stringify(p.colors);
  }

  function lines(id, tl, names) {
    draw(id, {
      type: 'line',
      data: {
        labels: tl.times.map(hhmm),
        datasets: names.map(function (n) {
          return { label: n, data: tl.series[n] || [], borderColor: colors[n], backgroundColor: colors[n], borderWidth: 2, pointRadius: 0, tension: 0.2 };
        })
      },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { ticks: { maxTicksLimit: 12 } } } }
    });
  }

  function bars(id, counts, inLabel, outLabel) {
    draw(id, {
      type: 'bar',
      data: {
        labels: counts.map(function (c) { return c.name; }),
        datasets: [
          { label: inLabel, data: counts.map(function (c) { return c.in; }), borderColor: colors.in, backgroundColor: colors.in },
          { label: outLabel, data: counts.map(function (c) { return c.out; }), borderColor: colors.out, backgroundColor: colors.out }
        ]
      },
      options: { indexAxis: 'y', scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: true } } }
    });
  }

  function cell(tr, text, cls) {
    var td = document.createElement('td');
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }

  function table(id, rows, empty, fill) {
    var tbody = document.querySelector('#' + id + ' tbody');
    tbody.textContent = '';
    if (rows.length === 0) {
      var tr = document.createElement('tr');
      tr.className = 'empty';
      var td = cell(tr, empty);
      td.colSpan = document.querySelectorAll('#' + id + ' thead th').length;
      tbody.appendChild(tr);
    }
    rows.forEach(function (r) {
      var tr = document.createElement('tr');
      fill(tr, r);
      tbody.appendChild(tr);
    });
    document.getElementById(id).dataset.rows = String(rows.length);
  }

  function render(s) {
    lines('chart-logins', s.timeline, ['logins', 'connections', 'auth_failures', 'alerts']);
    lines('chart-messages', s.timeline, ['events', 'publishes', 'deliveries']);
    bars('chart-devices', s.devices, 'published', 'delivered');
    bars('chart-topics', s.topics, 'stored', 'delivered');
    table('fleet', s.fleet, 'no edge seen yet', function (tr, e) {
      tr.dataset.edge = e.id;
      cell(tr, e.id);
      cell(tr, e.connected ? 'up' : 'down', e.connected ? 'up' : 'down');
      cell(tr, e.address || '-');
      cell(tr, e.version || '-');
      cell(tr, when(e.last_seen));
      cell(tr, String(e.backlog_msgs || 0));
      cell(tr, String(e.events || 0));
      cell(tr, String(e.alerts || 0), e.alerts ? 'warning' : '');
    });
    table('alerts', s.alerts, 'no alert', function (tr, a) {
      tr.dataset.rule = a.rule;
      cell(tr, when(a.time));
      cell(tr, a.edge || '-');
      cell(tr, a.rule, a.severity || '');
      cell(tr, a.key || '-');
      cell(tr, a.message || '', 'msg');
    });
    document.getElementById('generated').textContent = when(s.generated);
  }

  function status(text) { document.getElementById('status').textContent = text; }

  function load() {
    if (typeof window.Chart !== 'function') {
      body.dataset.state = 'error';
      status('chart library failed to load');
      return;
    }
    fetch('api/snapshot', { cache: 'no-store' }).then(function (r) {
      if (!r.ok) { return r.text().then(function (t) { throw new Error(r.status + ': ' + t); }); }
      return r.json();
    }).then(function (s) {
      render(s);
      renders++;
      body.dataset.renders = String(renders);
      body.dataset.state = 'ready';
      status('');
    }).catch(function (e) {
      body.dataset.state = 'error';
      status('cannot load data: ' + e.message);
    }).then(function () {
      setTimeout(load, refreshMS);
    });
  }

  load();
}());
