/**
 * The chunks of a readable stream as they arrive, read through 'data' events
 * rather than the stream's async iterator: that one calls read(), which
 * concatenates (copies) whatever chunks are buffered: for a gigabyte streamed
 * from etcd or S3 that is another gigabyte of copying and of garbage waiting
 * for the collector. `map` may turn a chunk into pieces (slices of it).
 * (Measured on the HTTP/1 body of an S3 GET it made no difference to speed or
 * memory: there the socket's read-ahead is small; used for etcd's HTTP/2 stream.)
 *
 * The stream is paused while more than `highWater` bytes wait for the
 * consumer: TCP or HTTP/2 flow control then stops the sender.
 */
export async function* chunksOf(
  stream: NodeJS.ReadableStream,
  map: (chunk: Buffer) => Buffer[] = (c) => [c],
  highWater = 1024 * 1024,
): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let head = 0;
  let queued = 0;
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (chunk: Buffer) => {
    try {
      for (const b of map(chunk)) {
        queue.push(b);
        queued += b.length;
      }
    } catch (e) {
      failure ??= e;
    }
    if (queued > highWater) stream.pause();
    notify();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (e: unknown) => {
    failure ??= e;
    notify();
  };
  stream.on('data', onData);
  stream.on('end', onEnd);
  stream.on('close', onEnd);
  stream.on('error', onError);
  try {
    for (;;) {
      if (failure) throw failure;
      if (head < queue.length) {
        const b = queue[head]!;
        queue[head++] = EMPTY;
        queued -= b.length;
        if (head === queue.length) {
          queue.length = 0;
          head = 0;
        }
        if (queued <= highWater && stream.isPaused()) stream.resume();
        yield b;
        continue;
      }
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('close', onEnd);
    stream.off('error', onError);
  }
}

const EMPTY = Buffer.alloc(0);

/** A Uint8Array as a Buffer over the same memory (no copy); a Buffer as itself. */
export function asBuffer(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}
