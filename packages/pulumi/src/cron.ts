/** Kubernetes CronJob schedule validation (5 fields or a macro); returns the problem or undefined. */
const RANGES: [string, number, number][] = [
  ['minute', 0, 59],
  ['hour', 0, 23],
  ['day of month', 1, 31],
  ['month', 1, 12],
  ['day of week', 0, 7],
];
const MACROS = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);

export function cronProblem(schedule: string): string | undefined {
  const s = schedule.trim();
  if (MACROS.has(s)) return undefined;
  const fields = s.split(/\s+/);
  if (fields.length !== 5) return `"${schedule}" is not a cron schedule: it needs 5 fields (minute hour day-of-month month day-of-week) or a macro like @hourly`;
  for (const [i, f] of fields.entries()) {
    const [name, lo, hi] = RANGES[i]!;
    for (const part of f.split(',')) {
      const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
      if (!m) return `"${schedule}": the ${name} field "${f}" is not valid`;
      const [, , a, b, step] = m;
      const nums = [a, b].filter((x): x is string => x !== undefined).map(Number);
      if (nums.some((n) => n < lo || n > hi)) return `"${schedule}": the ${name} field "${f}" is outside ${lo}-${hi}`;
      if (nums.length === 2 && nums[0]! > nums[1]!) return `"${schedule}": the ${name} range "${part}" is reversed`;
      if (step !== undefined && Number(step) === 0) return `"${schedule}": a step of 0 in the ${name} field`;
    }
  }
  return undefined;
}
