import { test, expect } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';

// The front-end developer's loop, as README's "Develop" promises it: scripts/dev.sh serving a copy
// of the checkout (DEVLOOP_DIR) at DEVLOOP_URL; this test edits the copy's stylesheet and one of
// its Rust strings and watches the open page. Run by scripts/devloop-test.sh (skipped otherwise).
const url = process.env.DEVLOOP_URL;
const dir = process.env.DEVLOOP_DIR;

// A Japanese string: the page is Japanese (from its first byte), and switching the language away
// and back draws it from the WASM the page runs.
const before = '名前を入力';
const after = '名前を入力してね';

function edit(file: string, change: (text: string) => string) {
  const full = path.join(dir!, file);
  const text = fs.readFileSync(full, 'utf8');
  const changed = change(text);
  expect(changed, `${file} changed`).not.toEqual(text);
  fs.writeFileSync(full, changed);
}

test.describe('the front-end loop', () => {
  test.skip(!url || !dir, 'run by scripts/devloop-test.sh');
  // A Rust edit rebuilds the server and the WASM (debug) on two shared cores.
  test.setTimeout(720_000);

  test('a stylesheet edit swaps in place; a Rust edit reloads the page with the new WASM', async ({
    browser,
  }) => {
    const context = await browser.newContext({ locale: 'ja-JP' });
    const page = await context.newPage();
    const logs: string[] = [];
    page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    await page.goto(url!);
    const nameInput = page.getByTestId('name-input');
    await expect(nameInput).toHaveAttribute('placeholder', before);
    // Hydrated and connected: what is typed now stays typed.
    await expect(page.getByTestId('status')).toHaveText('オンライン');
    await page.evaluate(() => ((window as any).__samePage = true));
    await nameInput.fill('devloop');
    await page.getByTestId('name-submit').click();
    await expect(page.getByTestId('my-name')).toHaveText('devloop');
    await page.getByTestId('composer').fill('a draft');

    // CSS: swapped in place by the reload socket, nothing reloaded.
    let start = Date.now();
    edit('style/main.css', (css) => css + '\nbody { accent-color: rgb(1, 2, 3); }\n');
    await expect
      .poll(() => page.evaluate(() => getComputedStyle(document.body).accentColor), {
        timeout: 90_000,
        message: `the new style in the open page (console: ${logs.join(' | ')})`,
      })
      .toBe('rgb(1, 2, 3)');
    const cssMs = Date.now() - start;
    expect(await page.evaluate(() => (window as any).__samePage), 'no reload for CSS').toBe(true);
    await expect(page.getByTestId('composer'), 'the draft survives a CSS edit').toHaveValue('a draft');

    // Rust: rebuilt, the page reloads itself and runs the new WASM.
    start = Date.now();
    edit('src/i18n.rs', (rs) =>
      rs.replace(`name_placeholder: "${before}",`, `name_placeholder: "${after}",`),
    );
    // The first sign of the new build is the page's reload.
    await expect
      .poll(() => page.evaluate(() => (window as any).__samePage ?? false), { timeout: 600_000 })
      .toBe(false);
    await expect(page.getByTestId('my-name'), 'the name is claimed again').toHaveText('devloop');
    await expect(nameInput, 'the new server renders the new string').toHaveAttribute(
      'placeholder',
      after,
    );
    await page.getByTestId('lang').selectOption('en');
    await expect(nameInput).toHaveAttribute('placeholder', 'Pick a name');
    await page.getByTestId('lang').selectOption('ja');
    await expect(nameInput, 'the new WASM renders the new string').toHaveAttribute(
      'placeholder',
      after,
    );
    const rustMs = Date.now() - start;
    console.log(`dev loop: CSS edit in the page after ${cssMs} ms, Rust edit after ${rustMs} ms`);
    const wasm = await page.evaluate(() =>
      performance
        .getEntriesByType('resource')
        .map((e) => e.name)
        .filter((n) => n.endsWith('.wasm')),
    );
    expect(wasm, 'the page loaded one WASM file').toHaveLength(1);
    const served = Buffer.from(await (await page.request.get(wasm[0])).body());
    const built = fs.readFileSync(path.join(dir!, 'target/dev-site/pkg', path.basename(new URL(wasm[0]).pathname)));
    expect(served.equals(built), 'the page runs the WASM just built').toBe(true);
    await context.close();
  });
});
