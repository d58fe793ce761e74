// The built-in dashboards: fetch /api/dashboards/<id> for the chosen range and tenant, draw
// every panel with Chart.js (served by salestalk serve; no CDN), and show empty and error
// states. Each panel element carries what it shows in data attributes (data-total, data-value,
// data-rows) so a browser test can check the numbers without reading pixels.
//
// Every /api/ call carries the API key (Authorization: Bearer). The page asks for it once and
// keeps it in sessionStorage (this tab, until it closes); a link may hand it over in its
// fragment (#key=stk_...), which browsers never send to a server, and the page removes it
// from the address at once. The server decides what the key sees.
'use strict';

const KEY = 'salestalk.key';

function apiKey() {
  return sessionStorage.getItem(KEY) || '';
}

function takeKeyFromFragment() {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ''));
  if (fragment.has('key')) {
    sessionStorage.setItem(KEY, fragment.get('key').trim());
    history.replaceState(null, '', location.pathname + location.search);
  }
}

function askForKey(why) {
  sessionStorage.removeItem(KEY);
  $('login').hidden = false;
  $('sign-out').hidden = true;
  document.body.dataset.auth = 'needed';
  $('status').className = why ? 'error' : '';
  $('status').textContent = why || 'An API key is needed to read the dashboards.';
  document.body.dataset.loaded = 'true';
}

async function api(path) {
  return fetch(path, { headers: { Authorization: `Bearer ${apiKey()}` } });
}

const dashboardId = location.pathname.replace(/^\/+/, '').split('/')[0] || 'sre';
const charts = new Map();
let timer = null;

const $ = (id) => document.getElementById(id);

function params() {
  const query = new URLSearchParams(location.search);
  if (query.has('range')) $('range').value = query.get('range');
  if (query.has('tenant')) $('tenant').value = query.get('tenant');
  if (query.has('month')) $('month').value = query.get('month');
}

// Units are declared by each panel (and each table column) on the server; see Unit in
// dashboards/src/panels.rs. A column name never decides how a number is shown.
function format(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  if (typeof value !== 'number') return String(value);
  switch (unit) {
    case 'percentunit': return (value * 100).toFixed(2) + ' %';
    case 'ms': return value.toFixed(0) + ' ms';
    case 's': return value.toFixed(1) + ' s';
    case 'currencyUSD': return '$' + value.toFixed(2);
    case 'nanoUSD': return '$' + nanosToUsd(value);
    case 'none': return Number.isInteger(value) ? String(value) : value.toFixed(3);
    case 'string': return String(value);
    default: return Number.isInteger(value) ? value.toLocaleString('en-US') : value.toFixed(3);
  }
}

// Integer nanodollars as exact dollars: 21700000 -> "0.021700000".
function nanosToUsd(nanos) {
  const negative = nanos < 0;
  const abs = Math.abs(nanos);
  const whole = Math.floor(abs / 1e9);
  const fraction = String(abs % 1e9).padStart(9, '0');
  return (negative ? '-' : '') + whole + '.' + fraction;
}

function columnIndex(result, name) {
  return result.meta.findIndex((c) => c.name === name);
}

function card(panel) {
  let element = document.querySelector(`.panel[data-panel="${panel.id}"]`);
  if (!element) {
    element = document.createElement('section');
    element.className = 'panel' + (panel.chart === 'table' ? ' wide' : '');
    element.dataset.panel = panel.id;
    $('panels').appendChild(element);
  }
  element.innerHTML = `<h2></h2><div class="body"></div>`;
  element.querySelector('h2').textContent = panel.title;
  element.dataset.chart = panel.chart;
  delete element.dataset.total;
  delete element.dataset.value;
  delete element.dataset.rows;
  delete element.dataset.level;
  return element;
}

function message(element, kind, text) {
  const p = document.createElement('p');
  p.className = kind;
  p.textContent = text;
  element.querySelector('.body').appendChild(p);
}

function drawChart(element, panel, config) {
  const holder = document.createElement('div');
  holder.className = 'chart';
  const canvas = document.createElement('canvas');
  holder.appendChild(canvas);
  element.querySelector('.body').appendChild(holder);
  if (charts.has(panel.id)) charts.get(panel.id).destroy();
  config.options = Object.assign({ animation: false, maintainAspectRatio: false, responsive: true }, config.options || {});
  charts.set(panel.id, new Chart(canvas, config));
}

function summary(element, text) {
  const p = document.createElement('p');
  p.className = 'summary';
  p.textContent = text;
  element.querySelector('.body').appendChild(p);
}

