// The page's date helpers and quick-add parser, without a browser:
//   node --test web/tests/dates.test.mjs
// (TZ is fixed by scripts/browser-test so that local days are known.)

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dateOnlyDue, friendlyDue, isDateOnly, parseQuickAdd } from '../dates.js';

// Thursday 3 December 2026, 14:00 local.
const now = new Date(2026, 11, 3, 14, 0);

test('the example of the issue: due, label and priority come out of the title', () => {
  const parsed = parseQuickAdd('Pay rent tomorrow 9am #home !2', now);
  assert.equal(parsed.title, 'Pay rent');
  assert.deepEqual(parsed.due, new Date(2026, 11, 4, 9, 0));
  assert.deepEqual(parsed.labels, ['home']);
  assert.equal(parsed.priority, 2);
  assert.equal(parsed.found, true);
});

test('plain text stays a title', () => {
  for (const text of ['Call mom', 'Buy sun cream', 'Sat exam prep', '#1 priority is sleep', 'Email Wow!2']) {
    const parsed = parseQuickAdd(text, now);
    assert.equal(parsed.found, false, text);
    assert.equal(parsed.title, text);
  }
});

test('a month and a number are read as a date, and the preview shows it (a known false reading)', () => {
  // "Watch may 2 films" reads "May 2": the preview shows it as typed, and
  // "Keep as typed" keeps the text as the title.
  const parsed = parseQuickAdd('Watch may 2 films', now);
  assert.equal(parsed.title, 'Watch films');
  assert.deepEqual(parsed.due, dateOnlyDue(2027, 4, 2));
});

test('text that would leave no title is a title', () => {
  const parsed = parseQuickAdd('tomorrow', now);
  assert.equal(parsed.title, 'tomorrow');
  assert.equal(parsed.due, null);
});

test('a date without a time is a date', () => {
  const parsed = parseQuickAdd('Dentist on fri', now);
  assert.equal(parsed.title, 'Dentist');
  assert.ok(isDateOnly(parsed.due));
  assert.deepEqual(parsed.due, dateOnlyDue(2026, 11, 4));
  assert.equal(friendlyDue(parsed.due, now), 'Tomorrow');
});

test('weekdays, months and relative days', () => {
  assert.deepEqual(parseQuickAdd('Gym thursday', now).due, dateOnlyDue(2026, 11, 10));
  assert.deepEqual(parseQuickAdd('Trip in 2 weeks', now).due, dateOnlyDue(2026, 11, 17));
  assert.deepEqual(parseQuickAdd('Taxes Apr 15', now).due, dateOnlyDue(2027, 3, 15));
  assert.deepEqual(parseQuickAdd('Party 2030-05-01 at 18:30', now).due, new Date(2030, 4, 1, 18, 30));
});

test('a time alone is today, or tomorrow once it has passed', () => {
  assert.deepEqual(parseQuickAdd('Call 5pm', now).due, new Date(2026, 11, 3, 17, 0));
  assert.deepEqual(parseQuickAdd('Call at 9:15am', now).due, new Date(2026, 11, 4, 9, 15));
});

test('numbers and words of a title are not read as times', () => {
  for (const text of ['Read John 3:16', 'Midnight Commander', 'Noon prayers', 'Flight AF 12:30 check', 'Tag #!!']) {
    const parsed = parseQuickAdd(text, now);
    assert.equal(parsed.found, false, text);
    assert.equal(parsed.title, text);
  }
  // ...but they are after "at" or a date.
  assert.deepEqual(parseQuickAdd('Lunch at noon', now).due, new Date(2026, 11, 4, 12, 0));
  assert.deepEqual(parseQuickAdd('Deploy tomorrow 21:00', now).due, new Date(2026, 11, 4, 21, 0));
  assert.deepEqual(parseQuickAdd('Backup at midnight', now).due, new Date(2026, 11, 4, 0, 0));
  assert.equal(parseQuickAdd('Lunch at noon', now).title, 'Lunch');
});

test('a date with its year', () => {
  const parsed = parseQuickAdd('Book for 2 may 2030', now);
  assert.equal(parsed.title, 'Book for');
  assert.deepEqual(parsed.due, dateOnlyDue(2030, 4, 2));
  assert.deepEqual(parseQuickAdd('Renew passport May 2 2031', now).due, dateOnlyDue(2031, 4, 2));
  // A date that does not exist is not a date.
  assert.equal(parseQuickAdd('Party 31 apr 2030', now).due, null);
  // A number after a date is its year only when it is a year ahead (this one to ten on).
  const units = parseQuickAdd('Ship 5 May 2000 units', now);
  assert.equal(units.title, 'Ship 2000 units');
  assert.deepEqual(units.due, dateOnlyDue(2027, 4, 5));
  assert.equal(parseQuickAdd('Print May 3 2500 flyers', now).title, 'Print 2500 flyers');
});

test('tonight is 20:00 unless a time is given', () => {
  assert.deepEqual(parseQuickAdd('Read tonight', now).due, new Date(2026, 11, 3, 20, 0));
  const dinner = parseQuickAdd('Dinner tonight at 7pm', now);
  assert.equal(dinner.title, 'Dinner');
  assert.deepEqual(dinner.due, new Date(2026, 11, 3, 19, 0));
});

test('a label ends before the punctuation of a sentence', () => {
  const parsed = parseQuickAdd('Clean the kitchen #home. Then #errands, later', now);
  assert.deepEqual(parsed.labels, ['home', 'errands']);
  assert.equal(parsed.title, 'Clean the kitchen Then later');
});

test('friendly dates', () => {
  assert.equal(friendlyDue(new Date(2026, 11, 3, 9, 0), now), 'Today 9:00 AM');
  assert.equal(friendlyDue(dateOnlyDue(2026, 11, 2), now), 'Yesterday');
  assert.equal(friendlyDue(dateOnlyDue(2026, 11, 4), now), 'Tomorrow');
  assert.equal(friendlyDue(dateOnlyDue(2026, 11, 7), now), 'Mon');
  assert.equal(friendlyDue(dateOnlyDue(2026, 11, 25), now), 'Dec 25');
  assert.equal(friendlyDue(dateOnlyDue(2027, 0, 5), now), 'Jan 5, 2027');
});
