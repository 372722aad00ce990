// raftcron dashboard: a read-only view of the cluster, jobs, runs and keys.
//
// Rules this file keeps (the page's Content-Security-Policy enforces most of them):
// - it talks to the node that served it only, through the public API, with the API key as
//   `Authorization: Bearer`; it changes nothing;
// - the key lives in sessionStorage only: never local storage, a cookie, a query string or a log;
//   a key given in the URL fragment (`#key=...`) is moved there and removed from the address bar;
// - the DOM is built with text nodes only (no HTML strings), so API data cannot inject markup.
'use strict';

(function () {
  const KEY_STORE = 'raftcron.apiKey';
  const REFRESH_MS = 5000;
  const PAGE_SIZE = 50;
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const PRINTABLE = /^[\x21-\x7e]+$/;
  const NONE = '\u2014';

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------
  // DOM helpers: elements and text nodes only.
  // ---------------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function table(headers, rows, emptyText) {
    const head = el('tr', null, headers.map((h) => el('th', { class: h.num ? 'num' : null }, h.label || h)));
    const body = rows.length ? rows : [el('tr', null, el('td', { class: 'empty', colspan: headers.length }, emptyText))];
    return el('div', { class: 'scroll' }, el('table', null, el('thead', null, head), el('tbody', null, body)));
  }

  function facts(pairs) {
    return el(
      'dl',
      { class: 'facts' },
      pairs.filter((p) => p).map(([k, v]) => el('div', null, el('dt', null, k), el('dd', null, v)))
    );
  }

  function badge(text, kind) {
    return el('span', { class: 'badge ' + (kind || '') }, text);
  }

  function statusBadge(status) {
    if (!status) return NONE;
    const kind = { succeeded: 'good', failed: 'bad', unknown: 'bad', missed: 'warn', skipped: 'warn' }[status];
    return badge(status, kind);
  }

  function num(v) {
    return v === null || v === undefined ? NONE : String(v);
  }

  // ---------------------------------------------------------------------------------------
  // Time and duration formatting (local time zone).
  // ---------------------------------------------------------------------------------------

  const pad = (n, w) => String(n).padStart(w || 2, '0');

  function clock(d) {
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function absolute(d) {
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + clock(d);
  }

  function relative(d) {
    const ms = d.getTime() - Date.now();
    const s = Math.round(Math.abs(ms) / 1000);
    let t;
    if (s < 60) t = s + ' s';
    else if (s < 3600) t = Math.floor(s / 60) + ' min';
    else if (s < 86400) t = Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    else t = Math.floor(s / 86400) + ' d';
    return ms >= 0 ? 'in ' + t : t + ' ago';
  }

  // An instant as local date and time, with how far it is from now.
  function when(iso) {
    if (!iso) return NONE;
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return el('span', { title: d.toISOString() }, absolute(d), ' ', el('span', { class: 'dim' }, '(' + relative(d) + ')'));
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return NONE;
    const a = Math.abs(ms);
    const sign = ms < 0 ? '-' : '';
    if (a < 1000) return sign + a + ' ms';
    if (a < 60000) return sign + (a / 1000).toFixed(1) + ' s';
    return sign + Math.floor(a / 60000) + ' min ' + Math.round((a % 60000) / 1000) + ' s';
  }

  // ---------------------------------------------------------------------------------------
  // The key, the fragment and the API.
  // ---------------------------------------------------------------------------------------

  function fragment() {
    return new URLSearchParams(location.hash.replace(/^#/, ''));
  }

  function link(params) {
    return '#' + new URLSearchParams(params).toString();
  }

  // Moves `#key=...` into sessionStorage and rewrites the address bar (and the current history
  // entry) without it.
  function takeKeyFromFragment() {
    const p = fragment();
    if (!p.has('key')) return;
    const key = (p.get('key') || '').trim();
    p.delete('key');
    if (key) sessionStorage.setItem(KEY_STORE, key);
    const rest = p.toString();
    history.replaceState(null, '', location.pathname + (rest ? '#' + rest : ''));
  }

  function route() {
    const p = fragment();
    let view = p.get('view') || 'cluster';
    const job = p.get('job') || '';
    if (view === 'job' && !UUID.test(job)) view = 'jobs';
    if (!Object.prototype.hasOwnProperty.call(VIEWS, view)) view = 'cluster';
    const page = Math.max(1, parseInt(p.get('page') || '1', 10) || 1);
    return { view, job, page };
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path) {
    const key = sessionStorage.getItem(KEY_STORE);
    if (!key) throw new ApiError(401, 'AUTHENTICATION_REQUIRED', 'Sign in with an API key.');
    if (!PRINTABLE.test(key)) throw new ApiError(401, 'AUTHENTICATION_REQUIRED', 'An API key is printable ASCII without spaces.');
    let res;
    try {
      res = await fetch(path, {
        headers: { Authorization: 'Bearer ' + key, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'error',
      });
    } catch (e) {
      throw new ApiError(0, 'UNREACHABLE', 'this node did not answer (' + e.message + ')');
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (res.ok && body) return body;
    const code = (body && body.error) || 'HTTP_' + res.status;
    const message = (body && body.message) || 'HTTP ' + res.status + ' ' + res.statusText;
    throw new ApiError(res.status, code, message);
  }

  // A read of replicated state: linearizable, or this node's own state when there is no leader.
  async function read(path) {
    try {
      return await api(path);
    } catch (e) {
      if (e.code !== 'NO_LEADER') throw e;
      const body = await api(path + (path.includes('?') ? '&' : '?') + 'consistency=stale');
      return Object.assign(body, { _stale: true });
    }
  }

  // ---------------------------------------------------------------------------------------
  // Views: each is a list of panels; a panel loads one resource and renders it.
  // ---------------------------------------------------------------------------------------

  const VIEWS = {
    cluster: (r) => [
      { id: 'members', title: 'Cluster members', load: () => api('/api/v1/cluster'), render: renderCluster },
      { id: 'shards', title: 'Shard ownership', load: () => api('/api/v1/cluster/shards'), render: renderShards },
    ],
    jobs: (r) => [
      {
        id: 'jobs',
        title: 'Jobs',
        load: () => read('/api/v1/jobs?page=' + r.page + '&page_size=' + PAGE_SIZE),
        render: (d) => renderJobs(d, r),
      },
    ],
    job: (r) => [
      {
        id: 'job',
        title: 'Job',
        load: () => read('/api/v1/jobs/' + encodeURIComponent(r.job)),
        render: renderJob,
      },
      {
        id: 'runs',
        title: 'Run history',
        load: () => read('/api/v1/jobs/' + encodeURIComponent(r.job) + '/runs?page=' + r.page + '&page_size=' + PAGE_SIZE),
        render: (d) => renderRuns(d, r),
      },
    ],
    keys: (r) => [
      {
        id: 'keys',
        title: 'API keys',
        load: () => read('/api/v1/keys?page=' + r.page + '&page_size=' + PAGE_SIZE),
        render: (d) => renderKeys(d, r),
      },
    ],
  };

  function pager(d, r, noun) {
    const pages = Math.max(1, Math.ceil(d.total_count / d.page_size));
    const go = (page) => () => {
      const p = fragment();
      p.set('page', String(page));
      location.hash = p.toString();
    };
    const prev = el('button', { type: 'button', disabled: r.page <= 1 }, 'Previous');
    const next = el('button', { type: 'button', disabled: r.page >= pages }, 'Next');
    prev.addEventListener('click', go(r.page - 1));
    next.addEventListener('click', go(r.page + 1));
    return el('div', { class: 'pager' }, prev, 'Page ' + d.page + ' of ' + pages + ' (' + d.total_count + ' ' + noun + ')', next);
  }

  function renderCluster(d) {
    const c = d.cluster;
    const members = c.members.slice().sort((a, b) => a.node_id - b.node_id);
    const rows = members.map((m) =>
      el(
        'tr',
        { 'data-node-id': m.node_id, 'data-role': m.role },
        el('td', null, 'node ' + m.node_id, m.node_id === c.node_id ? el('span', { class: 'dim' }, ' (answering)') : null),
        el('td', { class: 'mono' }, m.addr),
        el('td', null, badge(m.role, m.role === 'leader' ? 'good' : m.role === 'learner' ? 'warn' : '')),
        el('td', null, m.voter ? 'yes' : 'no'),
        el('td', { class: 'num' }, m.last_contact_ms === null || m.last_contact_ms === undefined ? NONE : duration(m.last_contact_ms) + ' ago'),
        el('td', { class: 'num' }, num(m.matched_index)),
        el('td', { class: 'num' }, num(m.shards))
      )
    );
    const leader = c.leader_id === null || c.leader_id === undefined ? 'none' : 'node ' + c.leader_id;
    return [
      facts([
        ['Leader', el('span', { id: 'leader', 'data-leader-id': num(c.leader_id) }, leader)],
        ['Answering node', 'node ' + c.node_id],
        ['Term', num(c.term)],
        ['Committed index', num(c.committed_index)],
        ['Applied index', num(c.applied_index)],
        ['Last log index', num(c.last_log_index)],
        ['Snapshot index', num(c.snapshot_index)],
        ['Master key id', el('span', { class: 'mono' }, c.master_key_id || NONE)],
        c.secrets_to_reseal !== null && c.secrets_to_reseal !== undefined ? ['Secrets to re-seal', String(c.secrets_to_reseal)] : null,
      ]),
      table(
        ['Node', 'Address', 'Role', 'Voter', { label: 'Last contact', num: true }, { label: 'Matched index', num: true }, { label: 'Shards', num: true }],
        rows,
        'no members'
      ),
      c.leader_id !== c.node_id
        ? el('p', { class: 'note' }, 'Last contact and matched index are known on the leader only; this answer comes from node ' + c.node_id + '.')
        : null,
    ];
  }

  function renderShards(d) {
    const ids = Object.keys(d.per_node || {}).map(Number).sort((a, b) => a - b);
    const color = (id) => (id === null || id === undefined || !ids.includes(id) ? 'onone' : 'o' + (ids.indexOf(id) % 8));
    const lease = {};
    for (const s of d.shards) {
      if (s.node_id !== null && s.lease_expires_at && !lease[s.node_id]) lease[s.node_id] = s.lease_expires_at;
    }
    const unowned = d.shards.filter((s) => s.node_id === null || s.node_id === undefined).length;
    const rows = ids.map((id) =>
      el(
        'tr',
        { 'data-owner': id },
        el('td', null, el('span', { class: 'swatch ' + color(id) }), ' node ' + id),
        el('td', { class: 'num' }, String(d.per_node[id])),
        el('td', { class: 'num' }, d.shard_count ? ((100 * d.per_node[id]) / d.shard_count).toFixed(1) + ' %' : NONE),
        el('td', null, when(lease[id]))
      )
    );
    const grid = el(
      'div',
      { class: 'grid', role: 'img', 'aria-label': 'shards colored by owner' },
      d.shards.map((s) =>
        el('span', {
          class: color(s.node_id),
          title: 'shard ' + s.shard + ': ' + (s.node_id === null || s.node_id === undefined ? 'no owner' : 'node ' + s.node_id) + ', epoch ' + s.epoch,
        })
      )
    );
    return [
      facts([
        ['Shards', String(d.shard_count)],
        ['Owners', String(ids.length)],
        ['Unowned', el('span', { class: unowned ? 'alarm' : null }, String(unowned))],
      ]),
      table(['Owner', { label: 'Shards', num: true }, { label: 'Share', num: true }, 'Lease expires'], rows, 'no shard has an owner'),
      el('h2', { class: 'sub' }, 'Shards by owner'),
      grid,
    ];
  }

  function renderJobs(d, r) {
    const rows = d.jobs.map((j) =>
      el(
        'tr',
        { 'data-job-id': j.id },
        el('td', null, el('a', { href: link({ view: 'job', job: j.id }) }, j.name)),
        el('td', { class: 'mono' }, j.cron_expression),
        el('td', null, j.timezone),
        el('td', null, j.is_active ? badge('active', 'good') : badge('paused')),
        el('td', null, when(j.next_run_at)),
        el('td', null, when(j.last_run_at)),
        el('td', null, statusBadge(j.last_status)),
        el('td', { class: 'num' + (j.consecutive_failures ? ' alarm' : '') }, String(j.consecutive_failures))
      )
    );
    return [
      table(
        ['Name', 'Schedule', 'Timezone', 'Active', 'Next run', 'Last run', 'Last status', { label: 'Consecutive failures', num: true }],
        rows,
        'no jobs yet'
      ),
      pager(d, r, 'jobs'),
    ];
  }

  function renderJob(d) {
    const j = d.job;
    const headerNames = Object.keys(j.headers || {});
    return [
      el('p', null, el('a', { href: link({ view: 'jobs' }) }, '\u2190 All jobs')),
      facts([
        ['Name', j.name],
        ['Id', el('span', { class: 'mono' }, j.id)],
        ['Request', el('span', { class: 'mono' }, j.method + ' ' + j.url)],
        ['Schedule', el('span', { class: 'mono' }, j.cron_expression)],
        ['Timezone', j.timezone],
        ['Active', j.is_active ? badge('active', 'good') : badge('paused')],
        ['Next run', when(j.next_run_at)],
        ['Last run', when(j.last_run_at)],
        ['Last status', statusBadge(j.last_status)],
        ['Consecutive failures', String(j.consecutive_failures)],
        ['Timeout', j.timeout_seconds + ' s'],
        ['Retries', j.max_retries + ' (every ' + j.retry_delay_seconds + ' s)'],
        ['Starting deadline', j.starting_deadline_seconds + ' s'],
        ['Concurrency', j.concurrency_policy],
        ['Delivery', j.delivery],
        ['Redirects followed', String(j.follow_redirects)],
        ['Notify on failure', j.notify_on_failure ? 'after ' + j.notify_after_failures + (j.notify_after_failures === 1 ? ' failure' : ' failures') : 'no'],
        ['Headers', headerNames.length ? headerNames.join(', ') + ' (values hidden)' : 'none'],
        ['Created', when(j.created_at)],
        ['Updated', when(j.updated_at)],
      ]),
    ];
  }

  function renderRuns(d, r) {
    const rows = d.runs.map((run) =>
      el(
        'tr',
        { 'data-run-id': run.id, 'data-status': run.status },
        el('td', null, when(run.scheduled_at)),
        el('td', { class: 'num' }, duration(run.lateness_ms)),
        el('td', { class: 'num' }, String(run.attempts)),
        el('td', null, run.node_id === null || run.node_id === undefined ? NONE : 'node ' + run.node_id),
        el('td', null, statusBadge(run.status)),
        el('td', { class: 'num' }, num(run.http_status)),
        el('td', { class: 'num' }, duration(run.duration_ms)),
        el('td', { class: 'wrap' }, run.error || '')
      )
    );
    return [
      table(
        ['Scheduled', { label: 'Lateness', num: true }, { label: 'Attempts', num: true }, 'Node', 'Status', { label: 'HTTP', num: true }, { label: 'Duration', num: true }, 'Error'],
        rows,
        'no runs yet'
      ),
      pager(d, r, 'runs kept'),
    ];
  }

  function renderKeys(d, r) {
    const rows = d.api_keys.map((k) =>
      el(
        'tr',
        { 'data-key-id': k.id },
        el('td', null, k.name),
        el('td', { class: 'mono' }, k.prefix),
        el('td', null, badge(k.kind, k.kind === 'admin' ? 'warn' : '')),
        el('td', { class: 'wrap mono' }, k.scopes.join(' ')),
        el('td', null, k.tenant),
        el('td', { class: 'wrap mono' }, k.allowed_cidrs.length ? k.allowed_cidrs.join(' ') : 'anywhere'),
        el('td', null, when(k.last_used_at)),
        el('td', null, k.expires_at ? when(k.expires_at) : 'never')
      )
    );
    return [
      table(['Name', 'Prefix', 'Kind', 'Scopes', 'Tenant', 'Allowed from', 'Last used', 'Expires'], rows, 'no keys'),
      el('p', { class: 'note' }, 'Last use is recorded at most a minute late. Keys themselves are never shown again after creation.'),
      pager(d, r, 'keys'),
    ];
  }

  // ---------------------------------------------------------------------------------------
  // The controller: sign-in state, the current view and the refresh loop.
  // ---------------------------------------------------------------------------------------

  // Bumped on every view change and sign-out: answers for an older generation are dropped.
  let generation = 0;
  let loading = null;
  let current = null;

  function showSignIn(message) {
    document.body.dataset.auth = 'signed-out';
    for (const id of ['nav', 'view', 'signout', 'refresh']) $(id).hidden = true;
    $('updated').textContent = '';
    $('signin').hidden = false;
    const err = $('signin-error');
    err.textContent = message || '';
    err.hidden = !message;
    $('key-input').focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORE);
    generation += 1;
    current = null;
    $('view').replaceChildren();
    showSignIn(message);
  }

  function show() {
    takeKeyFromFragment();
    if (!sessionStorage.getItem(KEY_STORE)) {
      signOut('');
      return;
    }
    document.body.dataset.auth = 'signed-in';
    $('signin').hidden = true;
    for (const id of ['nav', 'view', 'signout', 'refresh']) $(id).hidden = false;
    const r = route();
    generation += 1;
    document.body.dataset.view = r.view;
    for (const a of document.querySelectorAll('#nav a')) {
      const on = a.dataset.view === (r.view === 'job' ? 'jobs' : r.view);
      a.classList.toggle('current', on);
      if (on) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const panels = VIEWS[r.view](r).map((spec) => {
      const body = el('div', { class: 'body' }, el('p', { class: 'note' }, 'Loading\u2026'));
      const problem = el('p', { class: 'problem', role: 'status', hidden: true });
      const section = el('section', { class: 'panel', id: 'panel-' + spec.id, 'data-state': 'loading' }, el('h2', null, spec.title), problem, body);
      return { spec, section, body, problem };
    });
    current = { route: r, panels };
    $('view').replaceChildren(...panels.map((p) => p.section));
    refresh();
  }

  function fill(panel, state, content) {
    panel.section.dataset.state = state;
    panel.section.classList.remove('stale');
    panel.problem.hidden = true;
    panel.body.replaceChildren(...[].concat(content).filter((c) => c));
  }

  async function refresh() {
    if (!current || loading === generation) return;
    const gen = generation;
    const view = current;
    loading = gen;
    $('refresh').disabled = true;
    try {
      const results = await Promise.all(
        view.panels.map(async (p) => {
          try {
            return { p, data: await p.spec.load() };
          } catch (error) {
            return { p, error };
          }
        })
      );
      if (gen !== generation) return;
      const denied = results.find((x) => x.error && x.error.status === 401);
      if (denied) {
        signOut(denied.error.message);
        return;
      }
      const failed = [];
      for (const { p, data, error } of results) {
        if (!error) {
          const note = data._stale ? el('p', { class: 'note' }, 'No leader right now: this is node-local state and may lag.') : null;
          fill(p, 'ready', [note].concat(p.spec.render(data)));
        } else if (error.status === 403) {
          fill(p, 'forbidden', el('p', { class: 'forbidden' }, error.message));
        } else if (error.status === 404) {
          fill(p, 'missing', el('p', { class: 'error' }, error.message));
        } else {
          // Keep what was shown, marked as out of date.
          failed.push(error.message);
          p.section.dataset.state = 'error';
          if (p.body.querySelector('table, dl')) p.section.classList.add('stale');
          else p.body.replaceChildren();
          p.problem.textContent = error.message;
          p.problem.hidden = false;
        }
      }
      const updated = $('updated');
      updated.classList.toggle('failing', failed.length > 0);
      updated.textContent = (failed.length ? 'Update failed at ' : 'Updated at ') + clock(new Date());
      if (failed.length) updated.title = failed.join('; ');
      else updated.removeAttribute('title');
    } finally {
      if (loading === gen) loading = null;
      $('refresh').disabled = false;
    }
  }

  function start() {
    $('signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = $('key-input');
      const key = input.value.trim();
      input.value = '';
      if (!PRINTABLE.test(key)) {
        showSignIn('An API key is printable ASCII without spaces.');
        return;
      }
      sessionStorage.setItem(KEY_STORE, key);
      show();
    });
    $('signout').addEventListener('click', () => signOut('Signed out.'));
    $('refresh').addEventListener('click', refresh);
    window.addEventListener('hashchange', show);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) refresh();
    });
    setInterval(() => {
      if (!document.hidden) refresh();
    }, REFRESH_MS);
    show();
  }

  start();
})();