// The contract's target and alert threshold of a panel's column (`value` for time series and
// stats), as the server declares them (Mark in dashboards/src/panels/mod.rs).
function markOf(panel, column) {
  return (panel.marks || []).find((mark) => mark.column === column);
}

// 'ok', 'target' (the target is missed) or 'alert' (past the alert threshold).
function level(mark, value) {
  const worse = mark.comparison === 'below' ? (a, b) => a < b : (a, b) => a > b;
  if (worse(value, mark.alert)) return 'alert';
  if (worse(value, mark.target)) return 'target';
  return 'ok';
}

function objectiveText(mark, unit) {
  const [good, bad] = mark.comparison === 'below' ? ['above', 'below'] : ['below', 'above'];
  const target = mark.comparison === 'below' || mark.target > 0 ? `${good} ${format(mark.target, unit)}` : format(mark.target, unit);
  return `target: ${target} · alert: ${bad} ${format(mark.alert, unit)}`;
}

function renderTimeseries(element, panel, result) {
  const [t, s, v] = ['time', 'series', 'value'].map((c) => columnIndex(result, c));
  const times = [...new Set(result.data.map((row) => row[t]))].sort();
  const series = [...new Set(result.data.map((row) => row[s]))].sort();
  const datasets = series.map((name) => {
    const points = new Map(result.data.filter((row) => row[s] === name).map((row) => [row[t], row[v]]));
    // A range with one or two buckets would draw no line: show the points.
    return { label: name, data: times.map((time) => points.get(time) ?? 0), pointRadius: times.length < 3 ? 4 : 0, borderWidth: 2 };
  });
  const total = result.data.reduce((sum, row) => sum + Number(row[v]), 0);
  element.dataset.total = String(total);
  element.dataset.rows = String(result.data.length);
  const mark = markOf(panel, 'value');
  if (mark) {
    for (const [label, limit, color] of [['target', mark.target, '#b54708'], ['alert threshold', mark.alert, '#b42318']]) {
      datasets.push({ label, data: times.map(() => limit), borderDash: [6, 4], borderColor: color, borderWidth: 1, pointRadius: 0 });
    }
  }
  drawChart(element, panel, {
    type: 'line',
    data: { labels: times.map((time) => time.replace(' ', 'T').slice(0, 16)), datasets },
    options: { scales: { y: { beginAtZero: true } } },
  });
  if (mark) {
    const worst = result.data.reduce((w, row) => Math.max(w, level(mark, Number(row[v])) === 'alert' ? 2 : level(mark, Number(row[v])) === 'target' ? 1 : 0), 0);
    element.dataset.level = ['ok', 'target', 'alert'][worst];
    summary(element, objectiveText(mark, panel.unit));
  } else if (panel.unit !== 'percentunit') summary(element, `total in range: ${format(total, panel.unit)}`);
}

function renderBar(element, panel, result) {
  const [l, v] = ['label', 'value'].map((c) => columnIndex(result, c));
  const total = result.data.reduce((sum, row) => sum + Number(row[v]), 0);
  element.dataset.total = String(total);
  element.dataset.rows = String(result.data.length);
  drawChart(element, panel, {
    type: 'bar',
    data: { labels: result.data.map((row) => row[l]), datasets: [{ label: panel.title, data: result.data.map((row) => row[v]) }] },
    options: { plugins: { legend: { display: false } }, indexAxis: result.data.length > 6 ? 'y' : 'x' },
  });
  summary(element, `total: ${format(total, panel.unit)}`);
}

function renderStat(element, panel, result) {
  const v = columnIndex(result, 'value');
  const value = Number(result.data[0][v]);
  element.dataset.value = String(value);
  const p = document.createElement('p');
  p.className = 'stat';
  p.textContent = format(value, panel.unit);
  const mark = markOf(panel, 'value');
  if (mark) {
    p.dataset.level = level(mark, value);
    p.classList.add(`level-${p.dataset.level}`);
    element.dataset.level = p.dataset.level;
  }
  element.querySelector('.body').appendChild(p);
  if (mark) summary(element, objectiveText(mark, panel.unit));
  const rest = result.meta.filter((c) => c.name !== 'value');
  if (rest.length) summary(element, rest.map((c) => `${c.name}: ${format(result.data[0][columnIndex(result, c.name)])}`).join(' · '));
}

