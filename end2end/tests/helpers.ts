import { expect, type Page, type BrowserContext } from '@playwright/test';

// Every test uses its own room and names: the servers live across tests.
export const unique = (prefix: string) => `${prefix}${Math.random().toString(36).slice(2, 8)}`;

// Opens /r/<room> on `base` (default: the configured baseURL) and waits until it is live.
export async function openRoom(context: BrowserContext, room: string, base = ''): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${base}/r/${room}`);
  // "Online" appears only once the WASM has hydrated the page and its WebSocket is open.
  await expect(page.getByTestId('status')).toHaveText('Online');
  return page;
}

export async function pickName(page: Page, name: string) {
  await page.getByTestId('name-input').fill(name);
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('my-name')).toHaveText(name);
  await expect(page.getByTestId('members')).toContainText(name);
}

export async function say(page: Page, text: string) {
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('composer').press('Enter');
}

// Records every status the page shows from now on (some last only a moment).
export async function recordStatuses(page: Page) {
  await page.evaluate(() => {
    const el = document.querySelector('[data-testid=status]')!;
    const seen: string[] = ((window as any).__statuses = []);
    new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, {
      subtree: true,
      characterData: true,
      childList: true,
    });
  });
}

export async function statuses(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as any).__statuses ?? []);
}
