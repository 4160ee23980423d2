// How long the dashboard takes to draw: loads each URL in headless Chromium, over the DevTools
// protocol, and reads `data-drawn-ms` (milliseconds from navigation to every section drawn, set by
// the page itself; the medians are of it) and the browser's first contentful paint, RUNS times
// each, alternating between the URLs in one browser.
//
//   node scripts/dashboard-drawn.js URL[,URL2…] [RUNS=5] [PAUSE_MS=0]
//
// PAUSE_MS waits before each load (11000 lets the collector's 10 s stats scans expire, so every
// load reads the store afresh). DETAIL=1 prints the slowest requests of each load. Needs Node.js
// and Debian's `chromium`; not part of the test command (docs/dashboard.md).
const http = require("http");
const crypto = require("crypto");
const { spawn } = require("child_process");

const urls = process.argv[2].split(",");
const runs = Number(process.argv[3] || 5);
const pause = Number(process.argv[4] || 0);
const port = 9333;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const browser = spawn("chromium", ["--headless", "--no-sandbox", "--disable-gpu", `--remote-debugging-port=${port}`, "about:blank"], { stdio: "ignore" });

function get(path, method = "GET") {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: "127.0.0.1", port, path, method }, (response) => {
      let body = "";
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => { try { resolve(JSON.parse(body)); } catch { resolve(body); } });
    });
    request.on("error", reject);
    request.end();
  });
}

// A minimal WebSocket client (Node 20 has none built in): text frames, masked as a client must.
function devtools(address) {
  return new Promise((resolve) => {
    const url = new URL(address);
    const request = http.request({
      host: url.hostname, port: url.port, path: url.pathname,
      headers: { Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Key": crypto.randomBytes(16).toString("base64"), "Sec-WebSocket-Version": "13" },
    });
    request.on("upgrade", (_, socket) => {
      let buffer = Buffer.alloc(0);
      const waiting = new Map();
      let next = 0;
      socket.on("data", (data) => {
        buffer = Buffer.concat([buffer, data]);
        while (buffer.length >= 2) {
          let length = buffer[1] & 127, offset = 2;
          if (length === 126) { length = buffer.readUInt16BE(2); offset = 4; } else if (length === 127) { length = Number(buffer.readBigUInt64BE(2)); offset = 10; }
          if (buffer.length < offset + length) break;
          const message = JSON.parse(buffer.subarray(offset, offset + length).toString());
          buffer = buffer.subarray(offset + length);
          if (message.id && waiting.has(message.id)) { waiting.get(message.id)(message); waiting.delete(message.id); }
        }
      });
      const send = (method, params = {}) => new Promise((done) => {
        const id = ++next;
        waiting.set(id, done);
        const payload = Buffer.from(JSON.stringify({ id, method, params }));
        const mask = crypto.randomBytes(4);
        const header = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 255]);
        socket.write(Buffer.concat([header, mask, Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]))]));
      });
      const evaluate = async (expression) => (await send("Runtime.evaluate", { expression, returnByValue: true })).result?.result?.value;
      resolve({ send, evaluate, close: () => socket.destroy() });
    });
    request.end();
  });
}

(async () => {
  for (let i = 0; i < 50; i++) { try { await get("/json/version"); break; } catch { await sleep(100); } }
  const results = urls.map(() => []);
  for (let run = 0; run < runs * urls.length; run++) {
    const which = run % urls.length;
    if (pause) await sleep(pause);
    const tab = await get("/json/new?about:blank", "PUT");
    const page = await devtools(tab.webSocketDebuggerUrl);
    await page.send("Page.navigate", { url: urls[which] });
    let drawn = null;
    for (const start = Date.now(); drawn === null && Date.now() - start < 20000; await sleep(20)) {
      const value = await page.evaluate("document.body && document.body.getAttribute('data-drawn-ms')");
      drawn = value ? Number(value) : null;
    }
    const charts = await page.evaluate("document.querySelectorAll('svg').length");
    const paint = await page.evaluate("Math.round(performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1)");
    console.log(`${urls[which]}: first contentful paint at ${paint} ms, every section drawn at ${drawn} ms, ${charts} charts`);
    if (process.env.DETAIL) {
      const slowest = await page.evaluate(
        "JSON.stringify(performance.getEntriesByType('resource').map((e) => [Math.round(e.startTime), Math.round(e.responseEnd), e.name.replace(/^https?:..[^/]+/, '')]).sort((a, b) => b[1] - a[1]).slice(0, 8))");
      for (const [start, end, name] of JSON.parse(slowest)) console.log(`  ${start}-${end} ms ${name}`);
    }
    results[which].push(drawn);
    page.close();
    await get(`/json/close/${tab.id}`);
  }
  results.forEach((times, i) => {
    times.sort((a, b) => a - b);
    console.log(`${urls[i]}: median ${times[Math.floor(times.length / 2)]} ms, min ${times[0]}, max ${times[times.length - 1]} (${times.join(" ")})`);
  });
  browser.kill();
})();
