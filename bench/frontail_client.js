// Benchmark load client for frontail (socket.io 2.3): the same protocol as load_client.py.
//
//   node frontail_client.js '{"mode": "stream", "url": "http://127.0.0.1:9001", "ns": "...",
//                             "modules": "<dir with socket.io-client>", "conns": 100, ...}'
//
// Prints `READY {...}` once every socket is connected, then `RESULT {...}` when every socket
// got `expect` lines, stdin closed, or `timeout` seconds passed. Latency is receive time
// minus the CLOCK_MONOTONIC stamp the writer put in each line (hrtime is CLOCK_MONOTONIC).
'use strict';

const fs = require('fs');
const path = require('path');

const opt = Object.assign({
  mode: 'stream', conns: 1, expect: 0, step: 1, first: 0, latency: false, out: null,
  timeout: 120, concurrency: 64, reps: 10, n: 1000, pause: 0.05,
}, JSON.parse(process.argv[2]));
const io = require(path.join(opt.modules, 'socket.io-client'));

const nowNs = () => Number(process.hrtime.bigint());
const lat = [];
const counters = [];
const failed = [];
let pending = 0;
let lost = 0;
let finish = null;

function counter(expect) {
  return { count: 0, first: -1, last: -1, lastNs: 0, error: '', done: false, expect };
}

function onLine(c, line) {
  const seq = parseInt(line.slice(0, 10), 10);
  if (Number.isNaN(seq)) return;
  const t = nowNs();
  if (c.first < 0) c.first = seq;
  c.count += 1;
  if (!c.error && seq !== c.first + (c.count - 1) * opt.step) {
    c.error = `after ${c.count} lines: seq ${seq}, expected ${c.first + (c.count - 1) * opt.step}`;
  }
  if (opt.latency) lat.push(t - parseInt(line.slice(11, 30), 10));
  c.last = seq;
  c.lastNs = t;
  if (c.expect && c.count >= c.expect && !c.done) {
    c.done = true;
    pending -= 1;
    if (pending <= 0 && finish) finish();
  }
}

function connect(c) {
  return new Promise((resolve, reject) => {
    const sock = io(`${opt.url}/${opt.ns}`, {
      path: '/socket.io', transports: ['websocket'], forceNew: true, reconnection: false,
      timeout: 30000,
    });
    sock.on('line', (line) => onLine(c, line));
    sock.on('connect', () => resolve(sock));
    sock.on('connect_error', (e) => { sock.close(); reject(e); });
    sock.on('disconnect', () => { lost += 1; });
  });
}

async function openAll() {
  const socks = [];
  let next = 0;
  async function worker() {
    while (next < opt.conns) {
      next += 1;
      const c = counter(opt.expect);
      for (let attempt = 0; ; attempt += 1) {
        try {
          socks.push(await connect(c));
          counters.push(c);
          break;
        } catch (e) {
          if (attempt === 4) { failed.push(String(e).slice(0, 200)); break; }
          await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(opt.concurrency, opt.conns) }, worker));
  pending = counters.length;
  return socks;
}

async function backlog() {
  const times = [];
  for (let r = 0; r < opt.reps; r += 1) {
    const c = counter(opt.n);
    pending = 1;
    const t0 = nowNs();
    const done = new Promise((resolve) => { finish = resolve; });
    const sock = await connect(c);
    const timer = setTimeout(() => finish && finish(), opt.timeout * 1000);
    await done;
    clearTimeout(timer);
    if (c.count === opt.n && !c.error) times.push((c.lastNs - t0) / 1e6);
    else failed.push(c.error || `backlog: ${c.count} lines, want ${opt.n}`);
    sock.close();
    await new Promise((r) => setTimeout(r, opt.pause * 1000));
  }
  return times;
}

async function main() {
  const tOpen = Date.now();
  let socks = [];
  const extra = {};
  if (opt.mode === 'backlog') extra.backlog_ms = await backlog();
  else socks = await openAll();
  process.stdout.write(`READY ${JSON.stringify({
    conns: counters.length, failed: failed.length, open_s: (Date.now() - tOpen) / 1000, ...extra,
  })}\n`);
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  if (opt.mode !== 'backlog') {
    await new Promise((resolve) => {
      finish = resolve;
      if (opt.expect && pending <= 0) resolve();
      process.stdin.on('end', resolve);
      process.stdin.on('close', resolve);
      process.stdin.resume();
      if (opt.timeout) setTimeout(resolve, opt.timeout * 1000);
    });
  }
  const cpu = process.cpuUsage(cpu0);
  const counts = counters.map((c) => c.count);
  const errors = counters.filter((c) => c.error).map((c) => c.error);
  const res = {
    conns: counters.length, failed: failed.slice(0, 5), n_failed: failed.length,
    lost_conns: lost, counts_min: counts.length ? Math.min(...counts) : 0,
    counts_max: counts.length ? Math.max(...counts) : 0,
    counts_sum: counts.reduce((a, b) => a + b, 0),
    n_short: counts.filter((n) => n < opt.expect).length,
    firsts_bad: counters.filter((c) => c.count && c.first !== opt.first).length,
    errors: errors.slice(0, 5), n_errors: errors.length,
    last_ns: counters.reduce((a, c) => Math.max(a, c.lastNs), 0),
    wall_s: (Date.now() - t0) / 1000, cpu_s: (cpu.user + cpu.system) / 1e6,
    maxrss_kb: Math.round(process.resourceUsage().maxRSS), pings: 0, ...extra,
  };
  if (opt.latency) {
    res.n_lat = lat.length;
    if (opt.out) fs.writeFileSync(opt.out, Buffer.from(new Float64Array(lat).buffer));
  }
  for (const s of socks) s.close();
  process.stdout.write(`RESULT ${JSON.stringify(res)}\n`, () => process.exit(0));
}

main().catch((e) => { process.stderr.write(`${e.stack || e}\n`); process.exit(1); });
