import { test, expect, type Browser } from '@playwright/test';
import { pickName, say, setHidden, unique } from './helpers';

// Mentions: "@" completes the room's names, a message that names you is marked, counted in the
// hidden tab's title, and (as chosen per room: every message, mentions, nothing) raises a browser
// notification; the browser's leave is asked on a choice, never on load.

const langs = [
  { tag: 'en', all: 'Every message', nothing: 'Nothing' },
  { tag: 'zh-Hans', all: '所有消息', nothing: '不通知' },
  { tag: 'ja', all: 'すべてのメッセージ', nothing: '通知しない' },
];

// A page that records the notifications it shows, and the times it asks leave to, beside the
// browser's own (which still runs).
async function person(browser: Browser, room: string, lang: string, viewport: { width: number; height: number }, granted: boolean) {
  const context = await browser.newContext({ viewport });
  if (granted) await context.grantPermissions(['notifications']);
  await context.addCookies([{ name: 'chorus_lang', value: lang, url: test.info().project.use.baseURL! }]);
  await context.addInitScript(() => {
    const Real = window.Notification;
    const w = window as any;
    w.__shown = [];
    w.__asked = 0;
    class Spy extends Real {
      constructor(title: string, options?: NotificationOptions) {
        super(title, options);
        w.__shown.push({ title, body: options?.body });
      }
    }
    Object.defineProperty(Spy, 'permission', { get: () => Real.permission });
    Spy.requestPermission = (...args: any[]) => {
      w.__asked += 1;
      return (Real.requestPermission as any)(...args);
    };
    w.Notification = Spy;
  });
  const page = await context.newPage();
  await page.goto(`/r/${room}`);
  await expect(page.getByTestId('status')).toHaveClass(/online/);
  const name = unique(lang.slice(0, 2));
  await pickName(page, name);
  return { page, name };
}

const shown = (page: import('@playwright/test').Page) => page.evaluate(() => (window as any).__shown as { title: string; body: string }[]);
// Picks this room's notifications (on a phone, in the panel behind the header's button).
async function choose(page: import('@playwright/test').Page, label: string) {
  const picker = page.getByTestId('notify');
  if (!(await picker.isVisible())) await page.getByTestId('side-toggle').click();
  await picker.selectOption({ label });
}

const asked = (page: import('@playwright/test').Page) => page.evaluate(() => (window as any).__asked as number);

for (const size of [
  { name: 'phone', viewport: { width: 390, height: 844 } },
  { name: 'desktop', viewport: { width: 1280, height: 800 } },
]) {
  for (const lang of langs) {
    test(`mentions (${lang.tag}, ${size.name})`, async ({ browser }) => {
      const room = unique('at');
      const ann = await person(browser, room, lang.tag, size.viewport, true);
      const bo = await person(browser, room, lang.tag, size.viewport, false);
      await expect(bo.page.getByTestId('members')).toContainText(ann.name);

      // "@" and the first letters offer ann; Enter puts her name in.
      const composer = bo.page.getByTestId('composer');
      await composer.pressSequentially(`hi @${ann.name.slice(0, 3)}`);
      const offered = bo.page.getByTestId('suggest');
      await expect(offered.getByRole('option')).toHaveText([ann.name]);
      await expect(composer).toHaveAttribute('aria-activedescendant', 'mention-0');
      await bo.page.screenshot({ path: test.info().outputPath(`suggest-${lang.tag}-${size.name}.png`) });
      await composer.press('Enter');
      await expect(offered).toHaveCount(0);
      await expect(composer).toHaveValue(`hi @${ann.name} `);
      await composer.pressSequentially('look');
      await composer.press('Enter');

      // Marked for ann, not for bo.
      const annSees = ann.page.getByTestId('message');
      await expect(annSees.filter({ hasText: 'look' })).toHaveClass(/mention/);
      await expect(bo.page.getByTestId('message').filter({ hasText: 'look' })).not.toHaveClass(/mention/);

      // Hidden: a mention notifies (the default), other messages are counted only.
      await setHidden(ann.page, true);
      await say(bo.page, `@${ann.name} are you there?`);
      await say(bo.page, 'just chatting');
      await expect(annSees.filter({ hasText: 'just chatting' })).toHaveCount(1);
      await expect(ann.page).toHaveTitle(/^\(@1 · 2\)/);
      expect((await shown(ann.page)).map((n) => n.body)).toEqual([`@${ann.name} are you there?`]);
      expect((await shown(ann.page))[0].title).toContain(bo.name);
      await ann.page.screenshot({ path: test.info().outputPath(`mention-${lang.tag}-${size.name}.png`) });

      // Every message, then nothing.
      await choose(ann.page, lang.all);
      await say(bo.page, 'anything at all');
      await expect.poll(async () => (await shown(ann.page)).length).toBe(2);
      await choose(ann.page, lang.nothing);
      await say(bo.page, `@${ann.name} quiet now`);
      await expect(annSees.filter({ hasText: 'quiet now' })).toHaveCount(1);
      expect((await shown(ann.page)).length).toBe(2);
      await setHidden(ann.page, false);
      await expect(ann.page).not.toHaveTitle(/^\(/);

      // bo was never asked on load; choosing to be notified asks once.
      expect(await asked(bo.page)).toBe(0);
      await choose(bo.page, lang.all);
      await expect.poll(() => asked(bo.page)).toBe(1);
      // And the choice is kept for the room.
      await bo.page.reload();
      await expect(bo.page.getByTestId('notify')).toHaveValue('all');
      await ann.page.context().close();
      await bo.page.context().close();
    });
  }
}
