// Child process of the benchmark: uploads a local file into the sandbox's bucket with the same
// uploader backup create uses (multipart, CRC-32C per part), then deletes it. Nothing else: no etcd,
// no verification. It measures what the object store on this machine costs by itself.
import { createReadStream } from 'node:fs';
import { S3ObjectStore, Sandbox } from '@etcd-recover/core';

const [dir, file] = process.argv.slice(2);
const store = new S3ObjectStore(Sandbox.load(dir).s3Config());
const key = `bench/upload-${process.pid}`;
await store.upload(key, createReadStream(file, { highWaterMark: 1024 * 1024 }));
await store.delete(key);
store.destroy();
