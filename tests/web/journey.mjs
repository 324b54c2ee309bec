// Basphere's web pages in Debian's Chromium, driven by Playwright: the newcomer's registration,
// the administrator's approval, the developer's dashboard (a VM from creation to deletion,
// followed live), tokens, a key change, suspension, and the attacks a page must withstand.
// Every page is checked with axe-core, weighed, timed and screenshotted at desktop and phone
// widths. Run by tests/tests/it/web.rs, which prepares the server; prints one JSON report line.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = process.env.BASE_URL;
const CLI = process.env.BASPHERE_CLI;
const SOCKET = process.env.BASPHERE_SOCKET;
const ARTIFACTS = process.env.ARTIFACTS;
const KEY = process.env.KEY;
const NEW_KEY = process.env.NEW_KEY;
mkdirSync(ARTIFACTS, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const INJECT = `"'><img src=x onerror=alert(1)><script>alert(2)</script>`;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const report = { pages: [] };

const cliEnv = { ...process.env, BASPHERE_CLI_CONFIG: "/nonexistent/basphere-cli.yaml", HOME: process.env.CLI_HOME };
delete cliEnv.BASPHERE_SERVER;
delete cliEnv.BASPHERE_TOKEN;

function cli(args) {
  return JSON.parse(execFileSync(CLI, ["--socket", SOCKET, "-o", "json", ...args], { env: cliEnv }).toString());
}

/** `basphere web` as a bastion user: the CLI run as that uid, identified by the socket. */
function cliAs(uid, args) {
  const out = execFileSync(
    "setpriv",
    [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", CLI, "--socket", SOCKET, "-o", "json", ...args],
    { env: cliEnv },
  );
  return JSON.parse(out.toString());
}

// On a failure, say where the browser was and what it showed.
let current = null;
for (const event of ["uncaughtException", "unhandledRejection"]) {
  process.on(event, async (error) => {
    console.error(error);
    if (current) {
      try {
        console.error(`at ${current.url()}:\n${(await current.textContent("body")).replace(/\s+/g, " ").slice(0, 3000)}`);
        await current.screenshot({ path: join(ARTIFACTS, "failure.png"), fullPage: true });
      } catch {}
    }
    process.exit(1);
  });
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
});

/** A browser context (its own cookies) whose pages fail the journey on any script dialog (an
 * injection that ran), on any violation of the page's own CSP, and on any page error. */
async function person(name) {
  const context = await browser.newContext({ viewport: DESKTOP });
  // CI shares two cores with the rest of the suite: wait longer than Playwright's 30 s default.
  context.setDefaultTimeout(90000);
  context.setDefaultNavigationTimeout(90000);
  const page = await context.newPage();
  current = page;
  page.on("dialog", async (dialog) => {
    throw new Error(`${name}: a script dialog opened (injected script ran): ${dialog.message()}`);
  });
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy|Refused to/.test(message.text())) {
      throw new Error(`${name}: the page broke its own CSP: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => {
    throw new Error(`${name}: a script error on ${page.url()}: ${error.message}`);
  });
  return { context, page };
}

let shot = 0;
/** Checks the page now shown: axe-core, no injected element, weight, timing, and screenshots. */
async function check(page, label) {
  await page.waitForLoadState("load");
  const injected = await page.evaluate(() => document.querySelectorAll("img[src='x'], script:not([src])").length);
  assert.equal(injected, 0, `${label}: an injected element is in the DOM`);
  await page.evaluate(axeSource + "\n;0");
  const results = await page.evaluate(async () => {
    const outcome = await window.axe.run(document, { resultTypes: ["violations"] });
    return outcome.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")) }));
  });
  const serious = results.filter((v) => v.impact === "serious" || v.impact === "critical");
  // The page's weight: the document and everything it loaded (decoded, cached or not).
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const loaded = performance.getEntriesByType("resource").reduce((sum, r) => sum + r.decodedBodySize, 0);
    return { bytes: nav.decodedBodySize + loaded, interactive_ms: Math.round(nav.domInteractive),
      loaded_ms: Math.round(nav.loadEventEnd) };
  });
  const n = String(++shot).padStart(2, "0");
  const slug = label.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
  await page.screenshot({ path: join(ARTIFACTS, `${n}-${slug}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: join(ARTIFACTS, `${n}-${slug}-phone.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
  report.pages.push({ page: label, path: new URL(page.url()).pathname, ...timing,
    serious_violations: serious.length, violations: results });
  if (serious.length > 0) {
    console.error(`${label}: axe-core found ${JSON.stringify(serious, null, 1)}`);
  }
}

/** Navigates and checks. */
async function visit(page, path, label) {
  const response = await page.goto(BASE + path);
  await check(page, label);
  return response;
}

/** Submits a form by clicking `button`, then measures the page it leads to. */
async function submit(page, button) {
  await Promise.all([page.waitForNavigation(), page.click(button)]);
}

async function signInWithLink(page, url, who) {
  await page.goto(url);
  assert.match(await page.textContent("main"), new RegExp(`signs this browser in as ${who}`));
  await submit(page, "button:has-text('Continue')");
}

// ---------------------------------------------------------------- the newcomer
const newcomer = await person("newcomer");
let page = newcomer.page;
await visit(page, "/register", "register");
await page.fill("#f-username", "alice");
await page.fill("#f-email", "alice@example.com");
await page.fill("#f-team", INJECT);
await page.fill("#f-public_key", "ssh-ed25519 not-a-key");
await submit(page, "main button[type=submit]");
await check(page, "register with a bad key");
assert.match(await page.textContent("#f-public_key-error"), /key/i, "the key's error is next to the key");
assert.equal(await page.inputValue("#f-username"), "alice", "what was typed is kept");
assert.equal(await page.inputValue("#f-team"), INJECT, "the team is kept, as text");
assert.equal(await page.getAttribute("#f-public_key", "aria-invalid"), "true");

// A private key pasted by mistake: warned, and never shown back.
await page.fill("#f-public_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----");
await submit(page, "main button[type=submit]");
assert.match(await page.textContent("#f-public_key-error"), /private key/i);
assert.equal(await page.inputValue("#f-public_key"), "", "a private key is not echoed");
assert.ok(!(await page.content()).includes("b3BlbnNzaC1rZXktdjEAAAAA"), "nor anywhere in the page");

await page.fill("#f-team", "payments");
await page.fill("#f-public_key", KEY);
await submit(page, "main button[type=submit]");
await check(page, "registration received");
assert.equal(new URL(page.url()).pathname, "/success");
const success = await page.textContent("main");
assert.ok(success.includes("alice") && success.includes("ssh -p 2222 alice@bastion.example.com"), success);
assert.ok(success.includes("ProxyJump bastion") && !/StrictHostKeyChecking no/.test(success), success);

// Another applicant, whose fields try script and attribute injection everywhere.
await visit(page, "/register", "register again");
await page.fill("#f-username", "mallory");
await page.fill("#f-email", "mallory@example.com");
await page.fill("#f-team", INJECT);
await page.fill("#f-public_key", NEW_KEY.split(" ").slice(0, 2).join(" ") + " " + "<script>alert(3)</script>");
await submit(page, "main button[type=submit]");
assert.equal(new URL(page.url()).pathname, "/success", await page.textContent("main"));

await visit(page, "/ssh-guide", "ssh guide");
assert.ok(!/StrictHostKeyChecking no|UserKnownHostsFile \/dev\/null/.test(await page.textContent("main")));
await visit(page, "/key-change", "key change");
await visit(page, "/sign-in", "sign in");

// A sign-in link that is not one, and a bad token.
await page.goto(BASE + "/sign-in/bsl_0000");
assert.match(await page.textContent(".notice.error"), /used already|expired|not one/);
await visit(page, "/sign-in", "sign in again");
await page.fill("#f-token", "bsp_wrong");
await submit(page, "main button[type=submit]");
assert.match(await page.textContent("#f-token-error"), /unknown|revoked|expired/);
await newcomer.context.close();

// ---------------------------------------------------------------- the administrator
const admin = await person("admin");
const adminLink = cli(["web"]).url;
assert.ok(adminLink.startsWith(BASE + "/sign-in/bsl_"), adminLink);
await signInWithLink(admin.page, adminLink, "root");
page = admin.page;
current = page;
assert.equal(new URL(page.url()).pathname, "/admin");
await check(page, "admin requests");
assert.ok((await page.textContent("main")).includes("mallory"));
// The injected team is shown as text.
assert.ok((await page.textContent("main")).includes("<img src=x onerror=alert(1)>"), "the team is shown as text");
// A used link is refused.
const reused = await person("reuse");
await reused.page.goto(adminLink);
assert.match(await reused.page.textContent(".notice.error"), /used already/);
assert.equal(await reused.page.locator("input[name=code]").count(), 0, "nothing to submit");
await reused.context.close();

await page.check("input[name=username][value=alice]");
await submit(page, "button:has-text('Approve selected')");
assert.match(await page.textContent(".notice.ok"), /Approved/);
await page.fill("#reason-mallory", `<script>alert(4)</script>"><img src=x onerror=alert(5)>`);
await submit(page, "button[aria-label='Reject mallory']");
assert.match(await page.textContent(".notice.ok"), /Rejected/);

// The approval runs in the background: the account gets its bastion login.
let uid = null;
for (let i = 0; i < 200 && uid === null; i++) {
  const users = cli(["admin", "user", "list"]);
  uid = users.find((u) => u.username === "alice")?.uid ?? null;
  if (uid === null) await new Promise((r) => setTimeout(r, 100));
}
assert.ok(uid, "alice has a bastion login");

// ---------------------------------------------------------------- the developer
const dev = await person("developer");
page = dev.page;
await signInWithLink(page, cliAs(uid, ["web"]).url, "alice");
assert.equal(new URL(page.url()).pathname, "/dashboard");
await check(page, "dashboard, empty");
assert.match(await page.textContent("header"), /Signed in as alice/);

// A developer opening the admin console is refused by the platform, page and form alike.
let refused = await page.goto(BASE + "/admin/users");
assert.equal(refused.status(), 403);
assert.match(await page.textContent("main"), /administrator/);
await page.goto(BASE + "/dashboard");
const devCsrf = await page.getAttribute("input[name=csrf]", "value");
const forged = await page.request.post(BASE + "/admin/users/alice/suspend", {
  form: { csrf: devCsrf }, headers: { Origin: BASE }, maxRedirects: 0,
});
assert.equal(forged.status(), 403, "a user's own valid form cannot reach the admin actions");

// A VM: create, watch it run (the page follows without reloading), stop, delete.
await visit(page, "/vms/new", "new vm");
assert.match(await page.textContent("main"), /VMs: 0 of/);
await page.fill("#f-name", "Bad_Name");
await submit(page, "button:has-text('Create')");
assert.match(await page.textContent("#f-name-error"), /lowercase/);
assert.equal(await page.inputValue("#f-name"), "Bad_Name");
await page.fill("#f-name", "web");
await submit(page, "button:has-text('Create')");
assert.equal(new URL(page.url()).pathname, "/dashboard");
assert.match(await page.textContent(".notice.ok"), /being created/);
await check(page, "dashboard, creating");
const started = Date.now();
await page.waitForSelector("#vm-web .state-running", { timeout: 120000 });
report.vm_running_seen_after_ms = Date.now() - started;
assert.match(await page.textContent("#vm-web"), /\d+\.\d+\.\d+\.\d+/, "the VM shows its address");
await check(page, "dashboard, running");
await submit(page, "button[aria-label='Stop web']");
assert.match(await page.textContent(".notice.ok"), /stopping/);
await page.waitForSelector("#vm-web .state-stopped", { timeout: 120000 });
await Promise.all([page.waitForNavigation(), page.click("a[aria-label='Delete web']")]);
await check(page, "delete vm");
await submit(page, "button:has-text('Delete web')");
assert.match(await page.textContent(".notice.ok"), /being deleted/);
await page.waitForSelector("#vm-web", { state: "detached", timeout: 120000 });

// A cross-site form: another origin's page posts to the dashboard's form URL with the
// developer's cookies (same site, another port). It is refused, and nothing is created.
const evil = createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html" });
  res.end(`<!doctype html><form method=post action="${BASE}/vms"><input name=csrf value="${devCsrf}">` +
    `<input name=name value=evil><input name=os value=ubuntu-24.04><input name=spec value=small><input name=count value=1></form>` +
    `<script>document.forms[0].submit()</script>`);
});
await new Promise((r) => evil.listen(0, "127.0.0.1", r));
const attacker = await dev.context.newPage();
const landed = attacker.waitForResponse((r) => r.url() === `${BASE}/vms`);
await attacker.goto(`http://127.0.0.1:${evil.address().port}/`);
assert.equal((await landed).status(), 403, "a form from another origin is refused even with a valid token");
await attacker.close();
evil.close();
await page.goto(BASE + "/dashboard");
assert.equal(await page.locator("#vm-evil").count(), 0);

// Tokens: created (shown once), then revoked.
await page.fill("#f-name", "laptop");
await submit(page, "button:has-text('Create a token')");
await check(page, "token created");
assert.match(await page.textContent("#secret"), /^bsp_[0-9a-f]{64}$/);
await page.goto(BASE + "/dashboard");
await submit(page, "button[aria-label='Revoke the token laptop']");
assert.match(await page.textContent(".notice.ok"), /revoked/);

// A key change, from the dashboard's link (username and email filled in).
const fingerprint = await page.textContent("#key-h + p code");
await Promise.all([page.waitForNavigation(), page.click("a:has-text('Request a key change')")]);
assert.equal(await page.inputValue("#f-username"), "alice");
assert.equal(await page.inputValue("#f-email"), "alice@example.com");
await page.fill("#f-new_public_key", NEW_KEY);
await page.fill("#f-reason", "rotation");
await submit(page, "button:has-text('Request the key change')");
await check(page, "key change requested");
assert.equal(new URL(page.url()).pathname, "/key-change-success");

page = admin.page;
current = page;
await visit(page, "/admin", "admin requests with a key change");
await page.check("input[form=approve-keys-form][value=alice]");
await submit(page, "button[form=approve-keys-form]");
assert.match(await page.textContent(".notice.ok"), /Approved/);
let changed = false;
for (let i = 0; i < 200 && !changed; i++) {
  await dev.page.goto(BASE + "/dashboard");
  changed = (await dev.page.textContent("#key-h + p code")) !== fingerprint;
  if (!changed) await new Promise((r) => setTimeout(r, 100));
}
assert.ok(changed, "the dashboard shows the new key");

// The console's other pages.
await visit(page, "/admin/users", "admin users");
await page.fill("#q", "ali");
await submit(page, "button:has-text('Search')");
assert.ok((await page.textContent("tbody")).includes("alice"));
await visit(page, "/admin/users/alice", "admin user");
await page.fill("#f-vms", "7");
await submit(page, "button:has-text('Save the quota')");
assert.match(await page.textContent(".notice.ok"), /quota is saved/);
assert.match(await page.textContent("main"), /VMs: 0 of 7/);
await visit(page, "/admin/vms", "admin vms");
await visit(page, "/admin/networks", "admin networks");
assert.match(await page.textContent("main"), /networks\.mode: flat/);
await visit(page, "/admin/outbox", "admin outbox");
await visit(page, "/admin/reconcile", "admin reconcile");
await submit(page, "button:has-text('Reconcile now')");
assert.match(await page.textContent(".notice.ok"), /Reconciliation ran/);
await visit(page, "/admin/audit", "admin audit");
assert.ok((await page.textContent("main")).includes("web.sign-in"));
await visit(page, "/admin/users/alice/purge", "admin purge");

// Suspension signs the developer out at once.
await page.goto(BASE + "/admin/users/alice");
await submit(page, "button:has-text('Suspend')");
assert.match(await page.textContent(".notice.ok"), /suspended/);
await dev.page.goto(BASE + "/dashboard");
assert.equal(new URL(dev.page.url()).pathname, "/sign-in");
assert.match(await dev.page.textContent("main"), /session has ended/);
await submit(page, "button:has-text('Resume')");

// Signing out ends the session for good.
await submit(page, "button:has-text('Sign out')");
assert.match(await page.textContent(".notice.ok"), /signed out/);
assert.equal((await page.goto(BASE + "/admin")).url(), BASE + "/sign-in");

await browser.close();
console.log(JSON.stringify(report));
