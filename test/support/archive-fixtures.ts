/**
 * Builders for the backup layouts other tools write, from a real snapshot, with the real tools
 * where this machine has them: tar, gzip and zip (Info-ZIP); Go's own compress/gzip, compress/zlib,
 * compress/lzw and archive/zip (what Gardener's etcd-backup-restore and k3s are written with), run
 * as a tiny Go program; Python's zlib. Unix `compress` is not installed, so `compressZ` writes .Z
 * here (and the tests check its output with `gzip -d`, which reads .Z).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const GO_SOURCE = `package main

import (
	"archive/zip"
	"compress/gzip"
	"compress/lzw"
	"compress/zlib"
	"io"
	"os"
)

// Usage: packer gzip|zlib|lzw IN OUT, or packer zip IN OUT ENTRYNAME [ENTRYNAME2 IN2]...
func main() {
	out, err := os.Create(os.Args[3])
	check(err)
	if os.Args[1] == "zip" {
		zw := zip.NewWriter(out)
		pairs := append([]string{os.Args[2], os.Args[4]}, os.Args[5:]...)
		for i := 0; i+1 < len(pairs); i += 2 {
			in, err := os.Open(pairs[i])
			check(err)
			w, err := zw.Create(pairs[i+1])
			check(err)
			_, err = io.Copy(w, in)
			check(err)
			in.Close()
		}
		check(zw.Close())
		check(out.Close())
		return
	}
	in, err := os.Open(os.Args[2])
	check(err)
	var w io.WriteCloser
	switch os.Args[1] {
	case "gzip":
		w = gzip.NewWriter(out)
	case "zlib":
		w = zlib.NewWriter(out)
	case "lzw":
		w = lzw.NewWriter(out, lzw.LSB, 8)
	}
	_, err = io.Copy(w, in)
	check(err)
	check(w.Close())
	check(out.Close())
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
`;

let packer: string | undefined;

/** Builds (once per run) the Go program that packs files as Gardener and k3s do. */
export function goPacker(): string {
  if (packer) return packer;
  const dir = join(tmpdir(), 'etcd-recover-go-packer');
  mkdirSync(dir, { recursive: true });
  const src = join(dir, 'packer.go');
  // Named after its source: an edited program is built anew.
  const bin = join(dir, `packer-${createHash('sha256').update(GO_SOURCE).digest('hex').slice(0, 12)}`);
  writeFileSync(src, GO_SOURCE);
  if (!existsSync(bin)) execFileSync('go', ['build', '-o', bin, src], { cwd: dir, env: { ...process.env, GO111MODULE: 'off', GOFLAGS: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  return (packer = bin);
}

/** Compresses `input` into `output` with Go's compress/{gzip,zlib,lzw} (lzw: LSB, 8-bit literals, as Gardener). */
export function goCompress(kind: 'gzip' | 'zlib' | 'lzw', input: string, output: string): void {
  execFileSync(goPacker(), [kind, input, output]);
}

/** A zip written by Go's archive/zip (deflate, data descriptors: what k3s/rke2 write). Entries: [file, name] pairs. */
export function goZip(output: string, entries: [string, string][]): void {
  execFileSync(goPacker(), ['zip', entries[0]![0], output, entries[0]![1], ...entries.slice(1).flatMap(([f, n]) => [f, n])]);
}

/** zlib (RFC 1950) by Python's zlib module. */
export function pythonZlib(input: string, output: string): void {
  execFileSync('python3', ['-c', 'import sys, zlib; open(sys.argv[2], "wb").write(zlib.compress(open(sys.argv[1], "rb").read(), 6))', input, output]);
}

/** `tar -czf` / `tar -cf` of `entries` (paths relative to `cwd`). */
export function tarFiles(output: string, cwd: string, entries: string[], gzip = true): void {
  execFileSync('tar', [gzip ? '-czf' : '-cf', output, '-C', cwd, ...entries]);
}

/** Info-ZIP `zip` (stored sizes in the local headers; -j: no folders). */
export function zipFiles(output: string, files: string[]): void {
  execFileSync('zip', ['-q', '-j', output, ...files]);
}

/** `gzip -c`. */
export function gzipFile(input: string, output: string): void {
  writeFileSync(output, execFileSync('gzip', ['-c', '-n', input], { maxBuffer: 1 << 30 }));
}

/**
 * Unix compress (.Z): LZW with codes from 9 to `maxBits` bits, LSB first, block mode; at every
 * width change (and CLEAR) the rest of the group of eight codes is padding, as compress writes it.
 * With `clearWhenFull`, a CLEAR follows when the table is full (what compress does when the ratio drops).
 */
export function compressZ(data: Uint8Array, opts: { maxBits?: number; clearWhenFull?: boolean } = {}): Buffer {
  const maxBits = opts.maxBits ?? 16;
  const out: number[] = [0x1f, 0x9d, 0x80 | maxBits];
  let acc = 0;
  let nacc = 0;
  let width = 9;
  let run = 0;
  const emit = (code: number): void => {
    acc |= code << nacc;
    nacc += width;
    while (nacc >= 8) {
      out.push(acc & 0xff);
      acc >>>= 8;
      nacc -= 8;
    }
    run++;
  };
  const pad = (): void => {
    const codes = run % 8 === 0 ? 0 : 8 - (run % 8);
    for (let i = 0; i < codes; i++) emit(0);
    run = 0;
  };
  const cap = 1 << maxBits;
  let table = new Map<number, number>();
  let next = 257;
  if (!data.length) return Buffer.from(out);
  let ent = data[0]!;
  for (let i = 1; i < data.length; i++) {
    const c = data[i]!;
    const key = ent * 256 + c;
    const hit = table.get(key);
    if (hit !== undefined) {
      ent = hit;
      continue;
    }
    emit(ent);
    if (next > (1 << width) - 1 && width < maxBits) {
      pad();
      width++;
    }
    if (next < cap) table.set(key, next++);
    else if (opts.clearWhenFull) {
      emit(256);
      pad();
      width = 9;
      table = new Map();
      next = 257;
    }
    ent = c;
  }
  emit(ent);
  if (nacc > 0) out.push(acc & 0xff);
  return Buffer.from(out);
}
