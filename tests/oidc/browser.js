// A human at a browser, for the login tests: Debian's chromium, headless,
// driven by playwright-core.
//
//   node tests/oidc/browser.js [--deny] [--user NAME] [--user-code CODE]
//        [--timeout S] [--chromium PATH] URL
//
// URL is an authorization URL (grant = authorization_code), a
// verification_uri_complete (grant = device_code), or a verification_uri
// with --user-code: the code is typed in as a human reading it off a
// terminal would.  The browser opens it,
// confirms the device's user code when asked, signs in as NAME (default
// "alice") on the test provider's login page, and consents -- or, with
// --deny, declines at the consent page.  It stops at the first page that is
// not the provider's (the loopback redirect to tokend) or at the provider's
// "you may close this window" page of the device flow.
//
// Prints one JSON line on stdout: {"ok":true,"final_url":...,"text":...}
// with the last page's URL and (the start of) its text, exit 0; or
// {"ok":false,"error":...}, exit 1.  Only loopback addresses are fetched:
// anything else (the provider pages' web font) is refused, so a machine
// without a network is not slower.

import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    deny: { type: 'boolean', default: false },
    user: { type: 'string', default: 'alice' },
    'user-code': { type: 'string' },
    timeout: { type: 'string', default: '30' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});

function result(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

if (positionals.length !== 1) {
  result({ ok: false, error: 'usage: browser.js [--deny] [--user NAME] URL' });
  process.exit(2);
}
const start = new URL(positionals[0]);
const timeout = Number(opt.timeout) * 1000;
const deadline = Date.now() + timeout;
const opOrigin = start.origin;

function loopback(url) {
  const host = new URL(url).hostname;
  return host === '127.0.0.1' || host === '[::1]' || host === 'localhost';
}

async function text(page) {
  try {
    return (await page.innerText('body', { timeout: 2000 })).slice(0, 2000);
  } catch {
    return '';
  }
}

// One step on the provider's pages; returns true when the flow is over.
async function step(page) {
  const url = new URL(page.url());
  if (url.origin !== opOrigin) return true;
  const body = await text(page);
  if (/sign-in was successful|can now close this page/i.test(body)) return true;
  // the device flow after a denial, or a code the provider no longer knows
  if (/request was interrupted|code you entered is incorrect/i.test(body)) return true;

  if (opt['user-code'] && await page.$('form[id="op.deviceInputForm"] input[name="user_code"]')) {
    // the device flow's "enter the code shown on your device" page
    await page.fill('input[name="user_code"]', opt['user-code']);
    await Promise.all([page.waitForNavigation({ timeout: deadline - Date.now() }),
      page.click('button[type="submit"][form="op.deviceInputForm"]')]);
    return false;
  }
  if (await page.$('form#op\\.deviceConfirmForm, form[id="op.deviceConfirmForm"]')) {
    // the device flow's "is this the code on your device?" page
    await Promise.all([page.waitForNavigation({ timeout: deadline - Date.now() }),
      page.click('button[autofocus][form="op.deviceConfirmForm"]')]);
    return false;
  }
  if (await page.$('input[name="prompt"][value="login"]')) {
    await page.fill('input[name="login"]', opt.user);
    await page.fill('input[name="password"]', 'any password will do');
    await Promise.all([page.waitForNavigation({ timeout: deadline - Date.now() }),
      page.click('button[type="submit"]')]);
    return false;
  }
  if (await page.$('input[name="prompt"][value="consent"]')) {
    if (opt.deny) {
      // devInteractions' own abort: error=access_denied for the client
      await page.goto(`${url.origin}${url.pathname.replace(/\/$/, '')}/abort`,
        { timeout: deadline - Date.now() });
      return false;
    }
    await Promise.all([page.waitForNavigation({ timeout: deadline - Date.now() }),
      page.click('button[type="submit"]')]);
    return false;
  }
  throw new Error(`unexpected page ${url.pathname}: ${body.slice(0, 300)}`);
}

let browser;
try {
  browser = await chromium.launch({
    executablePath: opt.chromium,
    headless: true,
    timeout,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.route('**/*', (route) => (loopback(route.request().url())
    ? route.continue() : route.abort()));
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  let navError = null;
  try {
    await page.goto(start.href, { timeout });
  } catch (err) {
    // the loopback redirect may end the navigation with an error page
    // (tokend gone); what counts is where the browser ended
    navError = String(err.message || err).split('\n')[0];
  }
  for (let n = 0; !navError && n < 10; n += 1) {
    if (Date.now() > deadline) throw new Error('timed out');
    try {
      if (await step(page)) break;
    } catch (err) {
      if (new URL(page.url()).origin !== opOrigin) break;
      throw err;
    }
  }
  result({ ok: true, final_url: page.url(), text: await text(page), nav_error: navError });
  await browser.close();
  process.exit(0);
} catch (err) {
  result({ ok: false, error: String(err.message || err).split('\n')[0] });
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
