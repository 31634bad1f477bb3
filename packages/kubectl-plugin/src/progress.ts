import { bytes } from './render.js';

/**
 * Progress on stderr: a self-rewriting line on a terminal, otherwise a line
 * at most every few seconds, so that logs stay readable. Silent with --quiet.
 */
export class Progress {
  private lastLine = 0;
  private live = false;
  constructor(
    private readonly enabled: boolean,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  step(message: string): void {
    if (!this.enabled) return;
    this.clear();
    this.stream.write(`${message}\n`);
  }

  transfer(label: string, done: number, total?: number): void {
    if (!this.enabled) return;
    const pct = total ? ` ${Math.min(100, Math.floor((done / total) * 100))}%` : '';
    const text = `${label}: ${bytes(done)}${total ? ` of ${bytes(total)}` : ''}${pct}`;
    if (this.stream.isTTY) {
      this.stream.write(`\r\x1b[2K${text}`);
      this.live = true;
    } else if (Date.now() - this.lastLine > 5_000 || (total !== undefined && done >= total)) {
      this.lastLine = Date.now();
      this.stream.write(`${text}\n`);
    }
  }

  clear(): void {
    if (this.live) {
      this.stream.write('\r\x1b[2K');
      this.live = false;
    }
  }
}
