import type { ContainerClient } from '@azure/storage-blob';

/** Raw-SDK view of one replica root, for checking what really landed in the container. */
export interface StoreBackdoor {
  listKeys(): Promise<string[]>;
  readKey(key: string): Promise<Buffer | undefined>;
  writeKey(key: string, body: Buffer): Promise<void>;
  cleanup(): Promise<void>;
}

/** Backdoor over `<container>/<root>/…`; keys are root-relative and `/`-separated. */
export function containerBackdoor(container: ContainerClient, root: string, dropContainer: boolean): StoreBackdoor {
  const prefix = root ? `${root.replace(/\/+$/, '')}/` : '';
  return {
    async listKeys() {
      const keys: string[] = [];
      for await (const b of container.listBlobsFlat({ prefix })) keys.push(b.name.slice(prefix.length));
      return keys.sort();
    },
    async readKey(key) {
      try {
        return await container.getBlobClient(prefix + key).downloadToBuffer();
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) return undefined;
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
