import { test, expect } from '@playwright/test';
import { personIn as person, pickName, say, unique } from './helpers';

// Moderation in the page: a moderator (here by the operator token, typed as `/mod <token>`)
// deletes someone else's message, sets slow mode, mutes and removes a person, with slash
// commands; everyone sees each action as a notice, and the person it touches sees why their
// composer waits or is closed, counting down.

const TOKEN = process.env.CHORUS_OPERATOR_TOKEN ?? 'e2e-operator-token-0123';

const langs = [
  {
    tag: 'en',
    moderator: 'You are a moderator here',
    deletedByMod: 'This message was deleted by a moderator.',
    slowNotice: /turned on slow mode: one message every 30 s/,
    slowOn: 'Slow mode: one message every 30 s.',
    slowWait: /^Slow mode: you can send again in \d+ s\.$/,
    mutedNotice: /muted .* for 5 min/,
    muted: /^A moderator muted you here for \d+ (s|min)\.$/,
    kicked: /^A moderator removed you from this room\. You can come back in \d+ (s|min)\.$/,
  },
  {
    tag: 'zh-Hans',
    moderator: '你是这里的管理员',
    deletedByMod: '此消息已被管理员删除。',
    slowNotice: /开启了慢速模式：每 30 秒 一条消息/,
    slowOn: '慢速模式：每 30 秒 一条消息。',
    slowWait: /^慢速模式：\d+ 秒后可以再发送。$/,
    mutedNotice: /禁言 5 分钟/,
    muted: /^管理员已将你在此禁言，剩余 \d+ (秒|分钟)。$/,
    kicked: /^管理员已将你移出此房间，\d+ (秒|分钟)后可以回来。$/,
  },
  {
    tag: 'ja',
    moderator: 'ここではモデレーターです',
    deletedByMod: 'このメッセージはモデレーターが削除しました。',
    slowNotice: /スローモードにしました：30 秒 に 1 件まで/,
    slowOn: 'スローモード：30 秒 に 1 件まで。',
    slowWait: /^スローモード：あと \d+ 秒 で送信できます。$/,
    mutedNotice: /5 分 ミュートしました/,
    muted: /^モデレーターによりここでミュートされています（残り \d+ (秒|分)）。$/,
    kicked: /^モデレーターによりこのルームから退出させられました。\d+ (秒|分) 後に戻れます。$/,
  },
];

for (const size of [
  { name: 'phone', viewport: { width: 390, height: 844 } },
  { name: 'desktop', viewport: { width: 1280, height: 800 } },
]) {
  for (const lang of langs) {
    test(`a moderator deletes, slows, mutes and removes (${lang.tag}, ${size.name})`, async ({ browser }) => {
      const room = unique('mod');
      const ann = await person(browser, room, lang.tag, size.viewport);
      await pickName(ann, unique('ann'));
      const boName = unique('bo');
      const bo = await person(browser, room, lang.tag, size.viewport);
      await pickName(bo, boName);
      const annRules = ann.getByTestId('rules');
      const boRules = bo.getByTestId('rules');
      const boComposer = bo.getByTestId('composer');

      // Not a moderator: no Delete on others' messages, and a command is refused.
      await say(bo, 'spam spam spam');
      await expect(ann.getByTestId('message')).toHaveCount(1);
      await expect(ann.getByTestId('delete')).toHaveCount(0);
      await say(ann, '/mod wrong-token');
      await expect(ann.getByTestId('error')).toBeVisible();
      await say(ann, `/mod ${TOKEN}`);
      await expect(annRules).toContainText(lang.moderator);
      await expect(ann.getByTestId('composer')).toHaveValue('');

      // Anyone's message: bo sees it deleted by a moderator.
      const spam = ann.getByTestId('message').nth(0);
      await spam.hover();
      await spam.getByTestId('delete').click();
      await expect(bo.getByTestId('message').nth(0).getByTestId('deleted')).toHaveText(lang.deletedByMod);

      // Slow mode: a notice for all; bo's second message waits its turn, counted down.
      await say(ann, '/slow 30');
      await expect(bo.getByTestId('moderation').last()).toHaveText(lang.slowNotice);
      await expect(boRules).toHaveText(lang.slowOn);
      await say(bo, 'first');
      await expect(ann.getByTestId('message').last()).toContainText('first');
      await expect(boRules).toHaveText(lang.slowWait);
      await say(bo, 'second');
      await expect(boComposer).toHaveValue('');
      await expect(bo.getByTestId('pending')).toHaveAttribute('data-state', 'Queued');
      // The moderator is not slowed.
      await say(ann, 'one');
      await say(ann, 'two');
      await expect(bo.getByTestId('message').last()).toContainText('two');
      await bo.screenshot({ path: test.info().outputPath(`slow-${lang.tag}-${size.name}.png`) });

      // A mute closes bo's composer and says for how long.
      await say(ann, `/mute ${boName} 5`);
      await expect(bo.getByTestId('moderation').last()).toHaveText(lang.mutedNotice);
      await expect(boRules).toHaveText(lang.muted);
      await expect(boComposer).toBeDisabled();
      await bo.screenshot({ path: test.info().outputPath(`muted-${lang.tag}-${size.name}.png`) });

      // A reload of the moderator's tab keeps its rights (the tab kept the token).
      await ann.reload();
      await expect(ann.getByTestId('status')).toHaveClass(/online/);
      await expect(annRules).toContainText(lang.moderator);
      await expect(ann.getByTestId('error')).toHaveCount(0);

      // A removal takes bo out of the room for everyone.
      await say(ann, `/kick ${boName} 2`);
      await expect(boRules).toHaveText(lang.kicked);
      await expect(ann.getByTestId('members')).not.toContainText(boName);
      await expect(boComposer).toBeDisabled();
      await ann.screenshot({ path: test.info().outputPath(`moderator-${lang.tag}-${size.name}.png`) });
      await bo.screenshot({ path: test.info().outputPath(`kicked-${lang.tag}-${size.name}.png`) });
      for (const p of [ann, bo]) await p.context().close();
    });
  }
}
