// Dates as people read them ("Today", "Tomorrow 9:00 AM", "Fri"), and the
// quick-add parser ("Pay rent tomorrow 9am #home !2"). Pure functions: the
// current time is always passed in, so node can test them without a page
// (web/tests/dates.test.mjs).

// A due date without a time is a date, not a moment. The API's due_at is a
// timestamp, so the page stores such a date as the last second of that day
// in the user's time zone (23:59:59 local): it sorts after the day's timed
// tasks, due_before/due_after filter it by its day, it is not overdue until
// the day is over, and a due_at at exactly 23:59:59 local reads back as a
// date only ("Fri", never "Fri 11:59 PM").
export function dateOnlyDue(year, monthIndex, day) {
  return new Date(year, monthIndex, day, 23, 59, 59, 0);
}

export function isDateOnly(date) {
  return date.getHours() === 23 && date.getMinutes() === 59 && date.getSeconds() === 59;
}

export function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate());
}

export function addDays(date, days) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate() + days,
    date.getHours(), date.getMinutes(), date.getSeconds(), date.getMilliseconds());
}

/** Whole calendar days from `now`'s day to `date`'s (rounded: a DST day is 23 or 25 h). */
export function daysFrom(now, date) {
  return Math.round((startOfDay(date) - startOfDay(now)) / 86_400_000);
}

