'use strict';
// The dashboard's script: it reads the service's API with the key a person enters, and draws
// every chart itself as SVG, each with a table of the same numbers. It builds the page with DOM
// calls only (no HTML strings, no inline style), which is what the page's Content Security
// Policy allows.
(() => {
  const KEY_STORAGE = 'flight-counter.dashboard.key';
  const REFRESH_SECONDS = 15;
  // The windows the service keeps: today and the 61 days before it, this month and the 23
  // months before it.
  const DAYS = 62;
  const MONTHS = 24;
  const TOP_LIMIT = 10;
  const MAX_COMPARED = 5;
  // The first page of the route list feeds the route pickers' suggestions.
  const LISTED_ROUTES = 500;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat('en-US');

  const state = {
    key: readStoredKey(),
    route: '',
    routeChosen: false,
    compared: [],
    comparedChosen: false,
    airline: '',
    paused: false,
    timer: 0,
    running: false,
    again: false,
    needsKey: false,
    clockOffset: 0,
    retryAt: 0,
    listed: false,
    suggestions: new Set(),
  };

  function readStoredKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || '';
    } catch {
      return '';
    }
  }

  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      // Storage can be refused (private windows, policies); the key then lasts until reload.
    }
  }

  // ---------------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, code, message, path) {
      super(message);
      this.status = status;
      this.code = code;
      this.path = path;
      this.retryAfter = 0;
    }

    describe() {
      return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
    }
  }

  // What went wrong, for people: the service's status, code and message, or the script's own
  // error (a body of an unexpected shape) as it is.
  function describe(err) {
    return err instanceof ApiError ? err.describe() : String((err && err.message) || err);
  }

  // The service's clock decides what "today" is: its Date header keeps an offset from this
  // browser's clock, so a browser a few minutes off still asks for the service's day.
  function noteClock(resp) {
    const date = Date.parse(resp.headers.get('Date') || '');
    if (!Number.isNaN(date)) state.clockOffset = date - Date.now();
  }

  function serverNow() {
    return new Date(Date.now() + state.clockOffset);
  }

  async function api(path, { withKey = true } = {}) {
    const headers = { Accept: 'application/json' };
    if (withKey && state.key) headers.Authorization = `Bearer ${state.key}`;
    let resp;
    try {
      // 'no-cache': the browser asks every time, naming the answer it holds (If-None-Match),
      // and the service answers 304 without a body when nothing changed.
      resp = await fetch(path, { headers, cache: 'no-cache', credentials: 'omit' });
    } catch (err) {
      throw new ApiError(0, 'network', `could not reach the service (${err.message})`, path);
    }
    noteClock(resp);
    const text = await resp.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!resp.ok) {
      const code = body && typeof body.error === 'string' ? body.error : `http_${resp.status}`;
      const message = body && typeof body.message === 'string'
        ? body.message
        : (text.slice(0, 200) || resp.statusText || 'no message');
      const err = new ApiError(resp.status, code, message, path);
      err.retryAfter = Number.parseInt(resp.headers.get('Retry-After') || '0', 10) || 0;
      throw err;
    }
    if (body === null || typeof body !== 'object') {
      throw new ApiError(resp.status, 'not_json', 'the answer is not a JSON object', path);
    }
    return body;
  }

  const enc = encodeURIComponent;
  const topPath = (period, value) => {
    let path = `/top-routes?${period}=${enc(value)}&limit=${TOP_LIMIT}`;
    if (state.airline) path += `&airline=${enc(state.airline)}`;
    return path;
  };
  const dailyPath = (route, from, to) =>
    `/transactions/${enc(route)}/daily?from=${from}&to=${to}`;
  const monthlyPath = (route, from, to) =>
    `/transactions/${enc(route)}/monthly?from=${from}&to=${to}`;

  // ---------------------------------------------------------------------------------------
  // Dates, in UTC as the service counts them

  const pad = (n) => String(n).padStart(2, '0');
  const dayText = (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const monthText = (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}`;

  function periods(now) {
    const y = now.getUTCFullYear();
    const m = now.getUTCMonth();
    const d = now.getUTCDate();
    return {
      today: dayText(now),
      month: monthText(now),
      firstDay: dayText(new Date(Date.UTC(y, m, d - (DAYS - 1)))),
      firstMonth: monthText(new Date(Date.UTC(y, m - (MONTHS - 1), 1))),
    };
  }

  // ---------------------------------------------------------------------------------------
  // Drawing

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function chartRoot(width, height, label) {
    const root = svg('svg', {
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': label,
    });
    root.append(svg('title', {}, label));
    return root;
  }

  // An axis maximum of 1, 2 or 5 times a power of ten, split in at most five steps.
  function scaleFor(max) {
    if (max <= 0) return { top: 4, step: 1 };
    const rough = max / 4;
    const power = 10 ** Math.floor(Math.log10(rough));
    const step = Math.max(1, [1, 2, 5, 10].map((f) => f * power).find((s) => s >= rough));
    return { top: Math.ceil(max / step) * step, step };
  }

  // Charts are drawn at the width they get, one SVG unit a CSS pixel, so that their text keeps
  // the page's size; a panel that changes width is drawn again.
  const redraws = new WeakMap();
  const resized = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const again = redraws.get(entry.target);
      if (again && Math.abs(again.width - entry.contentRect.width) > 2) again.draw();
    }
  });

  function widthOf(container, draw) {
    const width = Math.max(300, Math.round(container.clientWidth || 600));
    redraws.set(container, { width, draw });
    resized.observe(container);
    return width;
  }

  function showEmpty(container, text) {
    redraws.delete(container);
    container.replaceChildren(el('p', { class: 'empty' }, text));
  }

  // Horizontal bars, one per item: long route names stay readable and the ranking reads top
  // down. Clicking a bar shows that route (the table's buttons do the same from the keyboard).
  function barChart(container, items, label, onPick) {
    if (!items.length) {
      showEmpty(container, 'No transactions yet.');
      return;
    }
    const rowHeight = 24;
    const width = widthOf(container, () => barChart(container, items, label, onPick));
    const left = 78;
    const right = 64;
    const height = items.length * rowHeight + 8;
    const max = Math.max(1, ...items.map((item) => item.value));
    const scale = (width - left - right) / max;
    const root = chartRoot(width, height, label);
    items.forEach((item, i) => {
      const y = 4 + i * rowHeight;
      const row = svg('g', { class: 'bar-row' });
      row.append(svg('title', {}, `${item.label}: ${number.format(item.value)}`));
      row.append(svg('text', { x: left - 8, y: y + rowHeight / 2 + 4, 'text-anchor': 'end', class: 'label' }, item.label));
      const w = item.value > 0 ? Math.max(2, item.value * scale) : 0;
      row.append(svg('rect', { x: left, y: y + 3, width: w.toFixed(1), height: rowHeight - 6, rx: 2, class: 'bar' }));
      row.append(svg('text', { x: left + w + 6, y: y + rowHeight / 2 + 4, class: 'value' }, number.format(item.value)));
      if (onPick) row.addEventListener('click', () => onPick(item.label));
      root.append(row);
    });
    container.replaceChildren(root);
  }

  // Lines over periods: `labels` are the periods (dates or months), each series has one value
  // per label.
  function lineChart(container, labels, series, label) {
    if (!labels.length || !series.length) {
      showEmpty(container, 'Nothing to show.');
      return;
    }
    const width = widthOf(container, () => lineChart(container, labels, series, label));
    const height = 260;
    const m = { left: 52, right: 14, top: 12, bottom: 34 };
    const plotW = width - m.left - m.right;
    const plotH = height - m.top - m.bottom;
    const max = Math.max(0, ...series.flatMap((s) => s.values));
    const { top, step } = scaleFor(max);
    const x = (i) => m.left + (labels.length === 1 ? plotW / 2 : (i * plotW) / (labels.length - 1));
    const y = (v) => m.top + plotH - (v / top) * plotH;
    const root = chartRoot(width, height, label);

    for (let v = 0; v <= top; v += step) {
      root.append(svg('line', { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v), class: 'grid-line' }));
      root.append(svg('text', { x: m.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, number.format(v)));
    }
    root.append(svg('line', { x1: m.left, x2: m.left, y1: m.top, y2: m.top + plotH, class: 'axis' }));
    root.append(svg('line', { x1: m.left, x2: width - m.right, y1: m.top + plotH, y2: m.top + plotH, class: 'axis' }));

    // About seven labels along the bottom, always the last (today, this month).
    const every = Math.max(1, Math.ceil(labels.length / 7));
    labels.forEach((text, i) => {
      const last = i === labels.length - 1;
      if (!last && (labels.length - 1 - i) % every !== 0) return;
      const short = text.length === 10 ? text.slice(5) : text;
      root.append(svg('line', { x1: x(i), x2: x(i), y1: m.top + plotH, y2: m.top + plotH + 4, class: 'axis' }));
      // The last label ends at the axis' end rather than running past it.
      const anchor = last && labels.length > 1 ? 'end' : 'middle';
      root.append(svg('text', { x: x(i) + (anchor === 'end' ? 4 : 0), y: height - m.bottom + 18, 'text-anchor': anchor }, short));
    });

    series.forEach((s, n) => {
      const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      root.append(svg('polyline', { points, class: `series s${n}` }));
      const dots = svg('g', { class: `s${n}` });
      s.values.forEach((v, i) => {
        const dot = svg('circle', { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: labels.length > 31 ? 2 : 3, class: 'point' });
        dot.append(svg('title', {}, `${s.name}, ${labels[i]}: ${number.format(v)}`));
        dots.append(dot);
      });
      root.append(dots);
    });
    container.replaceChildren(root);
  }

  function legend(list, names) {
    list.replaceChildren(...names.map((name, n) => {
      const item = el('li');
      const swatch = svg('svg', { viewBox: '0 0 28 10' });
      swatch.append(svg('line', { x1: 0, x2: 28, y1: 5, y2: 5, class: `series s${n}` }));
      item.append(swatch, document.createTextNode(name));
      return item;
    }));
  }

  // A table of the chart's numbers: `columns` are header texts; each row is its header cell
  // (a period or a route) then numbers. A route header can be a button that shows the route.
  function table(view, caption, columns, rows, onPick) {
    const t = el('table');
    t.append(el('caption', {}, caption));
    const head = el('tr');
    columns.forEach((c, i) => head.append(el('th', { scope: 'col', class: i ? 'num' : '' }, c)));
    const thead = el('thead');
    thead.append(head);
    t.append(thead);
    const body = el('tbody');
    for (const [first, ...values] of rows) {
      const tr = el('tr');
      const th = el('th', { scope: 'row' });
      if (onPick) {
        const pick = el('button', { type: 'button', class: 'route-link' }, first);
        pick.addEventListener('click', () => onPick(first));
        th.append(pick);
      } else {
        th.textContent = first;
      }
      tr.append(th);
      for (const v of values) tr.append(el('td', { class: 'num' }, number.format(v)));
      body.append(tr);
    }
    t.append(body);
    view.replaceChildren(t);
    toggleOf(view).hidden = false;
  }

  // A panel with nothing to show has no table, and no button for one.
  function clearTable(view) {
    view.replaceChildren();
    toggleOf(view).hidden = true;
  }

  const toggleOf = (view) => $(view.id.replace('view-', 'toggle-'));

  // Each panel gets a button that shows and hides its table.
  function addTableToggles() {
    for (const view of document.querySelectorAll('.table-view')) {
      const button = el('button', {
        type: 'button',
        class: 'table-toggle',
        'aria-expanded': 'false',
        'aria-controls': view.id,
        id: view.id.replace('view-', 'toggle-'),
      }, 'Show table');
      button.hidden = true;
      // Every panel has one: the name says which table, the visible text stays short.
      const name = view.dataset.name;
      button.setAttribute('aria-label', `Show table: ${name}`);
      button.addEventListener('click', () => {
        const open = view.hidden;
        view.hidden = !open;
        button.setAttribute('aria-expanded', String(open));
        button.textContent = open ? 'Hide table' : 'Show table';
        button.setAttribute('aria-label', `${open ? 'Hide' : 'Show'} table: ${name}`);
      });
      view.before(button);
    }
  }

  function meta(id, text, failed = false) {
    const node = $(`meta-${id}`);
    node.textContent = text;
    node.classList.toggle('failed', failed);
  }

  function shortTime(date) {
    return date.toISOString().slice(11, 19) + ' UTC';
  }

  // ---------------------------------------------------------------------------------------
  // Errors, the key form and the page's state in its address

  // What went wrong in the last refresh, by part of the page; shown until a refresh succeeds.
  const problems = new Map();

  function report(part, err) {
    if (err) problems.set(part, err);
    else problems.delete(part);
  }

  function showProblems() {
    const lines = [...problems].map(([part, err]) => `${part}: ${describe(err)}${err.path ? ` (GET ${err.path})` : ''}`);
    const list = $('error-list');
    const current = [...list.children].map((li) => li.textContent);
    // Rewritten only when it changes, so that a screen reader hears each problem once.
    if (current.join('\n') !== lines.join('\n')) {
      list.replaceChildren(...lines.map((line) => el('li', {}, line)));
    }
    $('errors').hidden = lines.length === 0;
  }

  function refusalMessage(err) {
    if (err.status === 403) {
      return `This key may not read counts (${describe(err)}). Enter a read key.`;
    }
    if (state.key) {
      return `The service did not accept this key (${describe(err)}). Enter a valid read key.`;
    }
    return 'This service needs an API key to read counts. Enter a read key.';
  }

  function askForKey(message) {
    state.key = '';
    state.again = false;
    storeKey('');
    state.needsKey = true;
    problems.clear();
    showProblems();
    $('key-message').textContent = message;
    $('key-panel').hidden = false;
    $('forget').hidden = true;
    $('key-input').value = '';
    $('key-input').focus();
    showLive();
  }

  function saveAddress() {
    const params = new URLSearchParams();
    if (state.routeChosen && state.route) params.set('route', state.route);
    if (state.comparedChosen) params.set('compare', state.compared.join(','));
    if (state.airline) params.set('airline', state.airline);
    const hash = params.toString();
    history.replaceState(null, '', hash ? `#${hash}` : location.pathname);
  }

  // Only shapes a route or an airline code can have; the service checks the rest.
  const plausible = (text) => /^[A-Za-z0-9]{1,8}$/.test(text);

  function loadAddress() {
    const params = new URLSearchParams(location.hash.slice(1));
    const route = (params.get('route') || '').trim().toUpperCase();
    if (plausible(route)) {
      state.route = route;
      state.routeChosen = true;
    }
    if (params.has('compare')) {
      state.comparedChosen = true;
      state.compared = [...new Set((params.get('compare') || '').split(',')
        .map((r) => r.trim().toUpperCase()).filter(plausible))].slice(0, MAX_COMPARED);
    }
    const airline = (params.get('airline') || '').trim().toUpperCase();
    if (plausible(airline)) state.airline = airline;
    $('airline-input').value = state.airline;
    $('route-input').value = state.route;
  }

  function suggest(routes) {
    let added = false;
    for (const route of routes) {
      if (!state.suggestions.has(route)) {
        state.suggestions.add(route);
        added = true;
      }
    }
    if (added) {
      $('route-list').replaceChildren(...[...state.suggestions].sort()
        .map((route) => el('option', { value: route })));
    }
  }

  // ---------------------------------------------------------------------------------------
  // The parts of the page

  async function loadTop(period, value) {
    const id = period === 'day' ? 'top-day' : 'top-month';
    const part = period === 'day' ? 'Top routes today' : 'Top routes this month';
    try {
      const body = await api(topPath(period, value));
      const routes = Array.isArray(body.routes) ? body.routes : [];
      const where = state.airline ? ` on ${state.airline}` : '';
      $(`title-${id}`).textContent = `${period === 'day' ? 'Today' : 'This month'} (${body.date || value})`;
      const label = routes.length
        ? `Top ${routes.length} routes${where} by transactions, ${body.date || value}: `
          + routes.map((r) => `${r.route} ${number.format(r.transactions)}`).join(', ')
        : `No transactions${where} on ${body.date || value} yet`;
      barChart($(`chart-${id}`), routes.map((r) => ({ label: r.route, value: r.transactions })), label, pickRoute);
      table($(`view-${id}`), `Top routes${where}, ${body.date || value}`, ['Route', 'Transactions'],
        routes.map((r) => [r.route, r.transactions]), pickRoute);
      const asOf = Date.parse(body.as_of || '');
      if (Number.isNaN(asOf)) {
        meta(id, 'Ranking time not given.');
      } else {
        const age = Math.max(0, Math.round((serverNow() - asOf) / 1000));
        meta(id, `Ranking as of ${shortTime(new Date(asOf))} (${age} s old): the service rebuilds rankings periodically, so the latest transactions may not show yet.`);
      }
      suggest(routes.map((r) => r.route));
      report(part, null);
      return routes;
    } catch (err) {
      meta(id, `Not refreshed: ${describe(err)}`, true);
      report(part, err);
      throw err;
    }
  }

  // A route's daily series, read once per refresh however many parts show it.
  function dailyReader(p) {
    const reads = new Map();
    return (route) => {
      if (!reads.has(route)) reads.set(route, api(dailyPath(route, p.firstDay, p.today)));
      return reads.get(route);
    };
  }

  async function loadRoute(p, daily) {
    const route = state.route;
    if (!route) {
      for (const id of ['daily', 'monthly']) {
        showEmpty($(`chart-${id}`), 'Choose a route above, or a route in the top routes.');
        clearTable($(`view-${id}`));
        meta(id, '');
      }
      return;
    }
    const [days, months] = await Promise.allSettled([
      daily(route),
      api(monthlyPath(route, p.firstMonth, p.month)),
    ]);
    if (days.status === 'fulfilled') {
      const b = days.value;
      const list = Array.isArray(b.days) ? b.days : [];
      const values = list.map((d) => d.transactions);
      const total = values.reduce((a, v) => a + v, 0);
      $('title-daily').textContent = `${b.route}, last ${DAYS} days`;
      lineChart($('chart-daily'), list.map((d) => d.date), [{ name: b.route, values }],
        `Transactions per day on ${b.route} from ${p.firstDay} to ${p.today}: ${number.format(total)} in all, ${number.format(values.at(-1) || 0)} today`);
      table($('view-daily'), `${b.route}: transactions per UTC day`, ['Date', 'Transactions'],
        list.map((d) => [d.date, d.transactions]));
      meta('daily', `${number.format(total)} transactions in ${DAYS} days; ${number.format(values.at(-1) || 0)} today.`);
      report(`Route ${route}, days`, null);
    } else {
      meta('daily', `Not refreshed: ${describe(days.reason)}`, true);
      report(`Route ${route}, days`, days.reason);
    }
    if (months.status === 'fulfilled') {
      const b = months.value;
      const list = Array.isArray(b.months) ? b.months : [];
      const values = list.map((m) => m.transactions);
      const total = values.reduce((a, v) => a + v, 0);
      $('title-monthly').textContent = `${b.route}, last ${MONTHS} months`;
      lineChart($('chart-monthly'), list.map((m) => m.month), [{ name: b.route, values }],
        `Transactions per month on ${b.route} from ${p.firstMonth} to ${p.month}: ${number.format(total)} in all, ${number.format(values.at(-1) || 0)} this month`);
      table($('view-monthly'), `${b.route}: transactions per UTC month`, ['Month', 'Transactions'],
        list.map((m) => [m.month, m.transactions]));
      meta('monthly', `${number.format(total)} transactions in ${MONTHS} months; ${number.format(values.at(-1) || 0)} this month.`);
      report(`Route ${route}, months`, null);
    } else {
      meta('monthly', `Not refreshed: ${describe(months.reason)}`, true);
      report(`Route ${route}, months`, months.reason);
    }
    if (days.status === 'rejected') throw days.reason;
    if (months.status === 'rejected') throw months.reason;
  }

  function showCompared() {
    const list = $('compare-list');
    list.replaceChildren(...state.compared.map((route) => {
      const item = el('li', {}, route);
      const remove = el('button', { type: 'button', 'aria-label': `Remove ${route} from the comparison` }, 'Remove');
      remove.addEventListener('click', () => {
        state.compared = state.compared.filter((r) => r !== route);
        state.comparedChosen = true;
        saveAddress();
        showCompared();
        $('compare-input').focus();
        refresh();
      });
      item.append(remove);
      return item;
    }));
  }

  async function loadCompare(p, daily) {
    const routes = state.compared;
    if (!routes.length) {
      for (const id of ['compare', 'totals']) {
        showEmpty($(`chart-${id}`), 'Add routes to compare above.');
        clearTable($(`view-${id}`));
        meta(id, '');
      }
      $('legend-compare').replaceChildren();
      return;
    }
    const many = `/transactions?${routes.map((r) => `route=${enc(r)}`).join('&')}`;
    const [series, totals] = await Promise.allSettled([
      Promise.all(routes.map((r) => daily(r))),
      api(many),
    ]);
    if (series.status === 'fulfilled') {
      const bodies = series.value;
      const dates = (bodies[0].days || []).map((d) => d.date);
      const names = bodies.map((b) => b.route);
      const lines = bodies.map((b) => ({ name: b.route, values: (b.days || []).map((d) => d.transactions) }));
      lineChart($('chart-compare'), dates, lines,
        `Transactions per day from ${p.firstDay} to ${p.today} on ${names.join(', ')}; today: `
          + lines.map((l) => `${l.name} ${number.format(l.values.at(-1) || 0)}`).join(', '));
      legend($('legend-compare'), names);
      table($('view-compare'), 'Transactions per UTC day, by route', ['Date', ...names],
        dates.map((date, i) => [date, ...lines.map((l) => l.values[i] ?? 0)]));
      meta('compare', `${names.length} route${names.length > 1 ? 's' : ''}, one line each (colour and dash pattern).`);
      report('Compared routes, days', null);
    } else {
      meta('compare', `Not refreshed: ${describe(series.reason)}`, true);
      report('Compared routes, days', series.reason);
    }
    if (totals.status === 'fulfilled') {
      const list = Array.isArray(totals.value.routes) ? totals.value.routes : [];
      barChart($('chart-totals'), list.map((r) => ({ label: r.route, value: r.transactions })),
        `All-time transactions: ${list.map((r) => `${r.route} ${number.format(r.transactions)}`).join(', ')}`, pickRoute);
      table($('view-totals'), 'All-time transactions, by route', ['Route', 'Transactions'],
        list.map((r) => [r.route, r.transactions]), pickRoute);
      meta('totals', 'Every transaction recorded, not only the days kept.');
      report('Compared routes, totals', null);
    } else {
      meta('totals', `Not refreshed: ${describe(totals.reason)}`, true);
      report('Compared routes, totals', totals.reason);
    }
    if (series.status === 'rejected') throw series.reason;
    if (totals.status === 'rejected') throw totals.reason;
  }

  // The route list is newer than the reads: a service without it answers 400 or 404, and the
  // pickers then suggest the routes the rankings name.
  async function loadRouteList() {
    if (state.listed) return;
    try {
      const body = await api(`/transactions?limit=${LISTED_ROUTES}`);
      suggest((body.routes || []).map((r) => r.route));
      state.listed = true;
    } catch (err) {
      if (err.status === 400 || err.status === 404) {
        state.listed = true;
        return;
      }
      throw err;
    }
  }

  async function loadVersion() {
    try {
      const v = await api('/version', { withKey: false });
      $('version').textContent = `${v.name} ${v.version}, ${v.store} store`;
    } catch (err) {
      $('version').textContent = `version not known: ${describe(err)}`;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Refreshing

  async function refresh() {
    if (state.needsKey) return;
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = true;
    clearTimeout(state.timer);
    problems.clear();
    const failures = [];
    const keep = (promise) => promise.catch((err) => { failures.push(err); });
    try {
      const p = periods(serverNow());
      const [day, month] = await Promise.allSettled([loadTop('day', p.today), loadTop('month', p.month)]);
      for (const r of [day, month]) if (r.status === 'rejected') failures.push(r.reason);
      const ranked = [day, month].flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
      // Until someone picks, the page shows the busiest route, and compares the top three.
      if (!state.routeChosen && ranked.length) {
        state.route = ranked[0].route;
        $('route-input').value = state.route;
      }
      if (!state.comparedChosen && month.status === 'fulfilled') {
        state.compared = month.value.slice(0, 3).map((r) => r.route);
        showCompared();
      }
      const daily = dailyReader(p);
      await Promise.all([keep(loadRoute(p, daily)), keep(loadCompare(p, daily)), keep(loadRouteList())]);
    } finally {
      state.running = false;
    }
    const refused = failures.find((err) => err.status === 401 || err.status === 403);
    if (refused) {
      askForKey(refusalMessage(refused));
      return;
    }
    const limited = failures.find((err) => err.status === 429 || err.status === 503);
    state.retryAt = limited ? Date.now() + Math.max(1, limited.retryAfter) * 1000 : 0;
    showProblems();
    const now = new Date();
    const updated = $('updated');
    updated.dateTime = now.toISOString();
    updated.textContent = now.toLocaleTimeString() + (failures.length ? ' (with errors, listed above)' : '');
    if (state.again) {
      state.again = false;
      refresh();
      return;
    }
    schedule();
  }

  function schedule() {
    clearTimeout(state.timer);
    if (state.paused || state.needsKey) return;
    // A 429 or 503 asks for a pause of its own: the next refresh waits at least that long.
    const wait = Math.max(REFRESH_SECONDS * 1000, state.retryAt - Date.now());
    state.timer = setTimeout(() => {
      if (document.hidden) return; // resumed by visibilitychange
      refresh();
    }, wait);
  }

  function showLive() {
    const live = $('live');
    if (state.needsKey) live.textContent = 'waiting for an API key';
    else if (state.paused) live.textContent = 'live refresh paused';
    else live.textContent = `refreshing every ${REFRESH_SECONDS} s`;
  }

  // The button says what it will do; the state is in the status line beside it (a label that
  // changes and aria-pressed together would be read as "Resume, pressed").
  function setPaused(paused) {
    state.paused = paused;
    const button = $('pause');
    button.classList.toggle('active', paused);
    button.textContent = paused ? 'Resume live refresh' : 'Pause live refresh';
    showLive();
    if (paused) clearTimeout(state.timer);
    else refresh();
  }

  // A route picked from a form is checked by reading it: the service says what is wrong with
  // it, in its own words, and the page keeps what it showed.
  async function checkedRoute(text, messageId) {
    const message = $(messageId);
    const route = text.trim();
    if (!route) {
      message.textContent = 'Enter a route, e.g. AR1133.';
      return null;
    }
    const p = periods(serverNow());
    try {
      const body = await api(dailyPath(route, p.today, p.today));
      message.textContent = '';
      return body.route;
    } catch (err) {
      if (err.status === 401 || err.status === 403) {
        askForKey(refusalMessage(err));
        return null;
      }
      message.textContent = `${route}: ${describe(err)}`;
      return null;
    }
  }

  function pickRoute(route) {
    state.route = route;
    state.routeChosen = true;
    $('route-input').value = route;
    $('route-message').textContent = '';
    saveAddress();
    refresh();
    $('route-title').scrollIntoView({ block: 'start' });
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  function start() {
    addTableToggles();
    loadAddress();
    showCompared();

    $('key-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const key = $('key-input').value.trim();
      if (!key) {
        $('key-message').textContent = 'Enter a key first.';
        $('key-input').focus();
        return;
      }
      state.key = key;
      storeKey(key);
      state.needsKey = false;
      $('key-input').value = '';
      $('key-panel').hidden = true;
      $('forget').hidden = false;
      showLive();
      $('main').focus();
      refresh();
    });

    $('forget').addEventListener('click', () => {
      askForKey('The key is forgotten. Enter a read key to go on.');
    });

    $('pause').addEventListener('click', () => setPaused(!state.paused));
    $('refresh').addEventListener('click', () => refresh());

    $('airline-form').addEventListener('submit', (event) => {
      event.preventDefault();
      state.airline = $('airline-input').value.trim().toUpperCase();
      saveAddress();
      refresh();
    });

    $('route-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const route = await checkedRoute($('route-input').value, 'route-message');
      if (route) pickRoute(route);
    });

    $('compare-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const message = $('compare-message');
      if (state.compared.length >= MAX_COMPARED) {
        message.textContent = `At most ${MAX_COMPARED} routes: remove one first.`;
        return;
      }
      const route = await checkedRoute($('compare-input').value, 'compare-message');
      if (!route) return;
      if (state.compared.includes(route)) {
        message.textContent = `${route} is already compared.`;
        return;
      }
      state.compared = [...state.compared, route];
      state.comparedChosen = true;
      $('compare-input').value = '';
      saveAddress();
      showCompared();
      refresh();
    });

    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && !state.paused && !state.running) refresh();
    });

    $('forget').hidden = !state.key;
    // The version's answer also sets the clock offset before the first dated read.
    loadVersion().then(() => refresh());
  }

  start();
})();
