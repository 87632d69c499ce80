/// The admin page at `/`: the pipeline graph drawn on the server from the running generation,
/// and a small script that refreshes the live figures from /status every two seconds: spans/s on
/// every edge, counters, exporter queues, plugin images, reloads and the service map. No build
/// step. With `admin.auth` the page is behind the token like every admin path but /healthz:
/// reach it through `admin.unix_socket` (an SSH tunnel) or a proxy that adds the header.
enum AdminPage {
    static func html(_ report: StatusReport) -> String {
        var pipelines = ""
        for pipeline in report.pipelines {
            func box(_ kind: String, _ id: String) -> String {
                "<div class=\"box \(kind)\" data-kind=\"\(kind)\" data-id=\"\(escape(id))\"><b>\(escape(id))</b>"
                    + "<span class=\"kind\">\(kind)</span><span class=\"rate\" data-rate=\"\(kind)/\(escape(id))\">…</span>"
                    + "<span class=\"figures\"></span></div>"
            }
            let columns = [
                pipeline.receivers.map { box("receiver", $0) },
                pipeline.processors.map { box("processor", $0.id) },
                pipeline.exporters.map { box("exporter", $0) } + pipeline.connectors.map { box("connector", $0) }
                    + pipeline.notifiers.map { box("notifier", $0) },
            ].filter { !$0.isEmpty }
            pipelines += "<section class=\"pipeline\" data-pipeline=\"\(escape(pipeline.id))\"><h3>pipeline \(escape(pipeline.id))</h3><div class=\"flow\">"
            pipelines += columns.map { "<div class=\"column\">\($0.joined())</div>" }.joined(separator: "<div class=\"arrow\">→</div>")
            pipelines += "</div></section>"
        }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>spanhost</title>
            <style>
            body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
            h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px} h3{font-size:14px;margin:8px 0}
            .flow{display:flex;align-items:center;gap:8px}.column{display:flex;flex-direction:column;gap:6px}
            .arrow{font-size:22px;color:#888}.box{border:1px solid #bbb;border-radius:6px;padding:6px 10px;background:#fff;min-width:150px}
            .box b{display:block}.kind{color:#888;font-size:11px;margin-right:6px}.rate{color:#06c;font-weight:600}
            .figures{display:block;font-size:11px;color:#555}.unhealthy{border-color:#c00;background:#fee}
            table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:12px}
            #map{background:#fff;border:1px solid #ddd}#maphint{color:#555}#maphint pre{background:#fff;border:1px solid #ddd;padding:6px;display:inline-block}
            td.none{color:#888;font-style:italic}#errors tr.pick{cursor:pointer}#errors tr.chosen{background:#eef}
            #errorflow{margin-top:8px;max-width:1100px}#errorflow .step{display:inline-block;border:1px solid #bbb;border-radius:4px;padding:2px 6px;margin:2px;background:#fff}
            #errorflow .step.failing{border-color:#c00;background:#fee}#errorflow pre{background:#fff;border:1px solid #ddd;padding:6px;white-space:pre-wrap;font-size:12px}
            </style></head><body>
            <h1>spanhost</h1><div id="updated">figures from /status, every 2 s</div>
            <h2>Errors</h2><div>service <select id="errorservice"><option value="">all</option></select></div>
            <table id="errors"></table><div id="errorflow"></div>
            <h2>Pipelines</h2>\(pipelines)
            <h2>Live tap</h2><div>pipeline <select id="tappipeline"></select> point <select id="tappoint"></select>
            condition <input id="tapcondition" size="48" placeholder='attributes["http.response.status_code"] >= 500'>
            <button id="tapstart">watch</button> <label><input type="checkbox" id="tappause"> pause</label> <span id="tapstate"></span></div>
            <table id="tapspans"></table><pre id="tapspan"></pre>
            <h2>Exporter queues</h2><table id="queues"><tr><th>exporter</th><th>batches</th><th>oldest (s)</th><th>exported</th><th>failed</th><th>dropped</th></tr></table>
            <h2>Service map</h2><div id="maphint"></div><svg id="map" width="760" height="360" viewBox="0 0 760 360"></svg><table id="edges"></table>
            <h2>Last notifications</h2><table id="notifications"></table>
            <h2>Plugin images</h2><table id="plugins"></table>
            <h2>Reloads</h2><table id="reloads"></table>
            <h2>Memory</h2><div id="memory"></div>
            <script>
            \(script)
            </script></body></html>
            """
    }

    /// Text from the config (component ids) goes into HTML escaped.
    static func escape(_ text: String) -> String {
        var out = ""
        for ch in text {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }

    /// Builds everything with textContent and createElement: names from spans (services) never
    /// become markup.
    static let script = #"""
    let previous = null;
    const el = (tag, text) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; };
    function table(id, header, rows, none) {
      const t = document.getElementById(id); t.textContent = '';
      const h = el('tr'); header.forEach(c => h.appendChild(el('th', c))); t.appendChild(h);
      rows.forEach(r => { const tr = el('tr'); r.forEach(c => tr.appendChild(el('td', String(c)))); t.appendChild(tr); });
      if (!rows.length) { const td = el('td', none || 'none yet'); td.colSpan = header.length; td.className = 'none'; const tr = el('tr'); tr.appendChild(td); t.appendChild(tr); }
    }
    // What a box's rate counts: notifiers deliver events, everything else moves spans.
    const unit = kind => kind === 'notifier' ? 'events' : 'spans';
    function flowCounter(kind, c) {
      if (kind === 'receiver') return c.accepted_spans || 0;
      if (kind === 'processor') return c.received || 0;
      if (kind === 'exporter') return c.exported || 0;
      if (kind === 'notifier') return c.notified || 0;
      return 0;
    }
    function components(s) {
      const all = {};
      s.receivers.forEach(r => all['receiver/' + r.id] = {counters: r.counters, health: 'healthy'});
      s.pipelines.forEach(p => p.processors.forEach(c => all['processor/' + c.id] = c));
      s.exporters.forEach(c => all['exporter/' + c.id] = c);
      s.notifiers.forEach(c => all['notifier/' + c.id] = c);
      (s.connectors || []).forEach(c => all['connector/' + c.id] = {counters: c.counters, health: 'healthy', connector: c});
      return all;
    }
    // Services in columns by depth (callers left of the services they call), so every edge
    // runs left to right with its arrow at the server; a cycle's back edge bends below.
    function drawMap(edges, rates) {
      const svg = document.getElementById('map'); svg.textContent = '';
      const ns = 'http://www.w3.org/2000/svg';
      const names = [...new Set(edges.flatMap(e => [e.client, e.server]))].sort();
      const depth = {}; names.forEach(n => depth[n] = 0);
      for (let round = 0; round < names.length; round++)
        edges.forEach(e => { if (e.client !== e.server && depth[e.server] < depth[e.client] + 1 && depth[e.client] + 1 < names.length) depth[e.server] = depth[e.client] + 1; });
      const columns = []; names.forEach(n => (columns[depth[n]] = columns[depth[n]] || []).push(n));
      // Each column leaves room for its names, then for the edge labels, which start past them.
      const nameRoom = 8 * Math.max(6, ...names.map(n => n.length)) + 12, labelRoom = 230;
      const colWidth = nameRoom + labelRoom, rows = Math.max(1, ...columns.filter(c => c).map(c => c.length));
      const width = Math.max(760, colWidth * columns.length), height = Math.max(200, 60 * rows + 60);
      svg.setAttribute('width', width); svg.setAttribute('height', height); svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
      const pos = {};
      columns.forEach((col, c) => (col || []).forEach((name, i) => { pos[name] = [colWidth * c + 20, (height / (col.length + 1)) * (i + 1)]; }));
      const defs = document.createElementNS(ns, 'defs');
      ['#06c', '#c00'].forEach((color, i) => {
        const m = document.createElementNS(ns, 'marker');
        Object.entries({id: 'arrow' + i, viewBox: '0 0 10 10', refX: 18, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto'}).forEach(([k, v]) => m.setAttribute(k, v));
        const path = document.createElementNS(ns, 'path'); path.setAttribute('d', 'M0,0 L10,5 L0,10 z'); path.setAttribute('fill', color);
        m.appendChild(path); defs.appendChild(m);
      });
      svg.appendChild(defs);
      edges.forEach(e => {
        const [x1, y1] = pos[e.client], [x2, y2] = pos[e.server];
        const bad = e.errorRate > 0.05, back = x2 <= x1;
        const path = document.createElementNS(ns, 'path');
        const d = back ? 'M' + x1 + ',' + y1 + ' C' + x1 + ',' + (height - 10) + ' ' + x2 + ',' + (height - 10) + ' ' + x2 + ',' + y2
                       : 'M' + x1 + ',' + y1 + ' L' + x2 + ',' + y2;
        Object.entries({d, fill: 'none', stroke: bad ? '#c00' : '#06c', 'stroke-width': 2, 'marker-end': 'url(#arrow' + (bad ? 1 : 0) + ')',
                        class: 'edge', 'data-client': e.client, 'data-server': e.server}).forEach(([k, v]) => path.setAttribute(k, v));
        svg.appendChild(path);
        const label = document.createElementNS(ns, 'text');
        const lx = back ? (x1 + x2) / 2 : x1 + nameRoom, ly = back ? height - 14 : y1 + (y2 - y1) * (lx - x1) / (x2 - x1) - 4;
        label.setAttribute('x', lx); label.setAttribute('y', ly);
        label.setAttribute('text-anchor', back ? 'middle' : 'start'); label.setAttribute('font-size', 10); label.setAttribute('class', 'edgelabel');
        const rate = rates[e.client + '→' + e.server];
        label.textContent = (rate === undefined ? e.calls + ' calls' : rate.toFixed(1) + ' calls/s') + ' · ' + (100 * e.errorRate).toFixed(1) + '% err · p95 ' + e.serverP95Ms + ' ms';
        svg.appendChild(label);
      });
      names.forEach(name => {
        const [x, y] = pos[name];
        const c = document.createElementNS(ns, 'circle');
        Object.entries({cx: x, cy: y, r: 8, fill: '#333'}).forEach(([k, v]) => c.setAttribute(k, v)); svg.appendChild(c);
        const t = document.createElementNS(ns, 'text');
        t.setAttribute('x', x); t.setAttribute('y', y + 22); t.setAttribute('text-anchor', 'start'); t.setAttribute('class', 'service');
        t.textContent = name; svg.appendChild(t);
      });
      // Labels that do not fit the drawing, or overlap a service's name, are counted: the map
      // is laid out to keep this 0 (the page's test checks it).
      const boxes = [...svg.querySelectorAll('text')].map(t => ({t, b: t.getBBox()}));
      const names2 = boxes.filter(x => x.t.classList.contains('service'));
      const clipped = boxes.filter(({b}) => b.x < 0 || b.y < 0 || b.x + b.width > width || b.y + b.height > height).length;
      const overlaps = boxes.filter(({t, b}) => !t.classList.contains('service') && names2.some(({b: n}) =>
        b.x < n.x + n.width && n.x < b.x + b.width && b.y < n.y + n.height && n.y < b.y + b.height)).length;
      svg.dataset.clipped = clipped; svg.dataset.overlaps = overlaps;
    }
    // The Errors view: /errors grouped by signature, newest first; a row opens its latest
    // occurrence (or the one #error=<trace id> names: the link to share) as its flow.
    let errorData = [], chosen = location.hash.startsWith('#error=') ? location.hash.slice(7) : null;
    function occurrences() { return errorData.flatMap(g => g.occurrences.map(o => ({group: g, o, e: JSON.parse(o.event)}))); }
    function showFlow() {
      const box = document.getElementById('errorflow'); box.textContent = '';
      const all = occurrences(); const hit = all.find(x => x.o.traceId === chosen) || null;
      if (!hit) return;
      const a = hit.e.attributes || {};
      const link = el('a', 'link to this error'); link.href = '#error=' + hit.o.traceId; link.id = 'errorlink';
      box.appendChild(el('h3', hit.e.summary)); box.appendChild(link);
      box.appendChild(el('div', 'trace ' + hit.o.traceId + ' · ' + hit.o.time + ' · ' + (hit.group.count) + ' of this error since ' + hit.group.firstSeen));
      const path = a['error_flow.path'] || [];
      const flow = el('div'); flow.className = 'flow-steps';
      path.forEach((step, i) => {
        if (i) flow.appendChild(el('span', ' → '));
        const b = el('span', (step.service || '') + ' · ' + step.name + ' (' + Number(step.duration_ms).toFixed(1) + ' ms)');
        b.className = 'step' + (i === path.length - 1 ? ' failing' : ''); flow.appendChild(b);
      });
      if (!path.length) flow.appendChild(el('span', (a['service.name'] || '') + ' · ' + (a['span.name'] || '')));
      box.appendChild(flow);
      const exc = el('div', (a['exception.type'] || 'error') + ': ' + (a['exception.message'] || hit.e.summary)); exc.className = 'exception';
      box.appendChild(exc);
      if (a['exception.stacktrace']) box.appendChild(el('pre', a['exception.stacktrace']));
      const recent = el('div', 'recent occurrences: '); recent.className = 'recent';
      hit.group.occurrences.forEach(o => {
        const l = el('a', o.time.slice(11, 19)); l.href = '#error=' + o.traceId; l.title = 'trace ' + o.traceId;
        l.onclick = () => { chosen = o.traceId; drawErrors(); }; recent.appendChild(l); recent.appendChild(el('span', ' '));
      });
      box.appendChild(recent);
    }
    function drawErrors() {
      const select = document.getElementById('errorservice'), keep = select.value;
      const services = [...new Set(errorData.map(g => g.service).filter(s => s))].sort();
      select.textContent = ''; select.appendChild(el('option', 'all')).value = '';
      services.forEach(s => { const o = el('option', s); o.value = s; select.appendChild(o); });
      select.value = services.includes(keep) ? keep : '';
      const shown = errorData.filter(g => !select.value || g.service === select.value);
      table('errors', ['last seen', 'service', 'error', 'count', 'first seen'], shown.map(g =>
        [g.lastSeen, g.service, g.summary, g.count, g.firstSeen]), 'no errors seen yet');
      const rows = document.getElementById('errors').querySelectorAll('tr');
      shown.forEach((g, i) => {
        const tr = rows[i + 1]; tr.className = 'pick'; tr.dataset.trace = g.occurrences[0].traceId || '';
        if (g.occurrences.some(o => o.traceId === chosen)) tr.classList.add('chosen');
        tr.onclick = () => { chosen = tr.dataset.trace; history.replaceState(null, '', '#error=' + chosen); drawErrors(); };
      });
      showFlow();
    }
    document.getElementById('errorservice').onchange = drawErrors;

    // The live tap: spans at one point of a pipeline for which a condition holds, polled every
    // second while the page watches (the server ends a tap 30 s after its last poll).
    // #tap=<pipeline>:<point>:<condition> starts one when the page opens.
    let tap = null, tapSeq = 0, tapRows = [], pipelinesSeen = null, tapChoice = null;
    const value = v => v === undefined ? '' : v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue ?? JSON.stringify(v);
    function tapPoints(p) {
      return [{label: 'after the receivers', point: 0}].concat(p.processors.map((c, i) =>
        ({label: 'after ' + c.id + (i === p.processors.length - 1 ? ' (before the exporters)' : ''), point: i + 1})));
    }
    function fillTapChoices(s) {
      const key = JSON.stringify(s.pipelines.map(p => [p.id, p.processors.map(c => c.id)]));
      if (key === pipelinesSeen) return; pipelinesSeen = key;
      const ps = document.getElementById('tappipeline'), pts = document.getElementById('tappoint');
      ps.textContent = ''; s.pipelines.forEach(p => { const o = el('option', p.id); o.value = p.id; ps.appendChild(o); });
      ps.onchange = () => { pts.textContent = ''; const p = s.pipelines.find(p => p.id === ps.value);
        (p ? tapPoints(p) : []).forEach(x => { const o = el('option', x.label); o.value = x.point; pts.appendChild(o); }); };
      if (tapChoice) ps.value = tapChoice.pipeline;
      ps.onchange();
      if (tapChoice) pts.value = tapChoice.point;
    }
    async function startTap(pipeline, point, condition) {
      const state = document.getElementById('tapstate');
      tapChoice = {pipeline, point: String(point)}; pipelinesSeen = null;
      const r = await fetch('/tap', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({pipeline, point: Number(point), condition})});
      const text = await r.text();
      if (!r.ok) { tap = null; state.textContent = text; return; }
      tap = JSON.parse(text).id; tapSeq = 0; tapRows = [];
      state.textContent = 'watching ' + pipeline + ' at point ' + point + (condition ? ' where ' + condition : '');
      drawTap();
    }
    function drawTap() {
      table('tapspans', ['service', 'span', 'trace', 'status', 'duration ms'], tapRows.map(x =>
        [x.service, x.span.name, x.span.traceId, (x.span.status || {}).code || 0,
         ((Number(x.span.endTimeUnixNano) - Number(x.span.startTimeUnixNano)) / 1e6).toFixed(1)]), tap ? 'no matching spans yet' : 'not watching');
      document.getElementById('tapspans').querySelectorAll('tr').forEach((tr, i) => {
        if (i === 0 || !tapRows[i - 1]) return;
        tr.className = 'pick'; tr.onclick = () => {
          const sp = tapRows[i - 1].span;
          document.getElementById('tapspan').textContent = sp.name + '\n' + (sp.attributes || []).map(a => a.key + ' = ' + value(a.value)).join('\n');
        };
      });
    }
    async function pollTap() {
      if (!tap || document.getElementById('tappause').checked) return;
      const r = await fetch('/tap/' + tap + '/' + tapSeq);
      if (!r.ok) { tap = null; document.getElementById('tapstate').textContent = 'the tap ended'; drawTap(); return; }
      const d = await r.json();
      d.batches.forEach(b => {
        tapSeq = b.seq;
        JSON.parse(b.otlp).resourceSpans.forEach(rs => {
          const service = value(((rs.resource || {}).attributes || []).find(a => a.key === 'service.name')?.value);
          rs.scopeSpans.forEach(ss => ss.spans.forEach(span => tapRows.unshift({service, span})));
        });
      });
      tapRows = tapRows.slice(0, 100); drawTap();
    }
    document.getElementById('tapstart').onclick = () => startTap(document.getElementById('tappipeline').value,
      document.getElementById('tappoint').value, document.getElementById('tapcondition').value);
    if (location.hash.startsWith('#tap=')) {
      const [pipeline, point, ...rest] = decodeURIComponent(location.hash.slice(5)).split(':');
      document.getElementById('tapcondition').value = rest.join(':');
      startTap(pipeline, point, rest.join(':'));
    }
    setInterval(pollTap, 1000);
    async function refreshErrors() {
      const r = await fetch('/errors');
      if (r.ok) { errorData = (await r.json()).signatures; drawErrors(); }
    }
    async function refresh() {
      const r = await fetch('/status');
      if (!r.ok) { document.getElementById('updated').textContent = '/status answered ' + r.status; return; }
      const s = await r.json(); const now = Date.now(); const all = components(s);
      fillTapChoices(s);
      document.querySelectorAll('.box').forEach(box => {
        const key = box.dataset.kind + '/' + box.dataset.id; const c = all[key];
        if (!c) return;
        box.classList.toggle('unhealthy', c.health !== 'healthy');
        box.querySelector('.figures').textContent = Object.entries(c.counters).map(([k, v]) => k + ' ' + v).join(' · ');
        if (c.connector) {
          box.querySelector('.rate').textContent = c.connector.edges ? c.connector.edges.length + ' service pairs' : (c.connector.series || 0) + ' series';
          return;
        }
        const count = flowCounter(box.dataset.kind, c.counters);
        const before = previous && previous.all[key] ? flowCounter(box.dataset.kind, previous.all[key].counters) : null;
        const rate = before === null ? null : (count - before) / ((now - previous.time) / 1000);
        const u = unit(box.dataset.kind);
        box.querySelector('.rate').textContent = rate === null ? count + ' ' + u : rate.toFixed(0) + ' ' + u + '/s (' + count + ')';
      });
      table('queues', ['exporter', 'batches', 'oldest (s)', 'exported', 'failed', 'dropped'], s.exporters.map(e =>
        [e.id, e.queue ? e.queue.depth : (e.queueDepth || 0), e.queue && e.queue.oldestAgeSeconds ? e.queue.oldestAgeSeconds.toFixed(1) : 0,
         e.counters.exported || 0, e.counters.failed || 0, (e.counters.dropped_on_full || 0) + (e.counters.dropped || 0)]));
      const graph = (s.connectors || []).find(c => c.edges);
      const hint = document.getElementById('maphint'); hint.textContent = '';
      if (!graph) {
        hint.appendChild(el('p', 'No servicegraph connector runs, so there is no map. Add one and list it as an exporter of a traces pipeline:'));
        hint.appendChild(el('pre', 'connectors:\n  servicegraph: {}\nservice:\n  pipelines:\n    traces:\n      exporters: [..., servicegraph]'));
      }
      const edges = graph ? graph.edges : [];
      const rates = {};
      if (previous && previous.edges) edges.forEach(e => {
        const before = previous.edges[e.client + '→' + e.server];
        if (before !== undefined) rates[e.client + '→' + e.server] = (e.calls - before) / ((now - previous.time) / 1000);
      });
      drawMap(edges, rates);
      table('edges', ['client', 'server', 'calls', 'error rate', 'server p95 ms'], edges.map(e =>
        [e.client, e.server, e.calls, (100 * e.errorRate).toFixed(1) + '%', e.serverP95Ms]),
        graph ? 'no calls between services seen yet' : 'no servicegraph connector');
      table('plugins', ['plugin', 'kind', 'version', 'abi', 'state', 'sha256'], s.plugins.map(p =>
        [p.name, p.kind, p.version, p.abi, p.state, p.sha256.slice(0, 12)]).concat((s.refusedPlugins || []).map(p =>
        [p.file, '', '', '', 'refused: ' + p.reason, ''])).concat((s.quarantined || []).map(q =>
        [q.plugin, '', q.version, '', 'quarantined: ' + q.reason, (q.sha256 || '').slice(0, 12)])));
      table('notifications', ['time', 'notifier', 'kind', 'count', 'summary', 'outcome'], s.notifiers.flatMap(n =>
        (n.recent || []).map(e => [e.time, n.id, e.kind, e.count, e.summary, e.outcome])).sort().reverse().slice(0, 20));
      table('reloads', ['time', 'trigger', 'ok', 'took ms', 'message'], (s.reloads.recent || []).map(e =>
        [e.time, e.trigger, e.ok ? 'yes' : 'no', e.tookMs, e.message]));
      document.getElementById('memory').textContent = 'batches ' + (s.memory.batchBytes >> 20) + ' MiB, arena slabs ' +
        (s.memory.arenaMappedBytes >> 20) + ' MiB, request bodies ' + (s.memory.requestBodyBytes >> 20) + ' MiB';
      document.getElementById('updated').textContent = 'updated ' + new Date(now).toLocaleTimeString();
      previous = {time: now, all, edges: Object.fromEntries(edges.map(e => [e.client + '→' + e.server, e.calls]))};
    }
    refresh(); refreshErrors(); setInterval(() => { refresh(); refreshErrors(); }, 2000);
    """#
}