/** RFC 3339 UTC without milliseconds, as the API writes times. */
export function toApiTime(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** "Today", "Tomorrow", "Yesterday", a weekday within the week ahead ("Fri"), else "Dec 1" (with the year when not this one). */
export function friendlyDay(date, now) {
  const days = daysFrom(now, date);
  if (days === 0) return 'Today';
  if (days === 1) return 'Tomorrow';
  if (days === -1) return 'Yesterday';
  if (days > 1 && days < 7) return date.toLocaleDateString(undefined, { weekday: 'short' });
  const options = { month: 'short', day: 'numeric' };
  if (date.getFullYear() !== now.getFullYear()) options.year = 'numeric';
  return date.toLocaleDateString(undefined, options);
}

export function friendlyTime(date) {
  return date.toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' });
}

/** A due date as read: "Tomorrow 9:00 AM", or "Fri" for a date without a time. */
export function friendlyDue(date, now) {
  const day = friendlyDay(date, now);
  return isDateOnly(date) ? day : `${day} ${friendlyTime(date)}`;
}

/** A day heading of the Upcoming view: "Tomorrow · Friday, December 4". */
export function dayHeading(date, now) {
  const options = { weekday: 'long', month: 'long', day: 'numeric' };
  if (date.getFullYear() !== now.getFullYear()) options.year = 'numeric';
  const full = date.toLocaleDateString(undefined, options);
  const days = daysFrom(now, date);
  if (days === 0) return `Today · ${full}`;
  if (days === 1) return `Tomorrow · ${full}`;
  return full;
}

// ---- quick add ------------------------------------------------------------

const WEEKDAYS = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
// Words that make a short weekday ("fri") a date: alone, "sun" or "sat" is
// too often a plain word of a title.
const DATE_LEADS = new Set(['on', 'next', 'by', 'due', 'this']);

function weekdayIndex(word, led) {
  const full = WEEKDAYS.indexOf(word);
  if (full >= 0) return full;
  if (!led || word.length < 3) return -1;
  return WEEKDAYS.findIndex((name) => name.startsWith(word));
}

function monthIndex(word) {
  if (word.length < 3) return -1;
  return MONTHS.findIndex((name, i) => word.startsWith(name) && longMonth(i).startsWith(word));
}

function longMonth(i) {
  return ['january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september',
    'october', 'november', 'december'][i];
}

/**
 * "9am", "9:30pm" as [hours, minutes], or null. With `bare`, also "21:00",
 * "noon" and "midnight": these are times only after "at" or a date ("at
 * noon", "tomorrow 21:00"); alone they are too often a title's own words
 * ("Read John 3:16", "Midnight Commander").
 */
function parseTime(word, bare) {
  if (bare && word === 'noon') return [12, 0];
  if (bare && word === 'midnight') return [0, 0];
  let m = /^(\d{1,2})(?::(\d{2}))?(am|pm)$/.exec(word);
  if (m) {
    let hours = Number(m[1]);
    const minutes = Number(m[2] || 0);
    if (hours < 1 || hours > 12 || minutes > 59) return null;
    if (hours === 12) hours = 0;
    if (m[3] === 'pm') hours += 12;
    return [hours, minutes];
  }
  m = bare && /^(\d{1,2}):(\d{2})$/.exec(word);
  if (m && Number(m[1]) < 24 && Number(m[2]) < 60) return [Number(m[1]), Number(m[2])];
  return null;
}

/**
 * Reads due date, labels and priority out of a new task's text, the way
 * Todoist's quick add does: "Pay rent tomorrow 9am #home !2" is the title
 * "Pay rent", due tomorrow at 9:00, label "home", priority 2 (Medium).
 * Recognised: today, tonight, tomorrow (tmr), weekdays ("friday", "on fri",
 * "next fri"), "in 3 days" / "in 2 weeks", 2030-05-01, "May 1" / "1 May";
 * "May 1 2030"; times 9am, 9:30pm, and after "at" or a date also 21:00,
 * noon and midnight; #label; !1 to !3.
 * Everything else stays in the title, and text that would leave no title is
 * a plain title. A time alone is today, or tomorrow once it has passed.
 *
 * Returns {title, due: Date|null, labels, priority: number|null, found}
 * where `found` is true when anything was read out of the text.
 */
export function parseQuickAdd(text, now) {
  const words = text.trim().split(/\s+/).filter(Boolean);
  const keep = [];
  const labels = [];
  let priority = null;
  let day = null; // [year, monthIndex, date]
  let time = null; // [hours, minutes]
  let dayEnds = -1;
  let tonight = false; // the index of the last word of the date read, for "tomorrow 21:00"
  const dayOf = (d) => [d.getFullYear(), d.getMonth(), d.getDate()];

  for (let i = 0; i < words.length; i += 1) {
    const word = words[i];
    const lower = word.toLowerCase().replace(/[,.;]$/, '');
    const next = (words[i + 1] || '').toLowerCase().replace(/[,.;]$/, '');
    const prev = (words[i - 1] || '').toLowerCase();

    // A label: # then a name that is not only digits ("#1" stays text),
    // without the punctuation that ends a sentence ("#home." is "home").
    const label = /^#([^\s#]{1,32}?)[,.;:!?]*$/.exec(word);
    if (label && /\D/.test(label[1]) && /[\p{L}\p{N}]/u.test(label[1])) {
      if (!labels.some((l) => l.toLowerCase() === label[1].toLowerCase())) labels.push(label[1]);
      continue;
    }
    if (priority === null && /^!([1-3])$/.test(word)) {
      priority = Number(word[1]);
      continue;
    }
    if (day === null) {
      let found = null;
      let used = 1;
      if (lower === 'today') found = dayOf(now);
      else if (lower === 'tonight') {
        found = dayOf(now);
        tonight = true; // 20:00 unless a time is given ("tonight at 7pm")
      } else if (lower === 'tomorrow' || lower === 'tmr' || lower === 'tmrw') found = dayOf(addDays(now, 1));
      else if (lower === 'in' && /^\d{1,3}$/.test(next) && /^(days?|weeks?)$/.test((words[i + 2] || '').toLowerCase())) {
        const n = Number(next) * ((words[i + 2].toLowerCase().startsWith('week')) ? 7 : 1);
        found = dayOf(addDays(now, n));
        used = 3;
      } else if (/^\d{4}-\d{2}-\d{2}$/.test(lower)) {
        const [y, m, d] = lower.split('-').map(Number);
        const date = new Date(y, m - 1, d);
        if (date.getMonth() === m - 1) found = [y, m - 1, d];
      } else if (monthIndex(lower) >= 0 && /^\d{1,2}$/.test(next)) {
        // "May 2", "May 2 2030"
        const year = yearOf(words[i + 2], now);
        found = year ? exactDate(year, monthIndex(lower), Number(next)) : upcomingDate(now, monthIndex(lower), Number(next));
        if (found) used = year ? 3 : 2;
      } else if (/^\d{1,2}$/.test(lower) && monthIndex(next) >= 0) {
        // "2 May", "2 May 2030"
        const year = yearOf(words[i + 2], now);
        found = year ? exactDate(year, monthIndex(next), Number(lower)) : upcomingDate(now, monthIndex(next), Number(lower));
        if (found) used = year ? 3 : 2;
      } else {
        const weekday = weekdayIndex(lower, DATE_LEADS.has(prev));
        if (weekday >= 0) {
          // The next one after today: "friday" on a Friday is a week ahead.
          const ahead = (weekday - now.getDay() + 7) % 7 || 7;
          found = dayOf(addDays(now, ahead));
        }
      }
      if (found) {
        day = found;
        dayEnds = i + used - 1;
        // "on fri", "next fri", "by fri", "due fri": the lead word goes too.
        if (keep.length && DATE_LEADS.has(prev)) keep.pop();
        i += used - 1;
        continue;
      }
    }
    if (time === null) {
      const parsed = parseTime(lower, prev === 'at' || (day !== null && dayEnds === i - 1));
      if (parsed) {
        time = parsed;
        if (keep.length && prev === 'at') keep.pop();
        continue;
      }
    }
    keep.push(word);
  }

  if (tonight && time === null) time = [20, 0];
  const title = keep.join(' ');
  const found = labels.length > 0 || priority !== null || day !== null || time !== null;
  if (!title) return { title: text.trim(), due: null, labels: [], priority: null, found: false };

  let due = null;
  if (day && time) due = new Date(day[0], day[1], day[2], time[0], time[1]);
  else if (day) due = dateOnlyDue(day[0], day[1], day[2]);
  else if (time) {
    due = new Date(now.getFullYear(), now.getMonth(), now.getDate(), time[0], time[1]);
    if (due <= now) due = addDays(due, 1);
  }
  return { title, due, labels, priority, found };
}

/**
 * A year written after a date ("2 May 2030"): this year or one of the next
 * ten, or null. Other numbers there are the title's ("Ship 5 May 2000
 * units", "Essay on 9 Nov 1989").
 */
function yearOf(word, now) {
  const m = /^(\d{4})[,.;]?$/.exec(word || '');
  const year = m && Number(m[1]);
  return year && year >= now.getFullYear() && year <= now.getFullYear() + 10 ? year : null;
}

/** [year, monthIndex, day] when that date exists, or null ("31 Apr" does not). */
function exactDate(year, month, day) {
  return new Date(year, month, day).getMonth() === month ? [year, month, day] : null;
}

/** The next `monthIndex`/`day` from today on (this year, else next), or null when there is no such date. */
function upcomingDate(now, month, day) {
  for (const year of [now.getFullYear(), now.getFullYear() + 1]) {
    const date = new Date(year, month, day);
    if (date.getMonth() !== month) return null;
    if (date >= startOfDay(now)) return [year, month, day];
  }
  return null;
}
