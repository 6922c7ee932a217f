import { Readable } from 'node:stream';
import type { ContainerClient } from '@azure/storage-blob';
import type { StoreBackdoor } from '@walship/replica-client-tests';

function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

/** Raw-SDK view of one replica root, for checking what really landed in the container. */
export function containerBackdoor(container: ContainerClient, root: string, dropContainer: boolean): StoreBackdoor {
  const prefix = root ? `${root.replace(/\/+$/, '')}/` : '';
  return {
    // Creation times travel as HTTP dates (x-ms-creation-time, Creation-Time): whole seconds.
    timeResolutionMs: 1000,
    async listKeys() {
      const keys: string[] = [];
      for await (const b of container.listBlobsFlat({ prefix })) keys.push(b.name.slice(prefix.length));
      return keys.sort();
    },
    async readKey(key) {
      try {
        return await container.getBlobClient(prefix + key).downloadToBuffer();
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async openKey(key) {
      try {
        const res = await container.getBlobClient(prefix + key).download();
        return (res.readableStreamBody as Readable | undefined) ?? Readable.from([]);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async statKey(key) {
      try {
        const props = await container.getBlobClient(prefix + key).getProperties();
        if (!props.createdOn) throw new Error(`getProperties ${prefix + key}: no creation time (x-ms-creation-time)`);
        return { size: props.contentLength ?? NaN, createdAt: props.createdOn };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async writeKey(key, body) {
      await container.getBlockBlobClient(prefix + key).upload(body, body.length);
    },
    async cleanup() {
      if (dropContainer) {
        await container.deleteIfExists();
        return;
      }
      for await (const b of container.listBlobsFlat({ prefix })) await container.deleteBlob(b.name).catch(() => {});
    },
  };
}
