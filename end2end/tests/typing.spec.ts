import { test, expect, type Browser } from '@playwright/test';
import { pickName, say, unique } from './helpers';

// "Ann is typing…": what others type shows under the conversation while they type, in the
// page's language, and goes when their message comes (or after a few quiet seconds).

const langs = [
  {
    tag: 'en',
    one: (a: string) => `${a} is typing…`,
    two: (a: string, b: string) => `${a} and ${b} are typing…`,
    several: 'Several people are typing…',
  },
  {
    tag: 'zh-Hans',
    one: (a: string) => `${a} 正在输入…`,
    two: (a: string, b: string) => `${a} 和 ${b} 正在输入…`,
    several: '多人正在输入…',
  },
  {
    tag: 'ja',
    one: (a: string) => `${a} さんが入力中…`,
    two: (a: string, b: string) => `${a} さんと ${b} さんが入力中…`,
    several: '複数の人が入力中…',
  },
];
const sizes = [
  { name: 'phone', viewport: { width: 390, height: 844 } },
  { name: 'desktop', viewport: { width: 1280, height: 800 } },
];

async function person(browser: Browser, room: string, lang: string, viewport: { width: number; height: number }) {
  const context = await browser.newContext({ viewport });
  await context.addCookies([{ name: 'chorus_lang', value: lang, url: test.info().project.use.baseURL! }]);
  const page = await context.newPage();
  await page.goto(`/r/${room}`);
  await expect(page.getByTestId('status')).toHaveClass(/online/);
  const name = unique('p');
  await pickName(page, name);
  return { page, name };
}

for (const size of sizes) {
  for (const lang of langs) {
    test(`who is typing (${lang.tag}, ${size.name})`, async ({ browser }) => {
      const room = unique('typing');
      const reader = await person(browser, room, lang.tag, size.viewport);
      const ann = await person(browser, room, lang.tag, size.viewport);
      const bo = await person(browser, room, lang.tag, size.viewport);
      const line = reader.page.getByTestId('typing');
      await expect(line).toHaveText('');

      await ann.page.getByTestId('composer').pressSequentially('hel');
      await expect(line).toHaveText(lang.one(ann.name));
      // Not shown to the one typing.
      await expect(ann.page.getByTestId('typing')).toHaveText('');
      await bo.page.getByTestId('composer').pressSequentially('wai');
      await expect(line).toHaveText(lang.two(ann.name, bo.name));
      await reader.page.screenshot({ path: test.info().outputPath(`typing-${lang.tag}-${size.name}.png`) });

      // ann's message ends ann's typing at once; bo's fades on its own after a few seconds.
      await ann.page.getByTestId('composer').pressSequentially('lo');
      await ann.page.getByTestId('composer').press('Enter');
      await expect(reader.page.getByTestId('message').filter({ hasText: 'hello' })).toHaveCount(1);
      await expect(line).toHaveText(lang.one(bo.name));
      await expect(line).toHaveText('', { timeout: 10_000 });
      for (const p of [reader, ann, bo]) await p.page.context().close();
    });
  }
}

test('three or more typing are several people', async ({ browser }) => {
  const room = unique('several');
  const viewport = sizes[1].viewport;
  const reader = await person(browser, room, 'en', viewport);
  const typists = [];
  for (let i = 0; i < 3; i++) typists.push(await person(browser, room, 'en', viewport));
  for (const t of typists) await t.page.getByTestId('composer').pressSequentially('hm');
  await expect(reader.page.getByTestId('typing')).toHaveText(langs[0].several);
  await say(typists[0].page, 'hm!');
  await expect(reader.page.getByTestId('typing')).toHaveText(langs[0].two(typists[1].name, typists[2].name));
  for (const p of [reader, ...typists]) await p.page.context().close();
});
