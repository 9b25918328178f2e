import { test, expect, type Page } from '@playwright/test';
import { openRoom, pickName, unique } from './helpers';

// Links and a small Markdown subset, rendered by the page; what is stored is what was typed, and
// nothing a message says ever runs.

async function send(page: Page, text: string) {
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('composer').press('Enter');
  await expect(page.getByTestId('pending')).toHaveCount(0);
}

// The texts of `room`'s stored history, as the protocol gives them (a reader's raw `join`).
async function stored(page: Page, room: string): Promise<string[]> {
  return page.evaluate(
    (room) =>
      new Promise<string[]>((resolve) => {
        const ws = new WebSocket(`ws://${location.host}/ws`);
        ws.onopen = () => ws.send(JSON.stringify({ type: 'join', room }));
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          if (m.type === 'joined') {
            resolve(m.history.map((h: { text: string }) => h.text));
            ws.close();
          }
        };
      }),
    room,
  );
}

for (const size of [
  { name: 'phone', width: 390, height: 844 },
  { name: 'desktop', width: 1280, height: 800 },
]) {
  test(`links and formatting (${size.name})`, async ({ browser }) => {
    const viewport = { width: size.width, height: size.height };
    const room = unique('fmt');
    const writer = await openRoom(await browser.newContext({ viewport }), room);
    await pickName(writer, unique('ann'));
    const reader = await openRoom(await browser.newContext({ viewport }), room);
    const said = [
      '**bold** and *italic* and `a < b`, see https://example.com/docs?x=1.',
      '> a quote\n\n```\nfn main() {\n    println!("<b>hi</b>");\n}\n```',
      '[the docs](https://docs.rs/leptos) and ~~struck~~',
    ];
    for (const text of said) await send(writer, text);
    const messages = reader.getByTestId('message');
    await expect(messages).toHaveCount(3);

    const first = messages.nth(0);
    await expect(first.locator('strong')).toHaveText('bold');
    await expect(first.locator('em')).toHaveText('italic');
    await expect(first.locator('code')).toHaveText('a < b');
    const link = first.locator('a');
    await expect(link).toHaveText('https://example.com/docs?x=1');
    await expect(link).toHaveAttribute('href', 'https://example.com/docs?x=1');
    await expect(link).toHaveAttribute('target', '_blank');
    await expect(link).toHaveAttribute('rel', /noopener/);
    await expect(link).toHaveAttribute('rel', /noreferrer/);

    const second = messages.nth(1);
    await expect(second.locator('blockquote')).toHaveText('a quote');
    await expect(second.locator('pre code')).toHaveText('fn main() {\n    println!("<b>hi</b>");\n}');
    await expect(second.locator('b')).toHaveCount(0);

    const third = messages.nth(2);
    await expect(third.locator('a')).toHaveText('the docs');
    await expect(third.locator('a')).toHaveAttribute('href', 'https://docs.rs/leptos');
    await expect(third.locator('s')).toHaveText('struck');
    await reader.screenshot({ path: test.info().outputPath(`formatting-${size.name}.png`) });

    // Stored as typed.
    expect(await stored(reader, room)).toEqual(said);
    await writer.context().close();
    await reader.context().close();
  });
}

test('nothing a message says runs', async ({ browser }) => {
  const room = unique('inert');
  const context = await browser.newContext();
  const writer = await openRoom(context, room);
  await pickName(writer, unique('eve'));
  const reader = await openRoom(await browser.newContext(), room);
  const dialogs: string[] = [];
  reader.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  const hostile = [
    '<img src=x onerror="window.__pwned=1">',
    '[click me](javascript:window.__pwned=2)',
    '*<img src=x onerror="window.__pwned=3">* and <script>window.__pwned=4</script>',
    '<a href="javascript:window.__pwned=5">plain html link</a>',
    '[data](data:text/html,<script>alert(6)</script>) <javascript:alert(7)>',
    '![pic](https://127.0.0.1:1/nope.png) <svg onload=alert(8)>',
  ];
  for (const text of hostile) await send(writer, text);
  const messages = reader.getByTestId('message');
  await expect(messages).toHaveCount(hostile.length);
  // Shown as the text it is: no element from a message, and no link anywhere but the web.
  await expect(messages.locator('img, script, svg, iframe, b')).toHaveCount(0);
  await expect(messages.locator('a')).toHaveCount(0);
  await expect(messages.nth(0).locator('.text')).toHaveText(hostile[0]);
  await expect(messages.nth(1).locator('.text')).toHaveText(hostile[1]);
  await expect(messages.nth(3).locator('.text')).toHaveText(hostile[3]);
  // Clicking what looks like a link does nothing.
  await messages.nth(1).locator('.text').click();
  await messages.nth(3).locator('.text').click();
  await reader.waitForTimeout(300);
  expect(await reader.evaluate(() => (window as any).__pwned)).toBeUndefined();
  expect(dialogs).toEqual([]);
  await context.close();
  await reader.context().close();
});
