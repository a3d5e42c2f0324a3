// weir's status page in a real browser (Debian's chromium, driven by
// Playwright): it loads with the pipeline's stages, its in-rate changes
// without a reload (the page refreshes itself), and after a swap through
// the admin API it shows the new plugin version and the swap.
//
// node status-page.mjs --url URL --pipeline NAME --stage STAGE \
//   --component FILE --token TOKEN --screenshot PNG [--stages a,b,c]
//
// Prints one line per check; exits non-zero on the first that fails.

import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    pipeline: { type: "string" },
    stage: { type: "string" },
    stages: { type: "string" },
    component: { type: "string" },
    token: { type: "string" },
    screenshot: { type: "string" },
  },
});

const TIMEOUT = 90_000;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pipeline = page.locator(`section[data-pipeline="${args.pipeline}"]`);

  await page.goto(args.url, { waitUntil: "domcontentloaded" });
  await pipeline.waitFor({ timeout: TIMEOUT });
  for (const stage of args.stages.split(",")) {
    await pipeline.locator(`tr[data-stage="${stage}"]`).waitFor({ timeout: TIMEOUT });
  }
  console.log(`loaded: pipeline ${args.pipeline} with stages ${args.stages}`);

  // The rate is read from the page as it refreshes itself: no reload.
  const rate = pipeline.locator('[data-metric="in-rate"] .value');
  const first = (await rate.textContent()).trim();
  const deadline = Date.now() + TIMEOUT;
  let now = first;
  while (now === first) {
    if (Date.now() > deadline) throw new Error(`the in-rate stayed at "${first}"`);
    await page.waitForTimeout(500);
    now = (await pipeline.locator('[data-metric="in-rate"] .value').textContent()).trim();
  }
  console.log(`rate changed: "${first}" -> "${now}"`);

  const version = pipeline.locator(`tr[data-stage="${args.stage}"] td.version`);
  const before = await version.getAttribute("data-version");
  const response = await fetch(
    `${args.url}pipelines/${args.pipeline}/stages/${args.stage}/plugin?origin=${encodeURIComponent(args.component)}`,
    {
      method: "PUT",
      headers: { authorization: `Bearer ${args.token}` },
      body: await readFile(args.component),
    },
  );
  const swap = await response.json();
  if (!response.ok) throw new Error(`the swap failed: ${response.status} ${JSON.stringify(swap)}`);
  if (swap.to === before) throw new Error(`the swap kept version ${before}`);
  console.log(`swapped ${args.stage}: ${before.slice(0, 12)} -> ${swap.to.slice(0, 12)}`);

  await pipeline
    .locator(`tr[data-stage="${args.stage}"] td.version[data-version="${swap.to}"]`)
    .waitFor({ timeout: TIMEOUT });
  await pipeline.locator(`tr[data-swap="${swap.id}"]`).waitFor({ timeout: TIMEOUT });
  console.log(`the page shows version ${swap.to.slice(0, 12)} and swap #${swap.id}`);

  await page.screenshot({ path: args.screenshot, fullPage: true });
  console.log(`screenshot: ${args.screenshot}`);
} finally {
  await browser.close();
}