function renderTable(element, panel, result) {
  element.dataset.rows = String(result.data.length);
  const table = document.createElement('table');
  const head = table.createTHead().insertRow();
  const units = panel.columns || {};
  for (const column of result.meta) {
    const th = document.createElement('th');
    th.textContent = units[column.name] === 'nanoUSD' ? column.name.replace(/_nanos$/, '_usd') : column.name;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const row of result.data) {
    const tr = body.insertRow();
    result.meta.forEach((column, i) => {
      const td = tr.insertCell();
      const value = row[i];
      const unit = units[column.name];
      td.dataset.column = column.name;
      td.dataset.value = String(value);
      // A column the panel did not declare is shown as it came, and marked for the tests.
      if (unit === undefined) td.dataset.unit = 'undeclared';
      if (unit === 'nanoUSD') {
        td.textContent = format(Number(value), unit);
        td.className = 'number';
      } else if (typeof value === 'number') {
        td.textContent = format(value, unit);
        td.className = 'number';
      } else {
        td.textContent = value;
      }
      const mark = markOf(panel, column.name);
      if (mark && typeof value === 'number') {
        td.dataset.level = level(mark, value);
        td.classList.add(`level-${td.dataset.level}`);
      }
    });
  }
  element.querySelector('.body').appendChild(table);
  for (const mark of panel.marks || []) summary(element, `${mark.column}: ${objectiveText(mark, units[mark.column])}`);
}

function render(panel) {
  const element = card(panel);
  if (panel.restricted) {
    element.dataset.state = 'restricted';
    message(element, 'empty', 'About the whole pipeline: shown to admin keys only.');
    return;
  }
  if (panel.error) {
    element.dataset.state = 'error';
    message(element, 'error', `Could not load: ${panel.error}`);
    return;
  }
  const result = panel.result;
  if (!result || !result.data || result.data.length === 0) {
    element.dataset.state = 'empty';
    message(element, 'empty', panel.id === 'alerts' ? 'No alert is firing.' : 'No data in this range.');
    return;
  }
  element.dataset.state = 'ok';
  ({ timeseries: renderTimeseries, bar: renderBar, stat: renderStat, table: renderTable })[panel.chart](element, panel, result);
}

async function load() {
  if (!apiKey()) {
    askForKey();
    return;
  }
  const query = new URLSearchParams({ range: $('range').value, tenant: $('tenant').value.trim() });
  const status = $('status');
  document.body.dataset.loaded = 'false';
  try {
    const response = await api(`/api/dashboards/${encodeURIComponent(dashboardId)}?${query}`);
    const body = await response.json();
    if (response.status === 401) {
      askForKey(`The key was not accepted: ${body.error}`);
      return;
    }
    if (!response.ok) throw new Error(body.error || response.statusText);
    $('login').hidden = true;
    $('sign-out').hidden = false;
    document.body.dataset.auth = 'ok';
    document.body.dataset.tenants = body.tenants ? body.tenants.join(',') : '*';
    $('title').textContent = body.title;
    for (const panel of body.panels) render(panel);
    const who = body.tenants ? `tenants ${body.tenants.join(', ')}` : 'every tenant';
    status.className = '';
    status.textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC · ${who}`;
  } catch (error) {
    status.className = 'error';
    status.textContent = `Could not load the dashboard: ${error.message}`;
  }
  document.body.dataset.loaded = 'true';
}

function schedule() {
  clearInterval(timer);
  if ($('refresh').checked) timer = setInterval(load, 30000);
}

function exportLink() {
  const month = $('month').value;
  $('export').href = `/api/billing/export.csv?month=${encodeURIComponent(month)}`;
  $('export').setAttribute('download', `salestalk-billing-${month}.csv`);
}

// A plain link cannot carry the key: fetch the CSV with it and save what came back.
async function download(event) {
  event.preventDefault();
  const link = $('export');
  const response = await api(link.getAttribute('href'));
  if (!response.ok) {
    $('status').className = 'error';
    $('status').textContent = `Could not export: ${(await response.json()).error}`;
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const save = document.createElement('a');
  save.href = url;
  save.download = link.getAttribute('download');
  save.click();
  URL.revokeObjectURL(url);
}

window.addEventListener('DOMContentLoaded', () => {
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.dashboard === dashboardId) a.className = 'current';
  }
  if (dashboardId === 'billing') {
    $('billing-export').hidden = false;
    $('month').value = new Date().toISOString().slice(0, 7);
  }
  takeKeyFromFragment();
  params();
  exportLink();
  $('export').addEventListener('click', download);
  $('login').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $('key').value.trim());
    $('key').value = '';
    load();
  });
  // The page's policy allows no inline script: the controls' submit is stopped here.
  $('controls').addEventListener('submit', (event) => event.preventDefault());
  $('sign-out').addEventListener('click', () => askForKey());
  $('range').addEventListener('change', load);
  $('tenant').addEventListener('change', load);
  $('refresh').addEventListener('change', schedule);
  $('month').addEventListener('change', exportLink);
  schedule();
  load();
});
