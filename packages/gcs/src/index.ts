export { GcsReplicaClient, type GcsReplicaClientOptions, type GcsRetryOptions } from './client.js';
export { gcsBackend } from './backend.js';
