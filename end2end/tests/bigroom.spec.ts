import { test, expect } from '@playwright/test';
import { spawn, type ChildProcess } from 'child_process';
import * as path from 'path';
import { pickName, root, say, startNode, unique } from './helpers';

// One room that 2,000 people join, a thousand a second, held by the load tool (a helper process
// speaking the public protocol), watched by a browser in it: the member list shows the count and
// the first page, not 2,000 rows, and the joins are folded into a few notices. The test starts its own node (built by the test command, like the load tool) with
// the per-address limits off, since every member comes from one address.
const MEMBERS = 2000;

let server: ChildProcess | undefined;
let load: ChildProcess | undefined;
let base = '';
let port = 0;

test.describe('a room with 2,000 members', () => {
  test.setTimeout(180_000);

  test.beforeAll(async () => {
    ({ node: server, port, base } = await startNode([
      '--connects-per-sec', '0', '--max-connections-per-address', '0', '--controls-per-sec', '0',
    ]));
  });

  test.afterAll(() => {
    load?.kill();
    server?.kill();
  });

  test('shows the count and the first page, and chat goes on', async ({ browser }) => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    await page.goto(`${base}/r/big-cap-0`);
    await expect(page.getByTestId('status')).toHaveText('Online');
    // Sorted first, so on the first page.
    const me = unique('aaa');
    await pickName(page, me);
    // Then 2,000 people come, a thousand a second.
    load = spawn(
      path.join(root, 'target/debug/chorus-load'),
      [
        'capacity', '--url', `ws://127.0.0.1:${port}/ws`, '--prefix', 'big',
        '--connections', String(MEMBERS), '--room-size', String(MEMBERS), '--ramp', '1000',
        '--hold-secs', '150', '--max-secs', '170',
      ],
      { stdio: 'ignore' },
    );
    const count = page.getByTestId('member-count');
    // Everyone the load tool holds, and this page.
    await expect(count).toHaveAttribute('data-count', String(MEMBERS + 1), { timeout: 120_000 });
    // The first page of names (the server's presence_list_max, 200), not 2,001 rows.
    await expect(page.getByTestId('members').locator('li')).toHaveCount(200);
    await expect(page.getByTestId('more-members')).toHaveText(`and ${MEMBERS + 1 - 200} more`);
    // The joins in a row are folded into a few notices, not 2,000 lines.
    const notices = page.getByTestId('notice');
    expect(await notices.count()).toBeLessThan(20);
    await expect(notices.filter({ hasText: /others joined$/ }).first()).toBeVisible();
    await page.screenshot({ path: test.info().outputPath('big-room-phone.png'), fullPage: false });
    const text = unique('said ');
    await say(page, text);
    await expect(page.getByTestId('messages')).toContainText(text);
    // `@` completes names past the first page too: the server is asked for the prefix.
    await expect(page.getByTestId('members')).not.toContainText('big-c999');
    const composer = page.getByTestId('composer');
    await composer.fill('');
    await composer.pressSequentially('hi @big-c99');
    const offered = page.getByTestId('suggest').getByRole('option');
    await expect(offered.first()).toHaveText('big-c99');
    await expect(offered).toHaveCount(6);
    await composer.pressSequentially('9');
    await expect(offered).toHaveText(['big-c999']);
    await composer.press('Enter');
    await expect(composer).toHaveValue('hi @big-c999 ');
    await context.close();
  });
});
