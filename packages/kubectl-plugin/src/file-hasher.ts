import { execFile } from 'node:child_process';
import { digestsFromJson, digestsToJson, hashFile, setFileHasher, type FileHasher } from '@etcd-recover/core';

/**
 * The single executable cannot start a Worker (its startup snapshot holds every command, and a Worker
 * started from it aborts inside Node), so `backup verify` of a large local file hashes it in a second
 * process of the executable instead, in parallel with the parse (core: snapshot/verifier/file-hash.ts).
 * The word is not a command: static-cli answers it before oclif starts.
 */
export const HASH_WORD = '__sha256-file';

/** In the hashing process: hash the file and print its digests. */
export function answerHash(path: string | undefined): void {
  if (!path) throw new Error(`${HASH_WORD} needs a file`);
  process.stdout.write(digestsToJson(hashFile(path)));
}

const inChild: FileHasher = (path) =>
  new Promise((resolve, reject) => {
    execFile(process.execPath, [HASH_WORD, path], { encoding: 'utf8', maxBuffer: 1 << 16 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`the hashing process failed: ${stderr.trim() || err.message}`));
      try {
        resolve(digestsFromJson(stdout));
      } catch (e) {
        reject(e as Error);
      }
    });
  });

export function useHashProcess(): void {
  setFileHasher(inChild);
}
