import { stringify as toYaml } from 'yaml';

export type OutputFormat = 'table' | 'json' | 'yaml' | 'wide';

export interface Column<T> {
  header: string;
  get: (row: T) => string | number | undefined;
  align?: 'left' | 'right';
  wide?: boolean;
}

/** A kubectl-style table: upper-case headers, columns padded with two spaces. */
export function table<T>(rows: readonly T[], columns: Column<T>[], opts: { wide?: boolean } = {}): string {
  const cols = columns.filter((c) => opts.wide || !c.wide);
  const cells = rows.map((r) => cols.map((c) => String(c.get(r) ?? '')));
  const widths = cols.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => (cols[i]!.align === 'right' ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(cols.map((c) => c.header.toUpperCase())), ...cells.map(line)].join('\n');
}

export function formatStructured(value: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? JSON.stringify(value, null, 2) : toYaml(value, { lineWidth: 0 }).trimEnd();
}

export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** kubectl-style age: 45s, 12m, 3h, 5d. */
export function age(from: string | Date | undefined, now = new Date()): string {
  if (!from) return '';
  const ms = now.getTime() - new Date(from).getTime();
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  return `${Math.floor(s / 60)}m${Math.round(s % 60)}s`;
}
