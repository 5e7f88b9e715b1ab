// The widget's texts and avatar animals (strings.js, and the texts of the modules fetched later)
// without a browser.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MODERATOR_TEXTS } from "../../moderator.js";
import { REACTION_TEXTS } from "../../reactions.js";
import { REPLY_TEXTS } from "../../reply.js";
import { ANIMALS, STRINGS } from "../../strings.js";

test("every avatar animal is drawn as an emoji: emoji presentation by default, or U+FE0F after it", () => {
  for (const [key, glyph] of Object.entries(ANIMALS)) {
    assert.match(glyph, /^(\p{Emoji_Presentation}|\p{Emoji}\uFE0F)$/u, `${key}: ${[...glyph].map((c) => c.codePointAt(0).toString(16))}`);
  }
});

test("Korean and English have the same texts and the same animal names", () => {
  assert.deepEqual(Object.keys(STRINGS.ko).sort(), Object.keys(STRINGS.en).sort());
  assert.deepEqual(Object.keys(STRINGS.ko.animals).sort(), Object.keys(ANIMALS).sort());
  assert.deepEqual(Object.keys(STRINGS.en.animals).sort(), Object.keys(ANIMALS).sort());
});

test("the modules fetched later bring texts in both languages, none a reader's text already has", () => {
  for (const texts of [MODERATOR_TEXTS, REACTION_TEXTS, REPLY_TEXTS]) {
    assert.deepEqual(Object.keys(texts.ko).sort(), Object.keys(texts.en).sort());
    for (const key of Object.keys(texts.en)) assert.ok(!(key in STRINGS.en), `${key} is in strings.js too`);
  }
});
