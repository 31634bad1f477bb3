/**
 * The default RPO target from a backup CronJob's schedule: one and a half times the longest gap
 * between two scheduled runs (a single missed run makes rpo_met 0 half-way to the next one).
 * Standard 5-field cron (numbers, `*`, ranges, steps, lists, the @hourly-style macros); anything
 * else is "unknown" and the exporter falls back to its fixed default.
 */

const MACROS: Record<string, string> = {
  '@yearly': '0 0 1 1 *', '@annually': '0 0 1 1 *', '@monthly': '0 0 1 * *', '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@hourly': '0 * * * *',
};

function field(text: string, min: number, max: number): Set<number> | undefined {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!m) return undefined;
    const from = m[1] === '*' ? min : Number(m[2]);
    const to = m[1] === '*' ? max : m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? max : from;
    const step = m[4] !== undefined ? Number(m[4]) : 1;
    if (from < min || to > max || from > to || step < 1) return undefined;
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return out;
}

/** Seconds between the two scheduled runs furthest apart (over 8 weeks), or undefined. */
export function longestScheduleGapSeconds(schedule: string): number | undefined {
  const parts = (MACROS[schedule.trim()] ?? schedule).trim().split(/\s+/);
  if (parts.length !== 5) return undefined;
  const [mi, h, dom, mon, dow] = [field(parts[0]!, 0, 59), field(parts[1]!, 0, 23), field(parts[2]!, 1, 31), field(parts[3]!, 1, 12), field(parts[4]!, 0, 7)];
  if (!mi || !h || !dom || !mon || !dow) return undefined;
  if (dow.has(7)) dow.add(0);
  const domAny = parts[2] === '*';
  const dowAny = parts[4] === '*';
  const start = Date.UTC(2025, 0, 6);
  let first: number | undefined;
  let prev: number | undefined;
  let gap = 0;
  for (let t = start; t < start + 56 * 86_400_000; t += 60_000) {
    const d = new Date(t);
    if (!mi.has(d.getUTCMinutes()) || !h.has(d.getUTCHours()) || !mon.has(d.getUTCMonth() + 1)) continue;
    const byDom = dom.has(d.getUTCDate());
    const byDow = dow.has(d.getUTCDay());
    // cron: when both day fields are restricted, either one matching is enough.
    if (!(domAny || dowAny ? byDom && byDow : byDom || byDow)) continue;
    if (prev !== undefined) gap = Math.max(gap, t - prev);
    first ??= t;
    prev = t;
  }
  if (first === undefined || prev === first) return undefined;
  return gap / 1000;
}

export function rpoFromSchedule(schedule: string): number | undefined {
  const gap = longestScheduleGapSeconds(schedule);
  return gap === undefined ? undefined : Math.round(gap * 1.5);
}
