// What the console's end-to-end tests share: waiting on a condition, not a clock.

export const STEP_TIMEOUT = 30_000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 200 ms until it returns something truthy (returned), or
 * fails after `timeout` with the last value or error it saw. */
export async function until(what, check, timeout = STEP_TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(200);
  }
}
